//! Attacks through the Supabase Data API, run exactly as PostgREST runs a request: a
//! transaction with role `authenticated` and the attacker's JWT claims (`rls::begin_as`), then
//! the attacker's SQL. Each write a client could make past the API must be refused, or meet
//! the same checks, counts and notifications as the API's way of doing it; each test also
//! shows that the API's way (the `rpc`) still works. Tests that move money end with
//! `assert_ledger_balanced`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_store::PgPool;
use pesachama_store::rls::{DbRole, begin_as};
use pesachama_testkit::TestDb;
use serde_json::{Value, json};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
/// Nafula's withdrawal request in Umoja, approved once (by the treasurer); needs two.
const REQUEST: &str = "d15b0000-0000-4000-8000-000000000001";
const OUTSIDER_PHONE: &str = "+254711000999";
const STRANGER_PHONE: &str = "+254799000111";

/// The people of the demo seed (Umoja Women Group: chair, treasurer, secretary, members) and
/// two made here: an outsider with a profile and a newcomer with none yet.
#[derive(Debug, Clone, Copy)]
enum Who {
    Chair,
    Treasurer,
    Secretary,
    Member,
    Outsider,
    Newcomer,
}

impl Who {
    fn id(self) -> &'static str {
        match self {
            Self::Chair => "5eed0000-0000-4000-8000-000000000001",
            Self::Treasurer => "5eed0000-0000-4000-8000-000000000003",
            Self::Secretary => "5eed0000-0000-4000-8000-000000000005",
            Self::Member => "5eed0000-0000-4000-8000-000000000007",
            Self::Outsider => "00751de0-0000-4000-8000-000000000001",
            Self::Newcomer => "0e3c0e30-0000-4000-8000-000000000001",
        }
    }

    fn uuid(self) -> Uuid {
        self.id().parse().unwrap()
    }

    /// The claims of this person's access token (the phone without '+', as GoTrue puts it).
    fn claims(self) -> Value {
        let phone = match self {
            Self::Chair => "254712345001",
            Self::Treasurer => "254733345003",
            Self::Secretary => "254701345005",
            Self::Member => "254720345007",
            Self::Outsider => "254711000999",
            Self::Newcomer => "254711000888",
        };
        json!({
            "sub": self.id(), "role": "authenticated", "aud": "authenticated",
            "phone": phone, "aal": "aal1",
            "app_metadata": {"provider": "phone", "providers": ["phone"]}, "user_metadata": {},
        })
    }
}

/// A request by `who` through the Data API.
async fn as_user(pool: &PgPool, who: Who) -> Transaction<'_, Postgres> {
    begin_as(pool, DbRole::Authenticated, &who.claims())
        .await
        .unwrap()
}

/// Runs one statement as `who` and commits it when it succeeds.
async fn attempt(pool: &PgPool, who: Who, sql: &str) -> Result<u64, (String, String)> {
    let mut tx = as_user(pool, who).await;
    let result = sqlx::query(sql).execute(&mut *tx).await;
    match result {
        Ok(done) => {
            tx.commit().await.unwrap();
            Ok(done.rows_affected())
        }
        Err(err) => Err(sqlstate(&err)),
    }
}

fn sqlstate(err: &sqlx::Error) -> (String, String) {
    let db = err
        .as_database_error()
        .unwrap_or_else(|| panic!("not a database error: {err}"));
    (
        db.code().unwrap_or_default().into_owned(),
        db.message().to_owned(),
    )
}

/// The statement was refused with `code` and a message containing `fragment`.
#[track_caller]
fn assert_refused(result: Result<u64, (String, String)>, code: &str, fragment: &str) {
    match result {
        Err((got, message)) => assert!(
            got == code && message.contains(fragment),
            "expected {code} \"{fragment}\", got {got}: {message}"
        ),
        Ok(rows) => panic!("expected {code} \"{fragment}\", but it ran ({rows} row(s))"),
    }
}

/// No privilege: what PostgREST answers for a write the Data API does not allow at all.
const NO_GRANT: (&str, &str) = ("42501", "permission denied");

