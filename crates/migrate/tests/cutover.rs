//! Cut-over freezes legacy for real (a login role can no longer connect), drains and verifies;
//! writes made on the target afterwards (a contribution through the ledger, a renamed member, a
//! meeting and its register, a withdrawal request and an official's decision, deleted and read
//! notifications) are replayed into legacy by rollback, which reopens it.

#![allow(clippy::unwrap_used)]

use pesachama_migrate::access::Step;
use pesachama_migrate::{copy, cutover, generate, source, sync};
use pesachama_testkit::TestDb;
use sqlx::Connection as _;

#[tokio::test]
async fn cutover_freezes_legacy_and_rollback_returns_the_targets_writes() {
    let legacy = TestDb::empty().await;
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    generate::run(
        &mut src,
        &generate::GenerateOptions {
            scale: 0.001,
            quirk_rate: 0.05,
            seed: 5,
        },
    )
    .await
    .unwrap();
    sync::install_capture(&mut src).await.unwrap();
    let role = format!("legacy_app_{}", &legacy.name[legacy.name.len() - 8..]);
    sqlx::raw_sql(&format!("create role {role} login password 'app'; grant connect on database {} to {role}; grant select on all tables in schema public to {role}", legacy.name))
        .execute(&mut src).await.unwrap();
    let app_url = legacy.url.replacen("postgres:", &format!("{role}:"), 1);
    let app_url = match app_url.split_once('@') {
        Some((_, rest)) => format!("postgres://{role}:app@{rest}"),
        None => app_url,
    };
    sqlx::PgConnection::connect(&app_url)
        .await
        .expect("the app role connects before cut-over");

    let target = TestDb::new().await;
    let options = copy::CopyOptions {
        batch_size: 500,
        progress: false,
        ..Default::default()
    };
    copy::run(&legacy.url, &target.url, &options).await.unwrap();
    // A write after the copy, drained by the cut-over.
    sqlx::query("update users set first_name = 'Drained' where id = (select id from users where deleted_at is null order by id limit 1)")
        .execute(&mut src).await.unwrap();
    drop(src);

    let done = cutover::cutover(&legacy.url, &target.url, 500)
        .await
        .unwrap();
    assert!(done.frozen_roles.contains(&role), "{done:?}");
    assert!(done.drained_changes >= 1);
    let refused = sqlx::PgConnection::connect(&app_url).await;
    assert!(refused.is_err(), "legacy refuses the app after cut-over");
    let drained: i64 =
        sqlx::query_scalar("select count(*) from public.users where first_name = 'Drained'")
            .fetch_one(&target.pool)
            .await
            .unwrap();
    assert_eq!(drained, 1);

    // Writes on the target after the cut-over.
    let (chama, user): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "select m.chama_id, m.user_id from public.chama_members m join public.chamas c on c.id = m.chama_id
          where m.status = 'active' and c.status = 'active' order by m.id limit 1",
    )
    .fetch_one(&target.pool).await.unwrap();
    let tx: uuid::Uuid = sqlx::query_scalar(
        "select internal.record_contribution($1, $2, 777700, 'cash', 'after-cutover')",
    )
    .bind(chama)
    .bind(user)
    .fetch_one(&target.pool)
    .await
    .unwrap();
    sqlx::query("update public.users set last_name = 'AfterCutover' where id = $1")
        .bind(user)
        .execute(&target.pool)
        .await
        .unwrap();
    // A withdrawal request by the member, and an official's approval, as the app makes them.
    let official: uuid::Uuid = sqlx::query_scalar(
        "select user_id from public.chama_members where chama_id = $1 and user_id <> $2
            and status = 'active' and role in ('chairperson', 'treasurer', 'secretary') limit 1",
    )
    .bind(chama)
    .bind(user)
    .fetch_one(&target.pool)
    .await
    .unwrap();
    let request = as_user(
        &target,
        user,
        "select public.request_disbursement($1, 150000, 'School fees for the term', null, 'rb-1', 'h') -> 'request' ->> 'id'",
        chama,
    )
    .await;
    let request: uuid::Uuid = request.parse().unwrap();
    as_user(
        &target,
        official,
        "select public.decide_disbursement($1, 'approve', 'Approved in the meeting')::text",
        request,
    )
    .await;
    // A meeting scheduled on the target and the member marked present.
    let meeting: uuid::Uuid = sqlx::query_scalar(
        "insert into public.meetings (chama_id, title, scheduled_for, created_by)
         values ($1, 'Planning after the switch', '2027-01-15 07:00:00+00', $2) returning id",
    )
    .bind(chama)
    .bind(official)
    .fetch_one(&target.pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into public.meeting_attendance (meeting_id, chama_id, user_id, status, recorded_by)
         values ($1, $2, $3, 'present', $4)",
    )
    .bind(meeting)
    .bind(chama)
    .bind(user)
    .bind(official)
    .execute(&target.pool)
    .await
    .unwrap();
    // Two migrated notifications: one read, one deleted.
    let migrated: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "select id, legacy_id from public.notifications where legacy_id is not null
          order by id limit 2",
    )
    .fetch_all(&target.pool)
    .await
    .unwrap();
    assert_eq!(migrated.len(), 2, "the generated data has notifications");
    sqlx::query("update public.notifications set read_at = now() where id = $1")
        .bind(migrated[0].0)
        .execute(&target.pool)
        .await
        .unwrap();
    sqlx::query("delete from public.notifications where id = $1")
        .bind(migrated[1].0)
        .execute(&target.pool)
        .await
        .unwrap();
    target.assert_ledger_balanced().await;
    let mut frozen = source::connect(&legacy.url, "legacy").await.unwrap();
    let before: String =
        sqlx::query_scalar("select (balance + 7777.00)::text from chamas where id = $1")
            .bind(chama)
            .fetch_one(&mut frozen)
            .await
            .unwrap();
    drop(frozen);

    let back = cutover::rollback(&legacy.url, &target.url).await.unwrap();
    assert!(back.replayed >= 2, "{back:?}");
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    let amount: String = sqlx::query_scalar(
        "select amount::text from transactions where reference = 'after-cutover'",
    )
    .fetch_one(&mut src)
    .await
    .unwrap();
    assert_eq!(
        amount, "7777.00",
        "the contribution made on the target is in legacy"
    );
    let legacy_balance: String =
        sqlx::query_scalar("select balance::text from chamas where id = $1")
            .bind(chama)
            .fetch_one(&mut src)
            .await
            .unwrap();
    assert_eq!(
        legacy_balance, before,
        "legacy's balance moved by the contribution, and by nothing else"
    );
    let last: String = sqlx::query_scalar("select last_name from users where id = $1")
        .bind(user)
        .fetch_one(&mut src)
        .await
        .unwrap();
    assert_eq!(last, "AfterCutover");
    let (status, approvals, amount): (String, serde_json::Value, String) = sqlx::query_as(
        "select status, approvals, amount::text from disbursement_requests where id = $1",
    )
    .bind(request)
    .fetch_one(&mut src)
    .await
    .unwrap();
    assert_eq!(amount, "1500.00");
    assert!(status == "pending" || status == "approved", "{status}");
    assert_eq!(approvals.as_array().unwrap().len(), 1, "{approvals}");
    assert_eq!(approvals[0]["user_id"], official.to_string());
    assert_eq!(approvals[0]["approved"], true);
    let (title, scheduled, attendees): (String, String, Vec<uuid::Uuid>) =
        sqlx::query_as("select title, scheduled_for::text, attendees from meetings where id = $1")
            .bind(meeting)
            .fetch_one(&mut src)
            .await
            .unwrap();
    assert_eq!(title, "Planning after the switch");
    assert_eq!(
        scheduled, "2027-01-15 10:00:00",
        "Nairobi time, as legacy keeps it"
    );
    assert_eq!(attendees, vec![user]);
    let read: bool = sqlx::query_scalar("select is_read from notifications where id = $1")
        .bind(migrated[0].1.parse::<i64>().unwrap())
        .fetch_one(&mut src)
        .await
        .unwrap();
    assert!(read, "read on the target, read in legacy");
    let deleted: i64 = sqlx::query_scalar("select count(*) from notifications where id = $1")
        .bind(migrated[1].1.parse::<i64>().unwrap())
        .fetch_one(&mut src)
        .await
        .unwrap();
    assert_eq!(deleted, 0, "deleted on the target, deleted in legacy");
    assert!(
        back.not_replayed.is_empty(),
        "every change replayed: {:?}",
        back.not_replayed
    );
    sqlx::PgConnection::connect(&app_url)
        .await
        .expect("legacy reopened for the app");
    // Run again: nothing is inserted twice.
    let _ = tx;
    let again = cutover::rollback(&legacy.url, &target.url).await;
    assert!(again.is_err(), "the cut-over is rolled back already");
    let copies: i64 =
        sqlx::query_scalar("select count(*) from transactions where reference = 'after-cutover'")
            .fetch_one(&mut src)
            .await
            .unwrap();
    assert_eq!(copies, 1);
    sqlx::raw_sql(&format!("revoke all on all tables in schema public from {role}; revoke connect on database {} from {role}; drop role {role}", legacy.name))
        .execute(&mut src).await.unwrap();
}

