//! The audit trail: every write to a domain table is recorded in the same transaction, with the
//! actor from the request's JWT claims and the old and new row; the log is hash-chained per chama
//! (and per user, and for the platform), so that an edited or removed entry is reported by
//! internal.verify_audit_chain() even when a superuser switched the append-only trigger off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_store::PgPool;
use pesachama_store::rls::{DbRole, begin_as};
use pesachama_testkit::TestDb;
use serde_json::{Value, json};
use uuid::Uuid;

const UMOJA: Uuid = Uuid::from_u128(0xc4a3a000_0000_4000_8000_000000000001);
const BODA: Uuid = Uuid::from_u128(0xc4a3a000_0000_4000_8000_000000000002);
/// Akinyi: treasurer of Umoja.
const AKINYI: Uuid = Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000003);
/// Nafula: member of Umoja.
const NAFULA: Uuid = Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000007);
/// Barasa: member of Boda, sent apologies to its last meeting.
const BARASA: Uuid = Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000010);
const UMOJA_MEETING: Uuid = Uuid::from_u128(0x3ee70000_0000_4000_8000_000000000001);
const BODA_MEETING: Uuid = Uuid::from_u128(0x3ee70000_0000_4000_8000_000000000002);
const UMOJA_CHAIN: &str = "chama:c4a3a000-0000-4000-8000-000000000001";

async fn seeded() -> TestDb {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    db
}

fn user_claims(user: Uuid, phone: &str) -> Value {
    json!({"sub": user, "role": "authenticated", "aud": "authenticated", "phone": phone,
           "app_metadata": {"provider": "phone", "providers": ["phone"]}})
}

fn akinyi() -> Value {
    user_claims(AKINYI, "254733345003")
}

#[derive(Debug, sqlx::FromRow)]
struct Entry {
    id: i64,
    action: String,
    table_name: Option<String>,
    record_id: Option<String>,
    chama_id: Option<Uuid>,
    actor_id: Option<Uuid>,
    actor_role: Option<String>,
    old_row: Option<Value>,
    new_row: Option<Value>,
    metadata: Value,
    chain_key: String,
    chain_seq: i64,
}

const ENTRY: &str =
    "select id, action, table_name, record_id, chama_id, actor_id, actor_role, old_row,
                            new_row, metadata, chain_key, chain_seq
                       from public.audit_logs";

#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
struct Problem {
    chain_key: String,
    chain_seq: i64,
    audit_id: Option<i64>,
    problem: String,
}

async fn problems(executor: impl sqlx::PgExecutor<'_>) -> Vec<Problem> {
    sqlx::query_as(
        "select chain_key, chain_seq, audit_id, problem from internal.verify_audit_chain()
          order by chain_key, chain_seq",
    )
    .fetch_all(executor)
    .await
    .unwrap()
}

async fn assert_verifies(pool: &PgPool) {
    let found = problems(pool).await;
    assert!(found.is_empty(), "verify_audit_chain: {found:#?}");
}