/// The demo seed, plus the outsider (signed up, profile, confirmed phone) and the newcomer
/// (signed up with a confirmed phone, no profile yet).
async fn fixture() -> TestDb {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    superuser(
        &db.pool,
        &format!(
            "insert into auth.users (id, aud, role, email, phone, phone_confirmed_at) values
               ('{outsider}', 'authenticated', 'authenticated', 'olive@example.co.ke', '254711000999', now()),
               ('{newcomer}', 'authenticated', 'authenticated', null, '254711000888', now());
             insert into public.users (id, email, phone, first_name, last_name)
               values ('{outsider}', 'olive@example.co.ke', '{OUTSIDER_PHONE}', 'Olive', 'Otieno');",
            outsider = Who::Outsider.id(),
            newcomer = Who::Newcomer.id(),
        ),
    )
    .await;
    db
}

async fn superuser(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sql).execute(pool).await.unwrap();
}

async fn scalar<T>(pool: &PgPool, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The integrity report is clean and every chama's balance is its cash account's postings.
async fn assert_ledger_balanced(pool: &PgPool) {
    let report = pesachama_store::integrity::report(pool).await.unwrap();
    assert!(!report.is_empty());
    let failed: Vec<_> = report.iter().filter(|check| !check.passed()).collect();
    assert!(failed.is_empty(), "integrity report: {failed:#?}");
    let off: i64 = scalar(
        pool,
        "select count(*) from public.chamas c
          where c.balance <> coalesce((select sum(p.amount) from internal.postings p
                                         join internal.ledger_accounts a on a.id = p.account_id
                                        where a.chama_id = c.id and a.kind = 'cash'), 0)",
    )
    .await;
    assert_eq!(off, 0, "chamas whose balance is off the ledger");
}

async fn account_balance(pool: &PgPool, kind: &str) -> i64 {
    scalar(
        pool,
        &format!(
            "select balance from internal.ledger_accounts
              where chama_id = '{UMOJA}' and kind = '{kind}' and user_id is null"
        ),
    )
    .await
}

// Item 2: writes that skip the API's checks --------------------------------------------------

#[tokio::test]
async fn a_member_cannot_file_a_withdrawal_paying_a_strangers_phone() {
    let db = fixture().await;
    let pool = &db.pool;

    // The attack as found: a plain member names any phone as the recipient.
    let attack = format!(
        "insert into public.disbursement_requests
           (chama_id, requested_by, recipient_user_id, recipient_phone, amount, reason, required_approvals)
         values ('{UMOJA}', auth.uid(), null, '{STRANGER_PHONE}', 90000, 'Stock for the stall', 2)"
    );
    let (code, fragment) = NO_GRANT;
    assert_refused(attempt(pool, Who::Member, &attack).await, code, fragment);
    let to_stranger: i64 = scalar(
        pool,
        &format!(
            "select count(*) from public.disbursement_requests where recipient_phone = '{STRANGER_PHONE}'"
        ),
    )
    .await;
    assert_eq!(to_stranger, 0);

    // The API's way: the recipient is a member, paid on their own phone, and every official
    // but the requester is asked to approve.
    let mut tx = as_user(pool, Who::Member).await;
    let answer: Value = sqlx::query_scalar(
        "select public.request_disbursement($1::uuid, 90000, 'Stock for the stall', null, 'attack-1', 'h1')",
    )
    .bind(UMOJA)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let request = &answer["request"];
    assert_eq!(request["recipient_phone"], "+254720345007");
    let asked: i64 = scalar(
        pool,
        &format!(
            "select count(*) from public.notifications
              where data ->> 'disbursement_request_id' = '{}' and type = 'approval'",
            request["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(
        asked, 3,
        "the chairperson, treasurer and secretary are asked"
    );
    assert_ledger_balanced(pool).await;
}

#[tokio::test]
async fn approvals_count_only_through_decide_disbursement() {
    let db = fixture().await;
    let pool = &db.pool;
    let cash_before = account_balance(pool, "cash").await;

    // An approval row written by hand would reach two without moving the request on (no
    // count, no reservation), or, today, let a member's row sit among the officials'.
    let approval = format!(
        "insert into public.disbursement_approvals (request_id, chama_id, approver_id, decision)
         values ('{REQUEST}', '{UMOJA}', auth.uid(), 'approve')"
    );
    let (code, fragment) = NO_GRANT;
    for who in [Who::Secretary, Who::Chair, Who::Member] {
        assert_refused(attempt(pool, who, &approval).await, code, fragment);
    }
    let rows: i64 = scalar(
        pool,
        &format!(
            "select count(*) from public.disbursement_approvals where request_id = '{REQUEST}'"
        ),
    )
    .await;
    assert_eq!(rows, 1, "only the treasurer's decision");

    // The API's way counts the decision and, at two, reserves the money and queues the payout.
    let mut tx = as_user(pool, Who::Secretary).await;
    let decided: Value =
        sqlx::query_scalar("select public.decide_disbursement($1::uuid, 'approve', 'Sawa')")
            .bind(REQUEST)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (decided["status"].as_str(), decided["approvals"].as_i64()),
        (Some("approved"), Some(2))
    );
    assert_eq!(account_balance(pool, "cash").await, cash_before - 150_000);
    assert_eq!(account_balance(pool, "payouts_in_transit").await, 150_000);
    let payouts: i64 = scalar(
        pool,
        &format!("select count(*) from internal.outbox where dedupe_key = 'payout:{REQUEST}'"),
    )
    .await;
    assert_eq!(payouts, 1);
    assert_ledger_balanced(pool).await;
}

#[tokio::test]
async fn joining_a_chama_needs_its_join_code() {
    let db = fixture().await;
    let pool = &db.pool;

    let attack = format!(
        "insert into public.chama_members (chama_id, user_id, role, status)
         values ('{UMOJA}', auth.uid(), 'member', 'pending')"
    );
    let (code, fragment) = NO_GRANT;
    assert_refused(attempt(pool, Who::Outsider, &attack).await, code, fragment);
    assert_refused(
        attempt(pool, Who::Outsider, "select public.join_chama('GUESSED1')").await,
        "PX404",
        "no active chama has that code",
    );

    // With the code, the request is pending and the officials are told.
    attempt(pool, Who::Outsider, "select public.join_chama('umoja2024')")
        .await
        .unwrap();
    let status: String = scalar(
        pool,
        &format!(
            "select status from public.chama_members where chama_id = '{UMOJA}' and user_id = '{}'",
            Who::Outsider.id()
        ),
    )
    .await;
    assert_eq!(status, "pending");
    let told: i64 = scalar(
        pool,
        "select count(*) from public.notifications where title = 'Request to join'",
    )
    .await;
    assert_eq!(told, 3);
}

#[tokio::test]
async fn an_official_cannot_answer_an_invitation_on_someone_elses_behalf() {
    let db = fixture().await;
    let pool = &db.pool;
    // The treasurer invited the outsider's phone.
    let invitation: Uuid = {
        let mut tx = as_user(pool, Who::Treasurer).await;
        let row: Value = sqlx::query_scalar("select public.invite_member($1::uuid, $2, 'member')")
            .bind(UMOJA)
            .bind(OUTSIDER_PHONE)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        row["id"].as_str().unwrap().parse().unwrap()
    };

    let (code, fragment) = NO_GRANT;
    let on_behalf = format!(
        "update public.chama_invitations set status = 'accepted', responded_at = now(),
                user_id = '{}' where id = '{invitation}'",
        Who::Member.id()
    );
    assert_refused(
        attempt(pool, Who::Treasurer, &on_behalf).await,
        code,
        fragment,
    );
    // Nor is an invitation issued past invite_member (which checks the number and sends the SMS).
    let issue = format!(
        "insert into public.chama_invitations (chama_id, phone, role, invited_by)
         values ('{UMOJA}', '{STRANGER_PHONE}', 'treasurer', auth.uid())"
    );
    assert_refused(attempt(pool, Who::Treasurer, &issue).await, code, fragment);
    // Nor made a member directly, by an official or by the invitee.
    let add = format!(
        "insert into public.chama_members (chama_id, user_id, role, status)
         values ('{UMOJA}', '{}', 'member', 'active')",
        Who::Outsider.id()
    );
    assert_refused(attempt(pool, Who::Treasurer, &add).await, code, fragment);
    let own_answer = format!(
        "update public.chama_invitations set status = 'accepted', responded_at = now(),
                user_id = auth.uid() where id = '{invitation}'"
    );
    assert_refused(
        attempt(pool, Who::Outsider, &own_answer).await,
        code,
        fragment,
    );

    // The invitee answers through respond_to_invitation, which makes the membership.
    attempt(
        pool,
        Who::Outsider,
        &format!("select public.respond_to_invitation('{invitation}', true)"),
    )
    .await
    .unwrap();
    let (status, user): (String, Uuid) =
        sqlx::query_as("select status, user_id from public.chama_invitations where id = $1")
            .bind(invitation)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), user), ("accepted", Who::Outsider.uuid()));
    let member: String = scalar(
        pool,
        &format!(
            "select status from public.chama_members where chama_id = '{UMOJA}' and user_id = '{}'",
            Who::Outsider.id()
        ),
    )
    .await;
    assert_eq!(member, "active");
}