/// Runs `sql` (one uuid parameter, one text column) as `user` would through the API: their
/// claims in the transaction, so `auth.uid()` is theirs.
async fn as_user(target: &TestDb, user: uuid::Uuid, sql: &str, arg: uuid::Uuid) -> String {
    let mut tx = target.pool.begin().await.unwrap();
    sqlx::query("select set_config('request.jwt.claims', $1, true)")
        .bind(serde_json::json!({"sub": user, "role": "authenticated"}).to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let answer: String = sqlx::query_scalar(sql)
        .bind(arg)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    answer
}

/// A generated legacy database with capture installed, a login role `role` that the app uses
/// (CONNECT, and writes on `users`), copied into a target. Answers (legacy, target, role, the
/// role's URL).
async fn copied(seed: u64) -> (TestDb, TestDb, String, String) {
    let (legacy, role, app_url) = generated(seed).await;
    let target = copy_of(&legacy).await;
    (legacy, target, role, app_url)
}

async fn copy_of(legacy: &TestDb) -> TestDb {
    let target = TestDb::new().await;
    let options = copy::CopyOptions {
        batch_size: 500,
        progress: false,
        ..Default::default()
    };
    copy::run(&legacy.url, &target.url, &options).await.unwrap();
    target
}

async fn generated(seed: u64) -> (TestDb, String, String) {
    let legacy = TestDb::empty().await;
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    generate::run(
        &mut src,
        &generate::GenerateOptions {
            scale: 0.001,
            quirk_rate: 0.05,
            seed,
        },
    )
    .await
    .unwrap();
    sync::install_capture(&mut src).await.unwrap();
    let role = format!("legacy_app_{}", &legacy.name[legacy.name.len() - 8..]);
    sqlx::raw_sql(&format!(
        "create role {role} login password 'app'; grant connect on database {} to {role};
         grant select, update on all tables in schema public to {role};
         grant usage on schema pesachama_sync to {role}; grant insert on pesachama_sync.changes to {role};
         grant usage on all sequences in schema pesachama_sync to {role}",
        legacy.name
    ))
    .execute(&mut src)
    .await
    .unwrap();
    let app_url = match legacy.url.split_once('@') {
        Some((_, rest)) => format!("postgres://{role}:app@{rest}"),
        None => legacy.url.clone(),
    };
    (legacy, role, app_url)
}

async fn drop_role(legacy: &TestDb, role: &str) {
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    sqlx::raw_sql(&format!(
        "revoke all on all tables in schema public from {role}; revoke all on schema pesachama_sync from {role};
         revoke all on all tables in schema pesachama_sync from {role}; revoke all on all sequences in schema pesachama_sync from {role};
         revoke connect on database {} from {role}; drop role {role}",
        legacy.name
    ))
    .execute(&mut src)
    .await
    .unwrap();
}

/// The app, as its own login role, connects to legacy and writes there.
async fn app_writes(app_url: &str, what: &str) {
    let mut app = sqlx::PgConnection::connect(app_url)
        .await
        .unwrap_or_else(|e| panic!("{what}: the app cannot connect to legacy: {e}"));
    let read_only: String = sqlx::query_scalar("show default_transaction_read_only")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(read_only, "off", "{what}: legacy is read-only");
    sqlx::query(
        "update users set last_login_at = now()
          where id = (select id from users where deleted_at is null order by id limit 1)",
    )
    .execute(&mut app)
    .await
    .unwrap_or_else(|e| panic!("{what}: the app cannot write to legacy: {e}"));
}

async fn app_refused(app_url: &str, what: &str) {
    assert!(
        sqlx::PgConnection::connect(app_url).await.is_err(),
        "{what}: legacy still lets the app in"
    );
}

/// What legacy's own integrity is: every foreign key holds (counted row by row, as no trigger
/// setting can hide), memberships pointing at no chama (legacy has no key there; generated data
/// has some), and the chamas whose stored balance equals legacy's own sum of posted rows.
#[derive(Debug)]
struct LegacyHealth {
    broken_references: Vec<String>,
    orphan_memberships: i64,
    balanced: std::collections::BTreeSet<uuid::Uuid>,
}

async fn legacy_health(url: &str) -> LegacyHealth {
    let mut src = source::connect(url, "legacy").await.unwrap();
    let fks: Vec<(String, String, String, String)> = sqlx::query_as(
        "select c.conrelid::regclass::text, a.attname::text, c.confrelid::regclass::text, pa.attname::text
           from pg_constraint c
           join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
           join pg_attribute pa on pa.attrelid = c.confrelid and pa.attnum = c.confkey[1]
          where c.contype = 'f' and c.connamespace = 'public'::regnamespace",
    )
    .fetch_all(&mut src)
    .await
    .unwrap();
    assert!(fks.len() >= 8, "legacy's foreign keys: {fks:?}");
    let mut broken_references = Vec::new();
    for (table, column, parent, parent_column) in fks {
        let n: i64 = sqlx::query_scalar(&format!(
            "select count(*) from {table} x where x.{column} is not null
               and not exists (select from {parent} p where p.{parent_column} = x.{column})"
        ))
        .fetch_one(&mut src)
        .await
        .unwrap();
        if n > 0 {
            broken_references.push(format!("{table}.{column}: {n} rows point at no {parent}"));
        }
    }
    let orphan_memberships: i64 = sqlx::query_scalar(
        "select count(*) from chama_members m where not exists (select from chamas c where c.id = m.chama_id)",
    )
    .fetch_one(&mut src)
    .await
    .unwrap();
    let balanced: Vec<uuid::Uuid> = sqlx::query_scalar(
        "select c.id from chamas c
          where c.balance = (select coalesce(sum(case
                   when lower(btrim(t.type)) in ('contribution', 'deposit', 'loan_repayment', 'repayment', 'fine', 'penalty', 'interest')
                   then t.amount else -t.amount end), 0)
                from transactions t where t.chama_id = c.id
                 and lower(btrim(t.status)) in ('completed', 'complete', 'success', 'successful', 'reversed'))",
    )
    .fetch_all(&mut src)
    .await
    .unwrap();
    LegacyHealth {
        broken_references,
        orphan_memberships,
        balanced: balanced.into_iter().collect(),
    }
}

#[tokio::test]
async fn a_cutover_stopped_at_any_step_leaves_legacy_writable() {
    let (legacy, target, role, app_url) = copied(11).await;
    let before = legacy_health(&legacy.url).await;
    assert!(before.broken_references.is_empty(), "{before:?}");
    app_writes(&app_url, "before any cut-over").await;

    // A stop after each step reopens legacy as it was recorded, and says so.
    for step in [
        Step::Recorded,
        Step::Frozen,
        Step::SessionsEnded,
        Step::Drained,
        Step::Verified,
    ] {
        let options = cutover::CutoverOptions {
            batch_size: 500,
            stop_after: Some(step),
            crash: false,
        };
        let err = cutover::cutover_with(&legacy.url, &target.url, &options)
            .await
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("stopped after step `{}`", step.name()))
                && text.contains("legacy is open again"),
            "{text}"
        );
        app_writes(&app_url, &format!("after a stop at {}", step.name())).await;
        // Recorded before anything changed, with the role that had CONNECT.
        let (grantees, recorded_step, stopped, reopened): (
            Vec<String>,
            String,
            Option<String>,
            bool,
        ) = sqlx::query_as(
            "select legacy_grantees, step, stopped, reopened_at is not null
                   from pesachama_migrate.cutover order by id desc limit 1",
        )
        .fetch_one(&target.pool)
        .await
        .unwrap();
        assert!(grantees.contains(&role), "{grantees:?}");
        assert_eq!(recorded_step, step.name());
        assert!(stopped.is_some() && reopened);
    }

    // A real stop at verify: a target row that differs from legacy.
    let (user,): (uuid::Uuid,) = sqlx::query_as(
        "select id from public.users where legacy_id is not null and deleted_at is null order by id desc limit 1",
    )
    .fetch_one(&target.pool)
    .await
    .unwrap();
    sqlx::query("update public.users set first_name = 'Tampered' where id = $1")
        .bind(user)
        .execute(&target.pool)
        .await
        .unwrap();
    let err = cutover::cutover(&legacy.url, &target.url, 500)
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("verify found") && text.contains("legacy is open again"),
        "{text}"
    );
    app_writes(&app_url, "after verify found a difference").await;
    // `sync` works on the reopened legacy: a legacy write puts the row right again.
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    sqlx::query("update users set first_name = 'Mended' where id = $1")
        .bind(user)
        .execute(&mut src)
        .await
        .unwrap();
    let mut dst = source::connect(&target.url, "target").await.unwrap();
    let cycle = sync::cycle(&mut src, &mut dst).await.unwrap();
    assert!(cycle.applied >= 1, "{cycle:?}");

    // A real stop in the drain: sync fails (a copy that looks unfinished).
    sqlx::query(
        "insert into pesachama_migrate.deferred_constraints (name, table_name, definition, kind)
         values ('made_up_key', 'public.users', 'unique (id)', 'key')",
    )
    .execute(&target.pool)
    .await
    .unwrap();
    let err = cutover::cutover(&legacy.url, &target.url, 500)
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("draining") && text.contains("legacy is open again"),
        "{text}"
    );
    app_writes(&app_url, "after the drain failed").await;
    sqlx::query("delete from pesachama_migrate.deferred_constraints where name = 'made_up_key'")
        .execute(&target.pool)
        .await
        .unwrap();

    // Killed after the drain: legacy stays frozen; a second cut-over refuses and names the
    // command; rollback reopens legacy from what was recorded.
    let options = cutover::CutoverOptions {
        batch_size: 500,
        stop_after: Some(Step::Drained),
        crash: true,
    };
    cutover::cutover_with(&legacy.url, &target.url, &options)
        .await
        .unwrap_err();
    app_refused(&app_url, "after a killed cut-over").await;
    let err = cutover::cutover(&legacy.url, &target.url, 500)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("migrate rollback"), "{err:#}");
    let back = cutover::rollback(&legacy.url, &target.url).await.unwrap();
    assert!(back.reopened_only, "{back:?}");
    app_writes(&app_url, "after rollback of a killed cut-over").await;

    // And then a whole cut-over goes through, and rollback undoes it.
    let done = cutover::cutover(&legacy.url, &target.url, 500)
        .await
        .unwrap();
    assert!(done.frozen_roles.contains(&role), "{done:?}");
    app_refused(&app_url, "after the cut-over").await;
    target.assert_ledger_balanced().await;
    // Once the target is live, sync refuses: it would overwrite the target's own writes.
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    let mut dst = source::connect(&target.url, "target").await.unwrap();
    let refused = sync::cycle(&mut src, &mut dst).await.unwrap_err();
    assert!(
        format!("{refused:#}").contains("the target is live"),
        "{refused:#}"
    );
    drop((src, dst));
    let back = cutover::rollback(&legacy.url, &target.url).await.unwrap();
    assert!(
        !back.reopened_only && back.not_replayed.is_empty(),
        "{back:?}"
    );
    app_writes(&app_url, "after the rollback").await;
    let after = legacy_health(&legacy.url).await;
    assert!(after.broken_references.is_empty(), "{after:?}");
    assert_eq!(after.orphan_memberships, before.orphan_memberships);
    assert!(before.balanced.is_subset(&after.balanced));
    drop_role(&legacy, &role).await;
}