async fn count(pool: &PgPool, filter: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "select count(*) from public.audit_logs where {filter}"
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Every chain runs 1, 2, 3, ... without gaps and its head remembers its last entry.
async fn assert_chains_contiguous(pool: &PgPool) {
    let broken: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "select a.chain_key, count(*), min(a.chain_seq), max(a.chain_seq), max(h.last_seq)
           from public.audit_logs a
           join internal.audit_chain_heads h on h.chain_key = a.chain_key
          group by a.chain_key
         having count(*) <> max(a.chain_seq) or min(a.chain_seq) <> 1
             or max(a.chain_seq) <> max(h.last_seq)",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(broken.is_empty(), "chains with gaps: {broken:?}");
}

async fn assert_integrity_clean(pool: &PgPool) {
    let report = pesachama_store::integrity::report(pool).await.unwrap();
    let failed: Vec<_> = report.iter().filter(|check| !check.passed()).collect();
    assert!(failed.is_empty(), "integrity report: {failed:#?}");
}

#[tokio::test]
async fn a_write_is_audited_in_its_own_transaction_with_the_actor_and_both_rows() {
    let db = seeded().await;
    let pool = &db.pool;

    // Akinyi, treasurer of Umoja, through the Data API.
    let mut tx = begin_as(pool, DbRole::Authenticated, &akinyi())
        .await
        .unwrap();
    sqlx::query("update public.meetings set agenda = 'Budget for the new stall' where id = $1")
        .bind(UMOJA_MEETING)
        .execute(&mut *tx)
        .await
        .unwrap();
    let scheduled: Uuid = sqlx::query_scalar(
        "insert into public.meetings (chama_id, title, scheduled_for, created_by)
         values ($1, 'Welfare committee', now() + interval '3 days', auth.uid()) returning id",
    )
    .bind(UMOJA)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    // Inside the same transaction (officials may read their chama's trail).
    let entries: Vec<Entry> = sqlx::query_as(&format!(
        "{ENTRY} where table_name = 'public.meetings' and record_id in ($1, $2)
            and actor_id = auth.uid() order by id"
    ))
    .bind(UMOJA_MEETING.to_string())
    .bind(scheduled.to_string())
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let [updated, inserted] = entries.as_slice() else {
        panic!("expected two entries, got {entries:#?}");
    };
    assert_eq!(updated.action, "meetings.update");
    assert_eq!(updated.table_name.as_deref(), Some("public.meetings"));
    assert_eq!(updated.chama_id, Some(UMOJA));
    assert_eq!(updated.chain_key, UMOJA_CHAIN);
    assert_eq!(updated.actor_id, Some(AKINYI));
    assert_eq!(updated.actor_role.as_deref(), Some("authenticated"));
    assert_eq!(
        updated.old_row.as_ref().unwrap()["agenda"],
        "Contributions, table banking loans, welfare"
    );
    assert_eq!(
        updated.new_row.as_ref().unwrap()["agenda"],
        "Budget for the new stall"
    );
    assert_eq!(inserted.action, "meetings.insert");
    assert_eq!(inserted.record_id.as_deref(), Some(&*scheduled.to_string()));
    assert_eq!(inserted.actor_id, Some(AKINYI));
    assert!(inserted.old_row.is_none());
    assert_eq!(
        inserted.new_row.as_ref().unwrap()["title"],
        "Welfare committee"
    );
    assert_eq!(inserted.chain_seq, updated.chain_seq + 1);
    assert!(inserted.id > updated.id);

    // A delete by a system path: the service role, no user behind it.
    let mut tx = begin_as(pool, DbRole::ServiceRole, &json!({"role": "service_role"}))
        .await
        .unwrap();
    sqlx::query("delete from public.meeting_attendance where meeting_id = $1 and user_id = $2")
        .bind(BODA_MEETING)
        .bind(BARASA)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let deleted: Entry = sqlx::query_as(&format!(
        "{ENTRY} where action = 'meeting_attendance.delete' and record_id = $1"
    ))
    .bind(format!("{BODA_MEETING}/{BARASA}"))
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(deleted.chama_id, Some(BODA));
    assert_eq!(deleted.actor_id, None);
    assert_eq!(deleted.actor_role.as_deref(), Some("service_role"));
    assert_eq!(deleted.old_row.as_ref().unwrap()["status"], "apologies");
    assert!(deleted.new_row.is_none());

    // A profile belongs to no chama: it goes on its author's own chain, which they may read.
    let nafula = user_claims(NAFULA, "254720345007");
    let mut tx = begin_as(pool, DbRole::Authenticated, &nafula)
        .await
        .unwrap();
    sqlx::query("update public.users set language = 'en' where id = auth.uid()")
        .execute(&mut *tx)
        .await
        .unwrap();
    let own: Entry = sqlx::query_as(&format!(
        "{ENTRY} where action = 'users.update' and actor_id = auth.uid()"
    ))
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(own.chain_key, format!("user:{NAFULA}"));
    assert_eq!(own.chama_id, None);
    assert_eq!(own.old_row.as_ref().unwrap()["language"], "sw");
    assert_eq!(own.new_row.as_ref().unwrap()["language"], "en");

    assert_verifies(pool).await;
    assert_chains_contiguous(pool).await;
}

#[tokio::test]
async fn a_rolled_back_write_leaves_no_audit_entry() {
    let db = seeded().await;
    let pool = &db.pool;
    let head = "select last_seq from internal.audit_chain_heads where chain_key = $1";
    let entries_before = count(pool, "true").await;
    let head_before: i64 = sqlx::query_scalar(head)
        .bind(UMOJA_CHAIN)
        .fetch_one(pool)
        .await
        .unwrap();

    let mut tx = begin_as(pool, DbRole::Authenticated, &akinyi())
        .await
        .unwrap();
    sqlx::query("update public.meetings set venue = 'Online' where id = $1")
        .bind(UMOJA_MEETING)
        .execute(&mut *tx)
        .await
        .unwrap();
    let inside: i64 = sqlx::query_scalar(
        "select count(*) from public.audit_logs where action = 'meetings.update' and chama_id = $1",
    )
    .bind(UMOJA)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(inside, 1, "the entry exists inside the transaction");
    tx.rollback().await.unwrap();

    assert_eq!(count(pool, "true").await, entries_before);
    let head_after: i64 = sqlx::query_scalar(head)
        .bind(UMOJA_CHAIN)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(head_after, head_before, "the chain head did not move");
    assert_verifies(pool).await;
}

#[tokio::test]
async fn changes_only_to_ledger_maintained_columns_are_not_audited() {
    let db = seeded().await;
    let pool = &db.pool;
    let chama_updates = "action = 'chamas.update'";
    let member_updates = "action = 'chama_members.update'";
    let contributions = "action = 'transactions.insert'";
    let before = (
        count(pool, chama_updates).await,
        count(pool, member_updates).await,
        count(pool, contributions).await,
    );

    // A contribution moves chamas.balance and contributed_total: the journal is their record,
    // and the transactions row is audited.
    sqlx::query("select internal.record_contribution($1, $2, 100000, 'cash')")
        .bind(UMOJA)
        .bind(NAFULA)
        .execute(pool)
        .await
        .unwrap();
    // Neither is a bare touch of updated_at.
    sqlx::query("update public.chamas set updated_at = now() where id = $1")
        .bind(UMOJA)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        (
            count(pool, chama_updates).await,
            count(pool, member_updates).await,
            count(pool, contributions).await
        ),
        (before.0, before.1, before.2 + 1)
    );

    // Any other change is.
    sqlx::query(
        "update public.chamas set description = 'Table banking, Gikomba and Toi' where id = $1",
    )
    .bind(UMOJA)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "update public.chama_members set role = 'secretary' where chama_id = $1 and user_id = $2",
    )
    .bind(UMOJA)
    .bind(NAFULA)
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(count(pool, chama_updates).await, before.0 + 1);
    assert_eq!(count(pool, member_updates).await, before.1 + 1);
    let described: Entry = sqlx::query_as(&format!(
        "{ENTRY} where {chama_updates} order by id desc limit 1"
    ))
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        described.new_row.as_ref().unwrap()["description"],
        "Table banking, Gikomba and Toi"
    );
    // The entry keeps the whole row, balance included, as it was.
    assert_eq!(
        described.old_row.as_ref().unwrap()["balance"],
        described.new_row.as_ref().unwrap()["balance"]
    );

    assert_verifies(pool).await;
    assert_integrity_clean(pool).await;
}