#[tokio::test]
async fn a_profile_phone_is_the_verified_phone_of_the_sign_in() {
    let db = fixture().await;
    let pool = &db.pool;
    let (code, fragment) = NO_GRANT;

    // A member points their profile at someone else's number (payouts go to the profile's
    // phone, invitations and SMS find people by it).
    let takeover =
        format!("update public.users set phone = '{STRANGER_PHONE}' where id = auth.uid()");
    assert_refused(attempt(pool, Who::Member, &takeover).await, code, fragment);
    let phone: String = scalar(
        pool,
        &format!(
            "select phone::text from public.users where id = '{}'",
            Who::Member.id()
        ),
    )
    .await;
    assert_eq!(phone, "+254720345007");

    // A new profile cannot bring its own phone or email either ...
    let forged = format!(
        "insert into public.users (id, phone, first_name) values (auth.uid(), '{STRANGER_PHONE}', 'Neema')"
    );
    assert_refused(attempt(pool, Who::Newcomer, &forged).await, code, fragment);
    let forged = "insert into public.users (id, email, first_name) values (auth.uid(), 'boss@example.co.ke', 'Neema')";
    assert_refused(attempt(pool, Who::Newcomer, forged).await, code, fragment);
    // ... it gets the confirmed phone of the sign-in.
    attempt(
        pool,
        Who::Newcomer,
        "insert into public.users (id, first_name) values (auth.uid(), 'Neema')",
    )
    .await
    .unwrap();
    let phone: Option<String> = scalar(
        pool,
        &format!(
            "select phone::text from public.users where id = '{}'",
            Who::Newcomer.id()
        ),
    )
    .await;
    assert_eq!(phone.as_deref(), Some("+254711000888"));

    // A number not yet confirmed identifies nobody.
    superuser(
        pool,
        &format!(
            "update auth.users set phone = '254711000777', phone_confirmed_at = null where id = '{}'",
            Who::Outsider.id()
        ),
    )
    .await;
    superuser(
        pool,
        &format!(
            "delete from public.users where id = '{}'",
            Who::Outsider.id()
        ),
    )
    .await;
    attempt(
        pool,
        Who::Outsider,
        "insert into public.users (id, first_name) values (auth.uid(), 'Olive')",
    )
    .await
    .unwrap();
    let phone: Option<String> = scalar(
        pool,
        &format!(
            "select phone::text from public.users where id = '{}'",
            Who::Outsider.id()
        ),
    )
    .await;
    assert_eq!(phone, None);

    // The rest of the profile is the user's own.
    assert_eq!(
        attempt(
            pool,
            Who::Member,
            "update public.users set first_name = 'Nafula', language = 'sw' where id = auth.uid()"
        )
        .await,
        Ok(1)
    );
}