/// Legacy's stored balance of a chama, as text (`numeric`).
async fn legacy_balance(url: &str, chama: uuid::Uuid) -> String {
    let mut src = source::connect(url, "legacy").await.unwrap();
    sqlx::query_scalar("select balance::text from chamas where id = $1")
        .bind(chama)
        .fetch_one(&mut src)
        .await
        .unwrap()
}

/// An active member of `chama` on the target (a migrated one).
async fn member_of(target: &TestDb, chama: uuid::Uuid) -> uuid::Uuid {
    sqlx::query_scalar(
        "select user_id from public.chama_members where chama_id = $1 and status = 'active' order by id limit 1",
    )
    .bind(chama)
    .fetch_one(&target.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn rollback_replays_target_writes_of_every_kind_and_legacy_stays_whole() {
    let (legacy, role, _app_url) = generated(13).await;
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    // A chama whose history starts with money out (older than the records): its migrated
    // books need money legacy's rows do not show. Legacy's balance is kept equal to its sum.
    let sum = "(select coalesce(sum(case when lower(btrim(t.type)) in ('contribution', 'deposit', 'loan_repayment', 'repayment', 'fine', 'penalty', 'interest')
                 then t.amount else -t.amount end), 0) from transactions t where t.chama_id = c.id
                and lower(btrim(t.status)) in ('completed', 'complete', 'success', 'successful', 'reversed'))";
    let with_members = "c.deleted_at is null and lower(c.status) = 'active' and exists (select from chama_members m join users u on u.id = m.user_id
                          where m.chama_id = c.id and lower(m.status) = 'active' and u.deleted_at is null)";
    let early: uuid::Uuid = sqlx::query_scalar(&format!(
        "select c.id from chamas c where c.balance = {sum} and {with_members} order by c.id limit 1"
    ))
    .fetch_one(&mut src)
    .await
    .unwrap();
    sqlx::raw_sql(&format!(
        "insert into transactions (chama_id, type, amount, status, payment_method, description, created_at, updated_at)
           values ('{early}', 'withdrawal', 5000.00, 'completed', 'cash', 'paid out before the records', '2001-01-01 09:00', '2001-01-01 09:00');
         update chamas set balance = balance - 5000.00 where id = '{early}'"
    ))
    .execute(&mut src)
    .await
    .unwrap();
    // A chama whose stored balance drifted from its rows (legacy README item 5).
    let drifted: uuid::Uuid = sqlx::query_scalar(&format!(
        "select c.id from chamas c where c.balance <> {sum} and {with_members} order by c.id limit 1"
    ))
    .fetch_one(&mut src)
    .await
    .unwrap();
    drop(src);
    let target = copy_of(&legacy).await;
    let before = legacy_health(&legacy.url).await;
    assert!(before.broken_references.is_empty(), "{before:?}");
    assert!(before.balanced.contains(&early) && !before.balanced.contains(&drifted));
    let (early_before, drifted_before) = (
        legacy_balance(&legacy.url, early).await,
        legacy_balance(&legacy.url, drifted).await,
    );
    let target_drifted: i64 = sqlx::query_scalar("select balance from public.chamas where id = $1")
        .bind(drifted)
        .fetch_one(&target.pool)
        .await
        .unwrap();
    assert_ne!(
        format!("{}.{:02}", target_drifted / 100, target_drifted % 100),
        drifted_before,
        "the target's balance of the drifted chama is not legacy's"
    );

    cutover::cutover(&legacy.url, &target.url, 500)
        .await
        .unwrap();

    // After the cut-over: a new member signs up, creates a chama (and is its chairperson), a
    // migrated member joins it, both contribute, the migrated member withdraws (requested,
    // approved by the chair, paid), contributions land in the two special chamas, and a
    // migrated member changes their profile.
    let newcomer: uuid::Uuid = sqlx::query_scalar(
        "insert into auth.users (id, email, encrypted_password, email_confirmed_at, created_at)
         values (gen_random_uuid(), 'neema.wanjiru@example.com', extensions.crypt('password123', extensions.gen_salt('bf')), now(), now())
         returning id",
    )
    .fetch_one(&target.pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into public.users (id, email, phone, first_name, last_name)
         values ($1, 'neema.wanjiru@example.com', '+254799123456', 'Neema', 'Wanjiru')
         on conflict (id) do update set phone = excluded.phone, first_name = excluded.first_name, last_name = excluded.last_name",
    )
    .bind(newcomer)
    .execute(&target.pool)
    .await
    .unwrap();
    let chama: uuid::Uuid = sqlx::query_scalar(
        "insert into public.chamas (name, chama_type, contribution_amount, contribution_frequency, required_approvals, created_by)
         values ('Upendo Savers', 'merry_go_round', 50000, 'biweekly', 1, $1) returning id",
    )
    .bind(newcomer)
    .fetch_one(&target.pool)
    .await
    .unwrap();
    let joiner = member_of(&target, early).await;
    sqlx::query(
        "insert into public.chama_members (chama_id, user_id, role, status, joined_at) values ($1, $2, 'member', 'active', now())",
    )
    .bind(chama)
    .bind(joiner)
    .execute(&target.pool)
    .await
    .unwrap();
    for (c, u, cents, reference) in [
        (chama, newcomer, 300_000i64, "upendo-1"),
        (chama, joiner, 200_000, "upendo-2"),
        (early, joiner, 123_400, "early-1"),
        (
            drifted,
            member_of(&target, drifted).await,
            55_500,
            "drifted-1",
        ),
    ] {
        sqlx::query("select internal.record_contribution($1, $2, $3, 'cash', $4)")
            .bind(c)
            .bind(u)
            .bind(cents)
            .bind(reference)
            .execute(&target.pool)
            .await
            .unwrap();
    }
    let request: uuid::Uuid = as_user(
        &target,
        joiner,
        "select public.request_disbursement($1, 100000, 'Hospital bill for my mother', null, 'wd-1', 'h') -> 'request' ->> 'id'",
        chama,
    )
    .await
    .parse()
    .unwrap();
    let decided = as_user(
        &target,
        newcomer,
        "select public.decide_disbursement($1, 'approve', 'Get well soon') ->> 'status'",
        request,
    )
    .await;
    assert_eq!(decided, "approved");
    sqlx::query("select internal.settle_disbursement($1, true, 'QWE1234567', 'paid', null)")
        .bind(request)
        .execute(&target.pool)
        .await
        .unwrap();
    sqlx::query("update public.users set last_name = 'Changed' where id = $1")
        .bind(joiner)
        .execute(&target.pool)
        .await
        .unwrap();
    target.assert_ledger_balanced().await;

    let back = cutover::rollback(&legacy.url, &target.url).await.unwrap();
    assert!(back.not_replayed.is_empty(), "{back:?}");

    // Legacy is whole: every foreign key holds, no new orphan, every chama that balanced
    // still does (the new one too), and the two special chamas moved by exactly the money
    // contributed on the target.
    let after = legacy_health(&legacy.url).await;
    assert!(after.broken_references.is_empty(), "{after:?}");
    assert_eq!(after.orphan_memberships, before.orphan_memberships);
    let lost: Vec<_> = before.balanced.difference(&after.balanced).collect();
    assert!(lost.is_empty(), "chamas no longer balanced: {lost:?}");
    assert!(after.balanced.contains(&chama), "the new chama balances");
    let mut src = source::connect(&legacy.url, "legacy").await.unwrap();
    let moved: (String, String) =
        sqlx::query_as("select ($1::numeric + 1234.00)::text, ($2::numeric + 555.00)::text")
            .bind(&early_before)
            .bind(&drifted_before)
            .fetch_one(&mut src)
            .await
            .unwrap();
    assert_eq!(legacy_balance(&legacy.url, early).await, moved.0);
    assert_eq!(
        legacy_balance(&legacy.url, drifted).await,
        moved.1,
        "the drift legacy had is neither hidden nor grown"
    );
    let (name, kind, frequency, balance): (String, String, String, String) = sqlx::query_as(
        "select name, chama_type, contribution_frequency, balance::text from chamas where id = $1",
    )
    .bind(chama)
    .fetch_one(&mut src)
    .await
    .unwrap();
    assert_eq!(
        (
            name.as_str(),
            kind.as_str(),
            frequency.as_str(),
            balance.as_str()
        ),
        ("Upendo Savers", "merry-go-round", "bi-weekly", "4000.00")
    );
    let (phone, hash): (String, Option<String>) =
        sqlx::query_as("select phone, password_hash from users where id = $1")
            .bind(newcomer)
            .fetch_one(&mut src)
            .await
            .unwrap();
    assert_eq!(phone, "+254799123456");
    assert!(
        hash.is_some_and(|h| h.starts_with("$2")),
        "the password came along"
    );
    let members: Vec<(uuid::Uuid, String, String)> = sqlx::query_as(
        "select user_id, role, status from chama_members where chama_id = $1 order by role",
    )
    .bind(chama)
    .fetch_all(&mut src)
    .await
    .unwrap();
    assert_eq!(
        members,
        vec![
            (newcomer, "chairperson".to_owned(), "active".to_owned()),
            (joiner, "member".to_owned(), "active".to_owned())
        ]
    );
    let money: Vec<(String, String, String)> = sqlx::query_as(
        "select type, amount::text, status from transactions where chama_id = $1 order by type, amount",
    )
    .bind(chama)
    .fetch_all(&mut src)
    .await
    .unwrap();
    assert_eq!(
        money,
        vec![
            ("contribution".into(), "2000.00".into(), "completed".into()),
            ("contribution".into(), "3000.00".into(), "completed".into()),
            ("disbursement".into(), "1000.00".into(), "completed".into()),
        ]
    );
    let (status, paid_by, approvals): (String, Option<String>, serde_json::Value) = sqlx::query_as(
        "select r.status, t.type, r.approvals from disbursement_requests r left join transactions t on t.id = r.transaction_id
          where r.id = $1",
    )
    .bind(request)
    .fetch_one(&mut src)
    .await
    .unwrap();
    assert_eq!(status, "disbursed");
    assert_eq!(paid_by.as_deref(), Some("disbursement"));
    assert_eq!(approvals[0]["user_id"], newcomer.to_string());
    let last: String = sqlx::query_scalar("select last_name from users where id = $1")
        .bind(joiner)
        .fetch_one(&mut src)
        .await
        .unwrap();
    assert_eq!(last, "Changed");
    // Nothing of the replay is waiting to be synced back to the target.
    let captured: i64 = sqlx::query_scalar("select count(*) from pesachama_sync.changes")
        .fetch_one(&mut src)
        .await
        .unwrap();
    assert_eq!(captured, 0);
    drop_role(&legacy, &role).await;
}