/// `payment_requests` is audited once per UPDATE statement: one entry per row that really
/// changed, in the row's chama chain, with the actor, both rows, and the statement's row order.
#[tokio::test]
async fn a_statement_updating_many_payment_requests_audits_each_changed_row() {
    let db = seeded().await;
    let pool = &db.pool;
    sqlx::query(
        "insert into public.payment_requests (chama_id, user_id, phone, amount, status)
         select $1, $2, '+254700000001', k * 10000, 'sent' from generate_series(1, 4) k
         union all select $3, $4, '+254700000002', 70000, 'sent'",
    )
    .bind(UMOJA)
    .bind(NAFULA)
    .bind(BODA)
    .bind(BARASA)
    .execute(pool)
    .await
    .unwrap();
    let updates = "action = 'payment_requests.update'";
    let before = count(pool, updates).await;

    // As Akinyi: four requests change status, one is only touched (updated_at), in one statement.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("select set_config('request.jwt.claims', $1, true)")
        .bind(akinyi().to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "update public.payment_requests
            set status = case when amount = 70000 then status else 'failed' end,
                updated_at = now() + interval '1 second'
          where status = 'sent' and phone in ('+254700000001', '+254700000002')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let entries: Vec<Entry> =
        sqlx::query_as(&format!("{ENTRY} where {updates} order by id desc limit 4"))
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(count(pool, updates).await, before + 4);
    for entry in &entries {
        let (old, new) = (
            entry.old_row.as_ref().unwrap(),
            entry.new_row.as_ref().unwrap(),
        );
        assert_eq!(
            (old["status"].as_str(), new["status"].as_str()),
            (Some("sent"), Some("failed"))
        );
        assert_eq!(entry.record_id.as_deref(), new["id"].as_str());
        assert_eq!(
            (entry.chama_id, entry.chain_key.as_str()),
            (Some(UMOJA), UMOJA_CHAIN)
        );
        assert_eq!(entry.actor_id, Some(AKINYI));
        assert_eq!(entry.table_name.as_deref(), Some("public.payment_requests"));
    }
    let seqs: Vec<i64> = entries.iter().map(|e| e.chain_seq).collect();
    assert_eq!(seqs, [seqs[0], seqs[0] - 1, seqs[0] - 2, seqs[0] - 3]);
    assert_chains_contiguous(pool).await;
    assert_verifies(pool).await;
}

#[tokio::test]
async fn the_seed_audit_chain_verifies() {
    let db = seeded().await;
    let pool = &db.pool;
    assert!(count(pool, "true").await > 50);
    assert!(count(pool, &format!("chain_key = '{UMOJA_CHAIN}'")).await > 19);
    assert!(count(pool, "chain_key = 'platform'").await > 0);
    assert_verifies(pool).await;
    assert_chains_contiguous(pool).await;
    assert_integrity_clean(pool).await;
}

/// Runs `sql` as a superuser who switched the append-only trigger off, and returns what
/// verify_audit_chain() and the integrity report then say. Everything is rolled back.
async fn tampered(pool: &PgPool, sql: &str) -> (Vec<Problem>, i64) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::raw_sql(&format!(
        "alter table public.audit_logs disable trigger audit_logs_append_only;
         {sql};
         alter table public.audit_logs enable trigger audit_logs_append_only;"
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    let found = problems(&mut *tx).await;
    let reported: i64 = sqlx::query_scalar(
        "select violations from internal.integrity_report() where check_name = 'audit_chain_intact'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert_verifies(pool).await;
    (found, reported)
}

/// The id of entry `seq` of Umoja's chain, and the chain's last seq.
async fn umoja_entry(pool: &PgPool, seq: i64) -> (i64, i64) {
    sqlx::query_as(
        "select (select id from public.audit_logs where chain_key = $1 and chain_seq = $2),
                (select max(chain_seq) from public.audit_logs where chain_key = $1)",
    )
    .bind(UMOJA_CHAIN)
    .bind(seq)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn problem(seq: i64, audit_id: Option<i64>, what: &str) -> Problem {
    Problem {
        chain_key: UMOJA_CHAIN.to_owned(),
        chain_seq: seq,
        audit_id,
        problem: what.to_owned(),
    }
}

/// Recomputes an entry's hash from its (changed) content, as a careful forger would.
const REHASH: &str =
    "hash = internal.audit_digest(prev_hash, chain_key, chain_seq, action, table_name,
                        record_id, chama_id, actor_id, actor_role, old_row, new_row, metadata,
                        created_at)";

#[tokio::test]
async fn an_edited_entry_is_reported() {
    let db = seeded().await;
    let (tenth, _) = umoja_entry(&db.pool, 10).await;
    let (found, reported) = tampered(
        &db.pool,
        &format!(
            "update public.audit_logs set new_row = jsonb_set(new_row, '{{amount}}', '99999900')
              where id = {tenth}"
        ),
    )
    .await;
    assert_eq!(
        found,
        [problem(10, Some(tenth), "content does not match its hash")]
    );
    assert_eq!(reported, 1);
}

#[tokio::test]
async fn an_edited_entry_with_a_recomputed_hash_breaks_the_next_link() {
    let db = seeded().await;
    let (tenth, _) = umoja_entry(&db.pool, 10).await;
    let (eleventh, _) = umoja_entry(&db.pool, 11).await;
    let (found, reported) = tampered(
        &db.pool,
        &format!(
            "update public.audit_logs set new_row = jsonb_set(new_row, '{{amount}}', '99999900')
              where id = {tenth};
             update public.audit_logs set {REHASH} where id = {tenth}"
        ),
    )
    .await;
    assert_eq!(
        found,
        [problem(
            11,
            Some(eleventh),
            "link to the previous entry is broken"
        )]
    );
    assert_eq!(reported, 1);
}

#[tokio::test]
async fn a_deleted_entry_in_the_middle_is_reported() {
    let db = seeded().await;
    let (tenth, _) = umoja_entry(&db.pool, 10).await;
    let (eleventh, _) = umoja_entry(&db.pool, 11).await;
    let (found, reported) = tampered(
        &db.pool,
        &format!("delete from public.audit_logs where id = {tenth}"),
    )
    .await;
    assert_eq!(
        found,
        [problem(
            11,
            Some(eleventh),
            "entries missing before this one"
        )]
    );
    assert_eq!(reported, 1);
}

#[tokio::test]
async fn a_deleted_last_entry_is_reported() {
    let db = seeded().await;
    let (_, last) = umoja_entry(&db.pool, 1).await;
    let (found, reported) = tampered(
        &db.pool,
        &format!(
            "delete from public.audit_logs where chain_key = '{UMOJA_CHAIN}' and chain_seq = {last}"
        ),
    )
    .await;
    assert_eq!(
        found,
        [problem(
            last,
            None,
            "entries missing at the end of the chain"
        )]
    );
    assert_eq!(reported, 1);
}

#[tokio::test]
async fn an_edited_last_entry_with_a_recomputed_hash_is_reported() {
    let db = seeded().await;
    let (_, last) = umoja_entry(&db.pool, 1).await;
    let (last_id, _) = umoja_entry(&db.pool, last).await;
    let (found, reported) = tampered(
        &db.pool,
        &format!(
            "update public.audit_logs set new_row = jsonb_set(new_row, '{{amount}}', '1')
              where id = {last_id};
             update public.audit_logs set {REHASH} where id = {last_id}"
        ),
    )
    .await;
    assert_eq!(
        found,
        [problem(
            last,
            Some(last_id),
            "the newest entry does not match the chain head"
        )]
    );
    assert_eq!(reported, 1);
}

#[tokio::test]
async fn audit_log_records_events_that_are_not_row_changes() {
    let db = seeded().await;
    let pool = &db.pool;

    // The server signs Nafula in: the service role, acting for her.
    let mut tx = begin_as(
        pool,
        DbRole::ServiceRole,
        &json!({"role": "service_role", "sub": NAFULA}),
    )
    .await
    .unwrap();
    let sign_in: i64 = sqlx::query_scalar(
        "select internal.audit_log('auth.sign_in', null, null, null, '{\"method\": \"password\"}'::jsonb)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let export: i64 = sqlx::query_scalar(
        "select internal.audit_log('chama.statement_exported', 'public.chamas', $1::text, $1,
                                   '{\"format\": \"pdf\"}'::jsonb, $2)",
    )
    .bind(UMOJA)
    .bind(AKINYI)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = begin_as(pool, DbRole::ServiceRole, &json!({"role": "service_role"}))
        .await
        .unwrap();
    let maintenance: i64 = sqlx::query_scalar(
        "select internal.audit_log('system.keys_rotated', null, null, null, '{}'::jsonb)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let entry = |id: i64| async move {
        sqlx::query_as::<_, Entry>(&format!("{ENTRY} where id = $1"))
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let sign_in = entry(sign_in).await;
    assert_eq!(sign_in.action, "auth.sign_in");
    assert_eq!(
        sign_in.actor_id,
        Some(NAFULA),
        "the actor comes from the claims"
    );
    assert_eq!(sign_in.actor_role.as_deref(), Some("service_role"));
    assert_eq!(sign_in.chain_key, format!("user:{NAFULA}"));
    assert_eq!(sign_in.metadata["method"], "password");
    assert!(sign_in.old_row.is_none() && sign_in.new_row.is_none());

    let export = entry(export).await;
    assert_eq!(export.actor_id, Some(AKINYI), "an explicit actor wins");
    assert_eq!(export.chama_id, Some(UMOJA));
    assert_eq!(export.chain_key, UMOJA_CHAIN);
    assert_eq!(export.record_id.as_deref(), Some(&*UMOJA.to_string()));

    let maintenance = entry(maintenance).await;
    assert_eq!(maintenance.actor_id, None);
    assert_eq!(maintenance.chain_key, "platform");

    assert_verifies(pool).await;
    assert_chains_contiguous(pool).await;
}

/// 8 tasks × 15 audited writes to one chama, each its own transaction: the treasurer editing a
/// meeting through the Data API, and contributions posted by the service role, interleaved.
/// Each appends to Umoja's chain, which stays gapless and verifiable.
#[tokio::test]
async fn concurrent_audited_writes_in_one_chama_keep_the_chain_intact() {
    const TASKS: usize = 8;
    const EACH: usize = 15;
    let db = seeded().await;
    let pool = pesachama_store::connect(&db.url, TASKS as u32 + 2)
        .await
        .unwrap();
    let chain = format!("chain_key = '{UMOJA_CHAIN}'");
    let before = count(&pool, &chain).await;

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let pool = pool.clone();
        tasks.spawn(async move {
            for i in 0..EACH {
                if task % 2 == 0 {
                    let mut tx = begin_as(&pool, DbRole::Authenticated, &akinyi())
                        .await
                        .unwrap();
                    sqlx::query("update public.meetings set agenda = $2 where id = $1")
                        .bind(UMOJA_MEETING)
                        .bind(format!("Agenda v{task}.{i}"))
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                } else {
                    let mut tx =
                        begin_as(&pool, DbRole::ServiceRole, &json!({"role": "service_role"}))
                            .await
                            .unwrap();
                    sqlx::query("select internal.record_contribution($1, $2, $3, 'mpesa')")
                        .bind(UMOJA)
                        .bind(NAFULA)
                        .bind(1_000 + (task * EACH + i) as i64)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }

    assert_eq!(count(&pool, &chain).await, before + (TASKS * EACH) as i64);
    assert_verifies(&pool).await;
    assert_chains_contiguous(&pool).await;
    assert_integrity_clean(&pool).await;
}

/// The digest is a fixed formula: the fields joined by the unit separator, hashed with SHA-256.
/// Recomputed here outside the database, so a change to how the database computes it (which
/// would leave every stored hash unverifiable) fails even though a fresh database would verify
/// its own new entries.
#[tokio::test]
async fn the_digest_is_the_documented_formula() {
    use sha2::Digest as _;
    let db = TestDb::new().await;
    let cases = [
        (
            "select internal.audit_digest('ab12', 'chama:c4a3a000-0000-4000-8000-000000000001', 7,
                     'transactions.insert', 'public.transactions', 'r-1',
                     'c4a3a000-0000-4000-8000-000000000001', '5eed0000-0000-4000-8000-000000000003',
                     'service_role', '{\"b\": [1, \"x\"], \"a\": null}', '{\"amount\": 1000}',
                     '{}', '2026-01-02 03:04:05.678901+03')",
            "ab12\u{1f}chama:c4a3a000-0000-4000-8000-000000000001\u{1f}7\u{1f}transactions.insert\u{1f}public.transactions\u{1f}r-1\u{1f}c4a3a000-0000-4000-8000-000000000001\u{1f}5eed0000-0000-4000-8000-000000000003\u{1f}service_role\u{1f}{\"a\": null, \"b\": [1, \"x\"]}\u{1f}{\"amount\": 1000}\u{1f}{}\u{1f}2026-01-02T00:04:05.678901Z",
        ),
        (
            // Missing fields are empty strings, not skipped.
            "select internal.audit_digest('', 'platform', 1, 'auth.login', null, null, null, null,
                     null, null, null, '{\"ip\": \"127.0.0.1\"}', '2026-12-01 00:00:00+00')",
            "\u{1f}platform\u{1f}1\u{1f}auth.login\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}\u{1f}{\"ip\": \"127.0.0.1\"}\u{1f}2026-12-01T00:00:00.000000Z",
        ),
    ];
    for (query, input) in cases {
        let stored: String = sqlx::query_scalar(query).fetch_one(&db.pool).await.unwrap();
        assert_eq!(
            stored,
            hex::encode(sha2::Sha256::digest(input.as_bytes())),
            "{input}"
        );
    }
}