#[tokio::test]
async fn a_chama_created_through_the_data_api_is_born_as_through_the_api() {
    let db = fixture().await;
    let pool = &db.pool;
    let mut tx = as_user(pool, Who::Outsider).await;
    let chama: Uuid = sqlx::query_scalar(
        "insert into public.chamas (name, contribution_amount, created_by)
         values ('Harambee Youth', 50000, auth.uid()) returning id",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (role, approvals): (String, i32) = sqlx::query_as(
        "select m.role, c.required_approvals from public.chama_members m
           join public.chamas c on c.id = m.chama_id
          where m.chama_id = $1 and m.user_id = $2",
    )
    .bind(chama)
    .bind(Who::Outsider.uuid())
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((role.as_str(), approvals), ("chairperson", 1));
    let audited: i64 = sqlx::query_scalar(
        "select count(*) from public.audit_logs where action = 'chamas.insert' and record_id = $1::text",
    )
    .bind(chama)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);

    // A threshold its one official cannot reach is refused, as by the API.
    assert_refused(
        attempt(
            pool,
            Who::Outsider,
            "insert into public.chamas (name, contribution_amount, created_by, required_approvals)
             values ('Locked Box', 50000, auth.uid(), 3)",
        )
        .await,
        "PX422",
        "required_approvals must be 1",
    );
}