/// A write the target is still committing when `rollback` starts is waited for and replayed;
/// before, rollback read the captured changes at once and the write, acknowledged a moment
/// later, was neither replayed nor reported (found by scripts/bench-cutover).
#[tokio::test]
async fn a_target_write_in_flight_when_rollback_starts_is_replayed_not_lost() {
    let (legacy, target, _role, _app_url) = copied(17).await;
    cutover::cutover(&legacy.url, &target.url, 500)
        .await
        .unwrap();
    let notification: uuid::Uuid = sqlx::query_scalar(
        "select id from public.notifications where legacy_id is not null order by id limit 1",
    )
    .fetch_one(&target.pool)
    .await
    .unwrap();
    let mut writer = target.pool.begin().await.unwrap();
    sqlx::query("update public.notifications set read_at = now() where id = $1")
        .bind(notification)
        .execute(&mut *writer)
        .await
        .unwrap();

    // The write commits while rollback runs (a join, not a spawn: the rollback future holds
    // connections across awaits).
    let commit_later = async {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        writer.commit().await.unwrap();
    };
    let (back, ()) = tokio::join!(cutover::rollback(&legacy.url, &target.url), commit_later);
    let back = back.unwrap();
    assert_eq!(back.replayed, 1, "{back:?}");

    // After the rollback the target no longer records writes for legacy.
    let captured: bool = sqlx::query_scalar(
        "select exists (select from pg_trigger where tgname = 'pesachama_rollback_capture')",
    )
    .fetch_one(&target.pool)
    .await
    .unwrap();
    assert!(!captured);
}