// Item 8: one official cannot weaken maker-checker -------------------------------------------

#[tokio::test]
async fn only_the_chairperson_changes_the_approval_threshold_and_never_lowers_it_over_money() {
    let db = fixture().await;
    let pool = &db.pool;
    let set =
        |k: i32| format!("update public.chamas set required_approvals = {k} where id = '{UMOJA}'");

    assert_refused(
        attempt(pool, Who::Secretary, &set(1)).await,
        "42501",
        "only the chairperson",
    );
    assert_refused(
        attempt(pool, Who::Treasurer, &set(3)).await,
        "42501",
        "only the chairperson",
    );
    // Umoja holds its members' contributions and has a request pending.
    assert_refused(
        attempt(pool, Who::Chair, &set(1)).await,
        "P0001",
        "cannot be lowered while the chama holds money",
    );
    // Raising protects more: the chairperson's to do.
    assert_eq!(attempt(pool, Who::Chair, &set(3)).await, Ok(1));
    // Officials still edit the other settings (the API names the column with its own value).
    assert_eq!(
        attempt(
            pool,
            Who::Secretary,
            &format!(
                "update public.chamas set contribution_amount = 120000,
                        required_approvals = coalesce(null, required_approvals)
                  where id = '{UMOJA}'"
            ),
        )
        .await,
        Ok(1)
    );
    let k: i32 = scalar(
        pool,
        &format!("select required_approvals from public.chamas where id = '{UMOJA}'"),
    )
    .await;
    assert_eq!(k, 3);

    // A chama with nothing in it: its chairperson lowers the threshold again.
    let mut tx = as_user(pool, Who::Outsider).await;
    let empty: Uuid = sqlx::query_scalar(
        "insert into public.chamas (name, contribution_amount, created_by)
         values ('New Group', 50000, auth.uid()) returning id",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    superuser(
        pool,
        &format!(
            "insert into public.chama_members (chama_id, user_id, role, status, joined_at) values
               ('{empty}', '{}', 'treasurer', 'active', now()),
               ('{empty}', '{}', 'secretary', 'active', now())",
            Who::Treasurer.id(),
            Who::Secretary.id()
        ),
    )
    .await;
    let set_empty =
        |k: i32| format!("update public.chamas set required_approvals = {k} where id = '{empty}'");
    assert_eq!(attempt(pool, Who::Outsider, &set_empty(2)).await, Ok(1));
    assert_eq!(attempt(pool, Who::Outsider, &set_empty(1)).await, Ok(1));
    assert_eq!(attempt(pool, Who::Outsider, &set_empty(2)).await, Ok(1));
    // A pending withdrawal is protected by the threshold it was filed under.
    superuser(
        pool,
        &format!(
            "insert into public.disbursement_requests
               (chama_id, requested_by, recipient_user_id, recipient_phone, amount, reason, required_approvals)
             values ('{empty}', '{}', '{}', '+254733345003', 1000, 'Pending one', 2)",
            Who::Treasurer.id(),
            Who::Treasurer.id()
        ),
    )
    .await;
    assert_refused(
        attempt(pool, Who::Outsider, &set_empty(1)).await,
        "P0001",
        "a withdrawal is in progress",
    );
    assert_ledger_balanced(pool).await;
}

#[tokio::test]
async fn the_suspension_rules_hold_in_the_database() {
    let db = fixture().await;
    let pool = &db.pool;
    let suspend = |who: Who| {
        format!(
            "update public.chama_members set status = 'suspended'
              where chama_id = '{UMOJA}' and user_id = '{}'",
            who.id()
        )
    };

    // Through the Data API an official suspends nobody: not another official, not themselves.
    let (code, fragment) = NO_GRANT;
    assert_refused(
        attempt(pool, Who::Treasurer, &suspend(Who::Secretary)).await,
        code,
        fragment,
    );
    assert_refused(
        attempt(pool, Who::Treasurer, &suspend(Who::Treasurer)).await,
        code,
        fragment,
    );
    assert_refused(
        attempt(pool, Who::Secretary, &suspend(Who::Chair)).await,
        code,
        fragment,
    );

    // Whoever writes the row meets the same rules: here the service role, acting for a user.
    let service = |who: Option<Who>| {
        let mut claims = json!({"iss": "supabase", "role": "service_role"});
        if let Some(who) = who {
            claims["sub"] = json!(who.id());
        }
        claims
    };
    let by_service = |acting: Option<Who>, sql: String| async move {
        let mut tx = begin_as(pool, DbRole::ServiceRole, &service(acting))
            .await
            .unwrap();
        let result = sqlx::query(&sql).execute(&mut *tx).await;
        match result {
            Ok(done) => {
                tx.commit().await.unwrap();
                Ok(done.rows_affected())
            }
            Err(err) => Err(sqlstate(&err)),
        }
    };
    assert_refused(
        by_service(None, suspend(Who::Chair)).await,
        "42501",
        "the chairperson cannot be suspended",
    );
    assert_refused(
        by_service(Some(Who::Treasurer), suspend(Who::Treasurer)).await,
        "42501",
        "you cannot suspend or reinstate yourself",
    );
    // Umoja needs two approvals and has three officials: one may go, not two.
    assert_eq!(by_service(None, suspend(Who::Secretary)).await, Ok(1));
    assert_refused(
        by_service(None, suspend(Who::Treasurer)).await,
        "P0001",
        "would have only 1",
    );

    // The API's way: an official suspends a plain member, with a reason, and the member is told.
    let mut tx = as_user(pool, Who::Treasurer).await;
    sqlx::query(
        "select public.set_member_suspended($1::uuid, $2::uuid, true, 'Missed six meetings')",
    )
    .bind(UMOJA)
    .bind(Who::Member.id())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let told: i64 = scalar(
        pool,
        &format!(
            "select count(*) from public.notifications
              where user_id = '{}' and title = 'Membership suspended'",
            Who::Member.id()
        ),
    )
    .await;
    assert_eq!(told, 1);
}

// Meetings and the register stay writable, under the API's checks ----------------------------

#[tokio::test]
async fn meetings_and_registers_written_directly_meet_the_apis_checks() {
    let db = fixture().await;
    let pool = &db.pool;
    let meeting: Uuid = scalar(
        pool,
        &format!("select id from public.meetings where chama_id = '{UMOJA}' limit 1"),
    )
    .await;

    assert_refused(
        attempt(
            pool,
            Who::Secretary,
            &format!(
                "insert into public.meetings (chama_id, title, scheduled_for, created_by)
                 values ('{UMOJA}', 'Last week', now() - interval '7 days', auth.uid())"
            ),
        )
        .await,
        "PX422",
        "scheduled_for must be in the future",
    );

    // The register lists members of the chama, and says truthfully who recorded it, when.
    let record = |user: Who, by: Who| {
        format!(
            "insert into public.meeting_attendance (meeting_id, chama_id, user_id, status, checked_in_at, recorded_by)
             values ('{meeting}', '{UMOJA}', '{}', 'present', now() - interval '30 days', '{}')",
            user.id(),
            by.id()
        )
    };
    assert_refused(
        attempt(pool, Who::Secretary, &record(Who::Outsider, Who::Secretary)).await,
        "PX422",
        "is not a member of this chama",
    );
    assert_eq!(
        attempt(pool, Who::Secretary, &record(Who::Member, Who::Chair)).await,
        Ok(1)
    );
    let (recorded_by, fresh): (Uuid, bool) = sqlx::query_as(
        "select recorded_by, checked_in_at > now() - interval '1 minute'
           from public.meeting_attendance where meeting_id = $1 and user_id = $2",
    )
    .bind(meeting)
    .bind(Who::Member.uuid())
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((recorded_by, fresh), (Who::Secretary.uuid(), true));

    // Cancelled stays cancelled; a meeting already held is not cancelled after the fact.
    attempt(
        pool,
        Who::Secretary,
        &format!("update public.meetings set status = 'cancelled' where id = '{meeting}'"),
    )
    .await
    .unwrap();
    assert_refused(
        attempt(
            pool,
            Who::Secretary,
            &format!("update public.meetings set status = 'scheduled' where id = '{meeting}'"),
        )
        .await,
        "P0001",
        "this meeting was cancelled",
    );
}

/// Names that hide or reorder text (issue 29 #14) are refused through the Data API as the API
/// refuses them; a name in another script or with an emoji sequence passes; a user whom
/// Supabase Auth made with such a name still gets a profile, without the name.
#[tokio::test]
async fn names_that_hide_or_reorder_text_are_refused_in_the_database_too() {
    let db = fixture().await;
    let umoja = "c4a3a000-0000-4000-8000-000000000001";
    let check = ("23514", "visible");
    for (who, sql) in [
        (
            Who::Member,
            "update public.users set first_name = 'Treasurer' || chr(8238) || 'gnp.exe' where id = auth.uid()".to_owned(),
        ),
        (
            Who::Member,
            "update public.users set last_name = 'Otie' || chr(8203) || 'no' where id = auth.uid()".to_owned(),
        ),
        (
            Who::Chair,
            format!("update public.chamas set name = 'Umo' || chr(8205) || 'ja' where id = '{umoja}'"),
        ),
        (
            Who::Chair,
            format!("update public.chamas set name = chr(65279) || 'Umoja' where id = '{umoja}'"),
        ),
    ] {
        assert_refused(attempt(&db.pool, who, &sql).await, check.0, check.1);
    }
    for (who, sql) in [
        (
            Who::Member,
            "update public.users set first_name = 'محمد', last_name = 'Zoë' where id = auth.uid()"
                .to_owned(),
        ),
        (
            Who::Chair,
            format!("update public.chamas set name = 'Wamama 👩‍👩‍👧' where id = '{umoja}'"),
        ),
    ] {
        assert_eq!(attempt(&db.pool, who, &sql).await, Ok(1), "{sql}");
    }

    let made_by_supabase = "5afe0000-0000-4000-8000-0000000000aa";
    superuser(
        &db.pool,
        &format!(
            "insert into auth.users (id, aud, role, email, email_confirmed_at, raw_user_meta_data)
             values ('{made_by_supabase}', 'authenticated', 'authenticated', 'rlo@example.co.ke', now(),
                     jsonb_build_object('first_name', 'Jane' || chr(8238) || 'xe', 'last_name', 'Wambui'))"
        ),
    )
    .await;
    superuser(
        &db.pool,
        &format!("select internal.ensure_profile('{made_by_supabase}')"),
    )
    .await;
    let (first, email): (Option<String>, Option<String>) = sqlx::query_as(&format!(
        "select first_name, email from public.users where id = '{made_by_supabase}'"
    ))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((first, email.as_deref()), (None, Some("rlo@example.co.ke")));
}

/// The inventory of what a client may write through the Data API (issue 29: "a client can write
/// only what the API itself would accept, or not at all"). Every INSERT, UPDATE and DELETE that
/// `anon` or `authenticated` holds on a public table is listed here with what makes it the
/// API's own write; a grant added without a line here (and a test of its own) fails this test.
#[tokio::test]
async fn every_write_the_data_api_allows_is_one_the_api_would_accept() {
    let db = TestDb::new().await;
    let granted: Vec<(String, String, String, String)> = sqlx::query_as(
        "select grantee::text, table_name::text, privilege_type::text,
                coalesce(string_agg(column_name::text, ',' order by column_name), '')
           from information_schema.column_privileges
          where table_schema = 'public' and grantee in ('anon', 'authenticated', 'PUBLIC')
            and privilege_type in ('INSERT', 'UPDATE')
          group by 1, 2, 3
         union all
         select grantee::text, table_name::text, privilege_type::text, '*'
           from information_schema.table_privileges
          where table_schema = 'public' and grantee in ('anon', 'authenticated', 'PUBLIC')
            and privilege_type = 'DELETE'
          order by 1, 2, 3",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let granted: Vec<String> = granted
        .into_iter()
        .map(|(who, table, what, columns)| format!("{who} {what} {table}({columns})"))
        .collect();
    println!("{}", granted.join("\n"));
    assert_eq!(
        granted,
        INVENTORY
            .iter()
            .map(|(grant, _)| *grant)
            .collect::<Vec<_>>()
    );
}

/// What the Data API may write, and what makes each write the API's own (the test that shows
/// it). Money never moves through a direct write: contributions, withdrawals, approvals,
/// memberships and invitations are `rpc` functions only.
const INVENTORY: &[(&str, &str)] = &[
    (
        "authenticated INSERT chamas(chama_type,contribution_amount,contribution_frequency,created_by,description,name,registration_number,required_approvals)",
        "POST /chamas: created_by is the caller (policy); a trigger makes them chairperson, as the API does; names visible \
         (a_chama_created_through_the_data_api_is_born_as_through_the_api, names_that_hide_or_reorder_text_...)",
    ),
    (
        "authenticated UPDATE chamas(chama_type,contribution_amount,contribution_frequency,description,name,registration_number,required_approvals)",
        "PATCH /chamas/{id}: officials only (policy); the approval threshold only by the chairperson, never lowered over money \
         (only_the_chairperson_changes_the_approval_threshold_and_never_lowers_it_over_money)",
    ),
    (
        "authenticated DELETE device_tokens(*)",
        "DELETE /devices/{token}: one's own devices only (policy; members.rs notifications_are_the_callers_own_...)",
    ),
    (
        "authenticated INSERT device_tokens(platform,token,user_id)",
        "POST /devices: user_id is the caller (policy)",
    ),
    (
        "authenticated UPDATE device_tokens(last_seen_at,platform)",
        "POST /devices again: one's own devices only (policy)",
    ),
    (
        "authenticated INSERT meeting_attendance(chama_id,checked_in_at,meeting_id,recorded_by,status,user_id)",
        "the register of a meeting: officials, or a member checking themself in, as the API \
         (meetings_and_registers_written_directly_meet_the_apis_checks)",
    ),
    (
        "authenticated UPDATE meeting_attendance(checked_in_at,recorded_by,status)",
        "as above (meetings_and_registers_written_directly_meet_the_apis_checks)",
    ),
    (
        "authenticated INSERT meetings(agenda,chama_id,created_by,duration_minutes,meeting_type,scheduled_for,title,venue)",
        "POST /chamas/{id}/meetings: officials only, created_by the caller \
         (meetings_and_registers_written_directly_meet_the_apis_checks)",
    ),
    (
        "authenticated UPDATE meetings(agenda,duration_minutes,meeting_type,minutes,minutes_object_id,recording_object_id,scheduled_for,status,title,venue)",
        "PATCH meetings, minutes and recordings linked: officials only \
         (meetings_and_registers_written_directly_meet_the_apis_checks)",
    ),
    (
        "authenticated DELETE notifications(*)",
        "one's own notifications only (policy; members.rs notifications_are_the_callers_own_...)",
    ),
    (
        "authenticated UPDATE notifications(read_at)",
        "marking one's own notifications read, as the API does (policy)",
    ),
    (
        "authenticated INSERT users(avatar_url,first_name,id,id_number,language,last_name)",
        "the caller's own profile (policy id = auth.uid()), without email or phone, which are the confirmed ones of \
         the sign-in (a_profile_phone_is_the_verified_phone_of_the_sign_in); names visible",
    ),
    (
        "authenticated UPDATE users(avatar_url,first_name,id_number,language,last_name)",
        "PATCH /users/me, the same columns and formats (members.rs a_member_sets_their_id_number_in_the_schemas_format, \
         names_that_hide_or_reorder_text_are_refused_in_the_database_too)",
    ),
];
