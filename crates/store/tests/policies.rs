//! The row-level security policy matrix: for every table the Data API exposes (every table in
//! `public`, and `storage.objects` per bucket), what each kind of caller may SELECT, INSERT,
//! UPDATE and DELETE. Each statement runs in a transaction of its own with the caller's role and
//! JWT claims set exactly as PostgREST sets them (`rls::begin_as`), and is rolled back.
//!
//! Outcomes are precise about *how* something is denied:
//! - `Hidden`: the statement runs and RLS leaves it nothing: zero rows seen or changed, no error;
//! - `NoGrant`: SQLSTATE 42501 "permission denied": no privilege on the table, column or schema;
//! - `Policy`: SQLSTATE 42501 "new row violates row-level security policy" (a WITH CHECK);
//! - `Guard(..)`: SQLSTATE 42501 raised by a trigger or an rpc, with its message;
//! - `Fails(sqlstate)`: allowed by RLS and grants, refused by a constraint or a trigger.
//!
//! The Data-API write rule: a client writes through the Data API only what the API itself
//! would accept. Memberships, invitations, withdrawal requests and decisions are written by
//! their rpcs only (`NoGrant` here; `data_api_attacks.rs` performs the attacks).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fmt;

use pesachama_store::PgPool;
use pesachama_store::rls::{DbRole, begin_as};
use pesachama_testkit::TestDb;
use serde_json::{Value, json};

// The cast, from supabase/seed.sql plus two users made here ------------------------------------

/// Every `{name}` in a statement is replaced by the quoted uuid.
const IDS: &[(&str, &str)] = &[
    // Umoja Women Group: Wanjiku chairperson, Akinyi treasurer, Mwanaisha secretary, Nafula and
    // Chebet members. Requires 2 approvals.
    ("umoja", "c4a3a000-0000-4000-8000-000000000001"),
    // Kisumu Boda Boda Sacco: Akinyi is a plain member there, Barasa too.
    ("boda", "c4a3a000-0000-4000-8000-000000000002"),
    // Eldoret Merry-Go-Round: Wanjiku is a plain member there.
    ("eldoret", "c4a3a000-0000-4000-8000-000000000003"),
    ("chair", "5eed0000-0000-4000-8000-000000000001"),
    ("official", "5eed0000-0000-4000-8000-000000000003"),
    ("secretary", "5eed0000-0000-4000-8000-000000000005"),
    ("member", "5eed0000-0000-4000-8000-000000000007"),
    ("invitee", "5eed0000-0000-4000-8000-000000000010"),
    // Signed up, has a profile, in no chama.
    ("outsider", "00751de0-0000-4000-8000-000000000001"),
    // Signed up a moment ago: an auth.users row and no profile yet.
    ("newcomer", "0e3c0e30-0000-4000-8000-000000000001"),
    // Nafula's withdrawal request in Umoja, approved once (by Akinyi).
    ("request", "d15b0000-0000-4000-8000-000000000001"),
    ("umoja_meeting", "3ee70000-0000-4000-8000-000000000001"),
    // Held, with the register of its five members.
    ("boda_meeting", "3ee70000-0000-4000-8000-000000000002"),
];

fn id(name: &str) -> &'static str {
    IDS.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, id)| *id)
        .unwrap_or_else(|| panic!("no id named {name}"))
}

/// Replaces `{name}` by `'<uuid>'`.
fn expand(sql: &str) -> String {
    IDS.iter().fold(sql.to_owned(), |sql, (name, id)| {
        sql.replace(&format!("{{{name}}}"), &format!("'{id}'"))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actor {
    /// No sign-in: the anon key.
    Anon,
    /// Signed in, member of no chama.
    Outsider,
    /// Nafula, a plain member of Umoja.
    Member,
    /// Akinyi, treasurer of Umoja and a plain member of Boda.
    Official,
    /// The service role key (system paths).
    Service,
    /// Wanjiku, chairperson of Umoja.
    Chair,
    /// Mwanaisha, secretary of Umoja.
    Secretary,
    /// Barasa, a member of Boda (invited to Umoja in some tests).
    Invitee,
    /// Signed up, no profile yet.
    Newcomer,
    /// The outsider, marked platform admin in app_metadata (which only the server writes).
    Admin,
    /// The outsider claiming to be an admin in user_metadata (which the user writes).
    SelfStyledAdmin,
}

impl Actor {
    /// The role and claims a Supabase access token (or API key) of this actor carries.
    fn token(self) -> (DbRole, Value) {
        let user = |name: &str, phone: &str| {
            json!({
                "sub": id(name),
                "role": "authenticated",
                "aud": "authenticated",
                "phone": phone,
                "aal": "aal1",
                "app_metadata": {"provider": "phone", "providers": ["phone"]},
                "user_metadata": {},
            })
        };
        match self {
            Self::Anon => (DbRole::Anon, json!({"iss": "supabase", "role": "anon"})),
            Self::Service => (
                DbRole::ServiceRole,
                json!({"iss": "supabase", "role": "service_role"}),
            ),
            Self::Outsider => (DbRole::Authenticated, user("outsider", "254711000999")),
            Self::Member => (DbRole::Authenticated, user("member", "254720345007")),
            Self::Official => (DbRole::Authenticated, user("official", "254733345003")),
            Self::Chair => (DbRole::Authenticated, user("chair", "254712345001")),
            Self::Secretary => (DbRole::Authenticated, user("secretary", "254701345005")),
            Self::Invitee => (DbRole::Authenticated, user("invitee", "254727345010")),
            Self::Newcomer => (DbRole::Authenticated, user("newcomer", "254711000888")),
            Self::Admin => {
                let mut claims = user("outsider", "254711000999");
                claims["app_metadata"]["platform_role"] = json!("admin");
                claims["session_id"] = json!("5e551000-0000-4000-8000-000000000001");
                (DbRole::Authenticated, claims)
            }
            Self::SelfStyledAdmin => {
                let mut claims = user("outsider", "254711000999");
                claims["user_metadata"]["platform_role"] = json!("admin");
                (DbRole::Authenticated, claims)
            }
        }
    }
}

// Outcomes -------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Runs, and sees or changes exactly this many rows (at least one).
    Rows(u64),
    /// Runs, and sees or changes exactly the rows a superuser would (at least one).
    All,
    /// Runs, but RLS leaves nothing: zero rows, no error.
    Hidden,
    /// SQLSTATE 42501 "permission denied ...": no privilege on the table, column or schema.
    NoGrant,
    /// SQLSTATE 42501 "new row violates row-level security policy ...".
    Policy,
    /// SQLSTATE 42501 raised by a trigger, with this in its message.
    Guard(&'static str),
    /// Allowed by grants and RLS, refused by a constraint with this SQLSTATE.
    Fails(&'static str),
}
use Expect::{All, Fails, Guard, Hidden, NoGrant, Policy, Rows};

#[derive(Debug)]
enum Outcome {
    Rows(u64),
    Error { code: String, message: String },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rows(n) => write!(f, "{n} row(s)"),
            Self::Error { code, message } => write!(f, "error {code}: {message}"),
        }
    }
}

/// Deletes from `storage.objects` are refused by storage-api's trigger unless the transaction
/// says it is storage-api's own (which also removes the bytes); the matrix checks the DELETE
/// policies under the setting storage-api runs them with. Without it, see `direct_storage_delete`.
async fn as_storage_api(tx: &mut sqlx::PgConnection, sql: &str) {
    if sql.starts_with("delete from storage.") {
        sqlx::query("select set_config('storage.allow_delete_query', 'true', true)")
            .execute(&mut *tx)
            .await
            .unwrap();
    }
}

/// Runs one statement as `actor` in a transaction of its own and rolls it back.
async fn run_as(pool: &PgPool, actor: Actor, sql: &str) -> Outcome {
    let (role, claims) = actor.token();
    let mut tx = begin_as(pool, role, &claims).await.unwrap();
    as_storage_api(&mut tx, sql).await;
    let result = sqlx::query(sql).execute(&mut *tx).await;
    tx.rollback().await.unwrap();
    outcome(result)
}

/// Runs one statement as the superuser (no RLS) and rolls it back: the baseline for `All`.
async fn run_as_superuser(pool: &PgPool, sql: &str) -> Outcome {
    let mut tx = pool.begin().await.unwrap();
    as_storage_api(&mut tx, sql).await;
    let result = sqlx::query(sql).execute(&mut *tx).await;
    tx.rollback().await.unwrap();
    outcome(result)
}

fn outcome(result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>) -> Outcome {
    match result {
        // For a SELECT this is the number of rows returned (the "SELECT n" command tag).
        Ok(done) => Outcome::Rows(done.rows_affected()),
        Err(err) => {
            let db = err
                .as_database_error()
                .unwrap_or_else(|| panic!("not a database error: {err}"));
            Outcome::Error {
                code: db.code().unwrap_or_default().into_owned(),
                message: db.message().to_owned(),
            }
        }
    }
}

/// Whether `got` is what `expected` says; `baseline` is the superuser's outcome, for `All`.
fn agrees(expected: Expect, got: &Outcome, baseline: Option<&Outcome>) -> bool {
    let refused = |fragment: &str| matches!(got, Outcome::Error { code, message } if code == "42501" && message.contains(fragment));
    match expected {
        Rows(n) => n > 0 && matches!(got, Outcome::Rows(m) if *m == n),
        Hidden => matches!(got, Outcome::Rows(0)),
        All => match (got, baseline) {
            (Outcome::Rows(m), Some(Outcome::Rows(n))) => *n > 0 && m == n,
            _ => false,
        },
        NoGrant => refused("permission denied"),
        Policy => refused("violates row-level security policy"),
        Guard(fragment) => refused(fragment),
        Fails(sqlstate) => matches!(got, Outcome::Error { code, .. } if code == sqlstate),
    }
}

/// One rule: `actor` running `sql` gets `expect`.
struct Case {
    actor: Actor,
    what: &'static str,
    sql: String,
    expect: Expect,
}

fn case(actor: Actor, what: &'static str, sql: impl Into<String>, expect: Expect) -> Case {
    Case {
        actor,
        what,
        sql: sql.into(),
        expect,
    }
}

/// Runs every case and fails once, listing every case whose outcome differs.
async fn check(pool: &PgPool, cases: &[Case]) {
    let mut wrong = Vec::new();
    for case in cases {
        let sql = expand(&case.sql);
        let got = run_as(pool, case.actor, &sql).await;
        let baseline = match case.expect {
            All => Some(run_as_superuser(pool, &sql).await),
            _ => None,
        };
        if !agrees(case.expect, &got, baseline.as_ref()) {
            let baseline = baseline
                .map(|b| format!(" (superuser: {b})"))
                .unwrap_or_default();
            wrong.push(format!(
                "{:?}: {}\n    {sql}\n    expected {:?}, got {got}{baseline}",
                case.actor, case.what, case.expect
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases differ:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

// The fixture --------------------------------------------------------------------------------

/// The demo seed plus: an outsider and a newcomer, a device, a USSD session, two payment
/// requests, an invitation for the outsider's phone, and one file in each bucket.
const FIXTURE: &str = r"
insert into auth.users (id, aud, role, email, phone, phone_confirmed_at) values
  ({outsider}, 'authenticated', 'authenticated', 'olive@example.co.ke', '254711000999', now()),
  ({newcomer}, 'authenticated', 'authenticated', null, '254711000888', now());
-- The outsider is a platform administrator in the database (the Admin actor's token says so
-- too, and names this session); the other actors' tokens do not claim it.
update auth.users set raw_app_meta_data = jsonb_build_object('platform_role', 'admin') where id = {outsider};
insert into auth.sessions (id, user_id) values ('5e551000-0000-4000-8000-000000000001', {outsider});
insert into public.users (id, email, phone, first_name, last_name)
  values ({outsider}, 'olive@example.co.ke', '+254711000999', 'Olive', 'Otieno');
insert into public.device_tokens (user_id, token, platform)
  values ({member}, 'fcm-token-of-the-member-0001', 'android');
insert into public.ussd_sessions (session_id, phone_number, service_code, user_id)
  values ('ATUid_policy_test_0001', '+254720345007', '*384*1234#', {member});
insert into public.payment_requests (chama_id, user_id, phone, amount) values
  ({umoja}, {member}, '+254720345007', 100000),
  ({umoja}, {chair}, '+254712345001', 100000);
insert into public.chama_invitations (chama_id, phone, invited_by)
  values ({umoja}, '+254711000999', {official});
insert into storage.objects (bucket_id, name) values
  ('avatars', {member} || '/face.png'),
  ('documents', {umoja} || '/constitution.pdf'),
  ('documents', {boda} || '/minutes.pdf'),
  ('recordings', {umoja} || '/2024-06-meeting.mp3');
";

async fn fixture() -> TestDb {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    sqlx::raw_sql(&expand(FIXTURE))
        .execute(&db.pool)
        .await
        .unwrap();
    db
}

/// Commits extra fixture rows as the superuser.
async fn add(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(&expand(sql)).execute(pool).await.unwrap();
}

// The matrix -------------------------------------------------------------------------------------

/// One table: a statement per command, and what each of the five actors gets for each
/// (in the order select, insert, update, delete).
struct Rules {
    table: &'static str,
    select: &'static str,
    insert: &'static str,
    update: &'static str,
    delete: &'static str,
    anon: [Expect; 4],
    outsider: [Expect; 4],
    member: [Expect; 4],
    official: [Expect; 4],
    service: [Expect; 4],
}

#[rustfmt::skip]
const MATRIX: &[Rules] = &[
    Rules {
        table: "public.users",
        select: "select from public.users",
        insert: "insert into public.users (id, first_name) values ({newcomer}, 'Neema')",
        update: "update public.users set first_name = 'Changed' where id = {member}",
        delete: "delete from public.users where id = {outsider}",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [Rows(1),   Policy,    Hidden,    NoGrant],
        // themselves and the four other members of Umoja
        member:   [Rows(5),   Policy,    Rows(1),   NoGrant],
        // the members of Umoja and of Boda
        official: [Rows(9),   Policy,    Hidden,    NoGrant],
        service:  [All,       Rows(1),   Rows(1),   Rows(1)],
    },
    Rules {
        table: "public.chamas",
        select: "select from public.chamas",
        insert: "insert into public.chamas (name, contribution_amount, created_by)
                 values ('Harambee Youth', 50000, auth.uid())",
        update: "update public.chamas set description = 'Changed' where id = {umoja}",
        delete: "delete from public.chamas where id = {eldoret}",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [Hidden,    Rows(1),   Hidden,    NoGrant],
        member:   [Rows(1),   Rows(1),   Hidden,    NoGrant],
        official: [Rows(2),   Rows(1),   Rows(1),   NoGrant],
        // a chama has a ledger from birth, so it is closed, never deleted
        service:  [All,       Rows(1),   Rows(1),   Fails("23503")],
    },
    Rules {
        table: "public.chama_members",
        select: "select from public.chama_members",
        insert: "insert into public.chama_members (chama_id, user_id, status)
                 values ({umoja}, {outsider}, 'invited')",
        update: "update public.chama_members set role = 'secretary'
                 where chama_id = {umoja} and user_id = {member}",
        delete: "delete from public.chama_members where chama_id = {umoja} and user_id = {member}",
        // written by the rpcs only (join_chama, admit_member, change_member_role, ...)
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [Hidden,    NoGrant,   NoGrant,   NoGrant],
        member:   [Rows(5),   NoGrant,   NoGrant,   NoGrant],
        official: [Rows(10),  NoGrant,   NoGrant,   NoGrant],
        service:  [All,       Rows(1),   Rows(1),   Rows(1)],
    },
    Rules {
        table: "public.chama_invitations",
        select: "select from public.chama_invitations",
        insert: "insert into public.chama_invitations (chama_id, phone, invited_by)
                 values ({umoja}, '+254700000001', auth.uid())",
        update: "update public.chama_invitations set status = 'declined', responded_at = now()
                 where phone = '+254711000999'",
        delete: "delete from public.chama_invitations where phone = '+254711000999'",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        // the invitation is for the outsider's phone; invite_member and
        // respond_to_invitation write them
        outsider: [Rows(1),   NoGrant,   NoGrant,   NoGrant],
        member:   [Hidden,    NoGrant,   NoGrant,   NoGrant],
        official: [Rows(1),   NoGrant,   NoGrant,   NoGrant],
        service:  [All,       Rows(1),   Rows(1),   Rows(1)],
    },
    Rules {
        table: "public.transactions",
        select: "select from public.transactions where chama_id = {umoja}",
        insert: "insert into public.transactions (chama_id, user_id, type, amount)
                 values ({umoja}, {member}, 'contribution', 100000)",
        update: "update public.transactions set description = 'Changed'
                 where chama_id = {umoja} and user_id = {member}",
        delete: "delete from public.transactions where chama_id = {umoja} and user_id = {member}",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [Hidden,    NoGrant,   NoGrant,   NoGrant],
        // Nafula's own three contributions; the treasurer sees all nineteen
        member:   [Rows(3),   NoGrant,   NoGrant,   NoGrant],
        official: [Rows(19),  NoGrant,   NoGrant,   NoGrant],
        service:  [All,       Rows(1),   Rows(3),   Rows(3)],
    },
    Rules {
        table: "public.disbursement_requests",
        select: "select from public.disbursement_requests",
        insert: "insert into public.disbursement_requests
                   (chama_id, requested_by, recipient_phone, amount, reason, required_approvals)
                 values ({umoja}, {member}, '+254720345007', 50000, 'Hospital bill', 2)",
        update: "update public.disbursement_requests set status = 'approved' where id = {request}",
        delete: "delete from public.disbursement_requests where id = {request}",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [Hidden,    NoGrant,   NoGrant,   NoGrant],
        // filed through request_disbursement only
        member:   [Rows(1),   NoGrant,   NoGrant,   NoGrant],
        official: [Rows(1),   NoGrant,   NoGrant,   NoGrant],
        // it has an approval: even the service role cannot make it disappear
        service:  [All,       Rows(1),   Rows(1),   Fails("23503")],
    },
    Rules {
        table: "public.disbursement_approvals",
        select: "select from public.disbursement_approvals",
        insert: "insert into public.disbursement_approvals (request_id, chama_id, approver_id, decision)
                 values ({request}, {umoja}, {chair}, 'approve')",
        update: "update public.disbursement_approvals set decision = 'reject' where request_id = {request}",
        delete: "delete from public.disbursement_approvals where request_id = {request}",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [Hidden,    NoGrant,   NoGrant,   NoGrant],
        member:   [Rows(1),   NoGrant,   NoGrant,   NoGrant],
        // decided through decide_disbursement only, which counts the decision
        official: [Rows(1),   NoGrant,   NoGrant,   NoGrant],
        service:  [All,       Rows(1),   Rows(1),   Rows(1)],
    },
    Rules {
        table: "public.meetings",
        select: "select from public.meetings",
        insert: "insert into public.meetings (chama_id, title, scheduled_for, created_by)
                 values ({umoja}, 'Special meeting', now() + interval '7 days', auth.uid())",
        update: "update public.meetings set agenda = 'Changed' where chama_id = {umoja}",
        delete: "delete from public.meetings where chama_id = {umoja}",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [Hidden,    Policy,    Hidden,    NoGrant],
        member:   [Rows(1),   Policy,    Hidden,    NoGrant],
        official: [Rows(2),   Rows(1),   Rows(1),   NoGrant],
        service:  [All,       Rows(1),   Rows(1),   Rows(1)],
    },
    Rules {
        table: "public.meeting_attendance",
        select: "select from public.meeting_attendance",
        insert: "insert into public.meeting_attendance (meeting_id, chama_id, user_id, status, recorded_by)
                 values ({umoja_meeting}, {umoja}, {member}, 'present', auth.uid())",
        update: "update public.meeting_attendance set status = 'late' where chama_id = {boda}",
        delete: "delete from public.meeting_attendance where chama_id = {boda}",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [Hidden,    Policy,    Hidden,    NoGrant],
        // the only register is Boda's
        member:   [Hidden,    Policy,    Hidden,    NoGrant],
        // Akinyi sees Boda's register as a member there, but only takes Umoja's
        official: [Rows(5),   Rows(1),   Hidden,    NoGrant],
        service:  [All,       Rows(1),   Rows(5),   Rows(5)],
    },
    Rules {
        table: "public.payment_requests",
        select: "select from public.payment_requests",
        insert: "insert into public.payment_requests (chama_id, user_id, phone, amount)
                 values ({umoja}, {member}, '+254720345007', 100000)",
        update: "update public.payment_requests set status = 'cancelled' where chama_id = {umoja}",
        delete: "delete from public.payment_requests where chama_id = {umoja}",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [Hidden,    NoGrant,   NoGrant,   NoGrant],
        // one's own; officials see the chama's
        member:   [Rows(1),   NoGrant,   NoGrant,   NoGrant],
        official: [Rows(2),   NoGrant,   NoGrant,   NoGrant],
        service:  [All,       Rows(1),   Rows(2),   Rows(2)],
    },
    Rules {
        table: "public.ussd_sessions",
        select: "select from public.ussd_sessions",
        insert: "insert into public.ussd_sessions (session_id, phone_number)
                 values ('ATUid_policy_test_0002', '+254720345007')",
        update: "update public.ussd_sessions set hops = hops + 1",
        delete: "delete from public.ussd_sessions",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        member:   [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        official: [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        service:  [All,       Rows(1),   Rows(1),   Rows(1)],
    },
    Rules {
        table: "public.notifications",
        // The seed gives the member two: an SMS about the monthly meeting, and the
        // "Meeting scheduled" the meetings trigger writes for every member.
        select: "select from public.notifications where user_id = {member}",
        insert: "insert into public.notifications (user_id, type, title)
                 values ({member}, 'system', 'Karibu')",
        update: "update public.notifications set read_at = now() where user_id = {member}",
        delete: "delete from public.notifications where user_id = {member}",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [Hidden,    NoGrant,   Hidden,    Hidden],
        member:   [Rows(2),   NoGrant,   Rows(2),   Rows(2)],
        official: [Hidden,    NoGrant,   Hidden,    Hidden],
        service:  [All,       Rows(1),   Rows(2),   Rows(2)],
    },
    Rules {
        table: "public.device_tokens",
        select: "select from public.device_tokens",
        insert: "insert into public.device_tokens (user_id, token, platform)
                 values ({member}, 'fcm-token-of-the-member-0002', 'ios')",
        update: "update public.device_tokens set last_seen_at = now() where user_id = {member}",
        delete: "delete from public.device_tokens where user_id = {member}",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [Hidden,    Policy,    Hidden,    Hidden],
        member:   [Rows(1),   Rows(1),   Rows(1),   Rows(1)],
        official: [Hidden,    Policy,    Hidden,    Hidden],
        service:  [All,       Rows(1),   Rows(1),   Rows(1)],
    },
    Rules {
        table: "public.audit_logs",
        select: "select from public.audit_logs where chama_id = {umoja}",
        insert: "insert into public.audit_logs (action, chain_key, chain_seq, prev_hash, hash)
                 values ('forged', 'platform', 999999, '', '')",
        update: "update public.audit_logs set action = 'forged'",
        delete: "delete from public.audit_logs",
        //         select     insert     update     delete
        anon:     [NoGrant,   NoGrant,   NoGrant,   NoGrant],
        outsider: [Hidden,    NoGrant,   NoGrant,   NoGrant],
        // officials read their chama's trail; nobody writes it, not even the service role
        member:   [Hidden,    NoGrant,   NoGrant,   NoGrant],
        official: [All,       NoGrant,   NoGrant,   NoGrant],
        service:  [All,       NoGrant,   NoGrant,   NoGrant],
    },
    Rules {
        table: "storage.objects (avatars: public, <user id>/...)",
        select: "select from storage.objects where bucket_id = 'avatars'",
        insert: "insert into storage.objects (bucket_id, name) values ('avatars', {member} || '/new.png')",
        update: "update storage.objects set last_accessed_at = now()
                 where bucket_id = 'avatars' and name = {member} || '/face.png'",
        delete: "delete from storage.objects where bucket_id = 'avatars' and name = {member} || '/face.png'",
        //         select     insert     update     delete
        // anon holds every grant on storage's tables, as on Supabase; RLS is the guard
        anon:     [Rows(1),   Policy,    Hidden,    Hidden],
        outsider: [Rows(1),   Policy,    Hidden,    Hidden],
        member:   [Rows(1),   Rows(1),   Rows(1),   Rows(1)],
        official: [Rows(1),   Policy,    Hidden,    Hidden],
        service:  [All,       Rows(1),   Rows(1),   Rows(1)],
    },
    Rules {
        table: "storage.objects (documents: private, <chama id>/...)",
        select: "select from storage.objects where bucket_id = 'documents'",
        insert: "insert into storage.objects (bucket_id, name) values ('documents', {umoja} || '/bylaws.pdf')",
        update: "update storage.objects set last_accessed_at = now()
                 where bucket_id = 'documents' and name = {umoja} || '/constitution.pdf'",
        delete: "delete from storage.objects
                 where bucket_id = 'documents' and name = {umoja} || '/constitution.pdf'",
        anon:     [Hidden,    Policy,    Hidden,    Hidden],
        outsider: [Hidden,    Policy,    Hidden,    Hidden],
        member:   [Rows(1),   Policy,    Hidden,    Hidden],
        // Umoja's and, as a member there, Boda's
        official: [Rows(2),   Rows(1),   Rows(1),   Rows(1)],
        service:  [All,       Rows(1),   Rows(1),   Rows(1)],
    },
    Rules {
        table: "storage.objects (recordings: private, <chama id>/...)",
        select: "select from storage.objects where bucket_id = 'recordings'",
        insert: "insert into storage.objects (bucket_id, name)
                 values ('recordings', {umoja} || '/2024-07-meeting.mp3')",
        update: "update storage.objects set last_accessed_at = now()
                 where bucket_id = 'recordings' and name = {umoja} || '/2024-06-meeting.mp3'",
        delete: "delete from storage.objects
                 where bucket_id = 'recordings' and name = {umoja} || '/2024-06-meeting.mp3'",
        anon:     [Hidden,    Policy,    Hidden,    Hidden],
        outsider: [Hidden,    Policy,    Hidden,    Hidden],
        member:   [Rows(1),   Policy,    Hidden,    Hidden],
        official: [Rows(1),   Rows(1),   Rows(1),   Rows(1)],
        service:  [All,       Rows(1),   Rows(1),   Rows(1)],
    },
];

#[tokio::test]
async fn the_policy_matrix_holds_for_every_table_actor_and_command() {
    let db = fixture().await;
    let mut cases = Vec::new();
    for rules in MATRIX {
        let statements = [rules.select, rules.insert, rules.update, rules.delete];
        for (actor, expected) in [
            (Actor::Anon, rules.anon),
            (Actor::Outsider, rules.outsider),
            (Actor::Member, rules.member),
            (Actor::Official, rules.official),
            (Actor::Service, rules.service),
        ] {
            for (sql, expect) in statements.into_iter().zip(expected) {
                cases.push(case(actor, rules.table, sql, expect));
            }
        }
    }
    assert_eq!(cases.len(), MATRIX.len() * 5 * 4);
    check(&db.pool, &cases).await;
}

#[tokio::test]
async fn every_public_table_has_row_level_security_policies_and_a_row_in_the_matrix() {
    let db = TestDb::new().await;
    let tables: Vec<(String, bool, i64)> = sqlx::query_as(
        "select c.relname::text, c.relrowsecurity,
                (select count(*) from pg_policies p
                  where p.schemaname = 'public' and p.tablename = c.relname)
           from pg_class c
          where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
          order by 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for (table, rls, policies) in &tables {
        assert!(
            *rls,
            "public.{table} does not have row-level security enabled"
        );
        assert!(*policies > 0, "public.{table} has no policy");
    }

    // A new table must say, here, who may do what with it.
    let in_database: BTreeSet<String> = tables
        .iter()
        .map(|(table, _, _)| format!("public.{table}"))
        .collect();
    let in_matrix: BTreeSet<String> = MATRIX
        .iter()
        .map(|rules| rules.table.to_owned())
        .filter(|table| table.starts_with("public."))
        .collect();
    assert_eq!(in_database, in_matrix);

    // Views bypass RLS unless they run with the caller's rights.
    let unsafe_views: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c
          where c.relnamespace = 'public'::regnamespace and c.relkind in ('v', 'm')
            and not coalesce('security_invoker=true' = any (c.reloptions), false)",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        unsafe_views.is_empty(),
        "views that bypass RLS: {unsafe_views:?}"
    );

    let storage_rls: bool = sqlx::query_scalar(
        "select relrowsecurity from pg_class where oid = 'storage.objects'::regclass",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(storage_rls);
}

#[tokio::test]
async fn members_see_their_own_chama_and_their_own_money_and_officials_see_the_chamas() {
    let db = fixture().await;
    use Actor::*;
    #[rustfmt::skip]
    let cases = [
        case(Member, "a member sees their chama's roll", "select from public.chama_members where chama_id = {umoja}", Rows(5)),
        case(Member, "but not another chama's", "select from public.chama_members where chama_id = {boda}", Hidden),
        case(Member, "nor another chama", "select from public.chamas where id = {boda}", Hidden),
        case(Member, "nor the profile of someone in another chama only", "select from public.users where id = {invitee}", Hidden),
        case(Member, "a member sees their own transactions", "select from public.transactions where user_id = {member}", Rows(3)),
        case(Member, "but not another member's", "select from public.transactions where chama_id = {umoja} and user_id = {chair}", Hidden),
        case(Member, "nor another member's payment requests", "select from public.payment_requests where user_id = {chair}", Hidden),
        case(Official, "an official sees every member's transactions", "select from public.transactions where chama_id = {umoja} and user_id = {chair}", Rows(4)),
        case(Official, "and their payment requests", "select from public.payment_requests where user_id = {chair}", Rows(1)),
        case(Official, "an official of one chama is a plain member of another", "select from public.transactions where chama_id = {boda}", Rows(4)),
        case(Official, "so cannot edit it", "update public.chamas set description = 'Changed' where id = {boda}", Hidden),
        case(Official, "nor schedule its meetings", "insert into public.meetings (chama_id, title, scheduled_for, created_by) values ({boda}, 'Coup', now(), auth.uid())", Policy),
        case(Official, "nor invite into it", "select public.invite_member({boda}, '+254700000002', 'member')", Guard("only officials invite")),
        case(Official, "nor read its audit trail", "select from public.audit_logs where chama_id = {boda}", Hidden),
        case(Official, "nor upload its documents", "insert into storage.objects (bucket_id, name) values ('documents', {boda} || '/forged.pdf')", Policy),
        case(Official, "nor change them", "update storage.objects set last_accessed_at = now() where bucket_id = 'documents' and name = {boda} || '/minutes.pdf'", Hidden),
        case(Official, "a chama file must live under a chama's folder", "insert into storage.objects (bucket_id, name) values ('documents', 'loose.pdf')", Policy),
        case(Member, "a member reads their chama's documents only", "select from storage.objects where bucket_id = 'documents' and name like {boda} || '/%'", Hidden),
        case(Outsider, "anyone signed in keeps an avatar in their own folder", "insert into storage.objects (bucket_id, name) values ('avatars', {outsider} || '/me.png')", Rows(1)),
        case(Anon, "avatars are public", "select from storage.objects where bucket_id = 'avatars'", Rows(1)),
        case(Anon, "buckets are under RLS with no policy, as on Supabase", "select from storage.buckets", Hidden),
        case(Official, "and so for anyone signed in", "select from storage.buckets", Hidden),
        case(Chair, "a chairperson who is a plain member elsewhere sees only their own money there", "select from public.transactions where chama_id = {eldoret}", Rows(4)),
        case(Admin, "a platform admin (app_metadata, written by the server) sees every profile", "select from public.users", All),
        case(Admin, "and every chama", "select from public.chamas", All),
        case(Admin, "and the whole audit trail", "select from public.audit_logs", All),
        case(Admin, "but still cannot write money", "update public.chamas set balance = 0", NoGrant),
        case(SelfStyledAdmin, "user_metadata is the user's own: it grants nothing", "select from public.users", Rows(1)),
        case(SelfStyledAdmin, "nothing at all", "select from public.chamas", Hidden),
    ];
    check(&db.pool, &cases).await;
}

#[tokio::test]
async fn column_grants_keep_ledger_maintained_and_system_columns_out_of_reach() {
    let db = fixture().await;
    use Actor::*;
    #[rustfmt::skip]
    let cases = [
        case(Member, "a member cannot write the chama's balance", "update public.chamas set balance = 0 where id = {umoja}", NoGrant),
        case(Official, "nor can an official", "update public.chamas set balance = balance + 1000000 where id = {umoja}", NoGrant),
        case(Official, "an official edits the chama's settings", "update public.chamas set contribution_amount = 150000 where id = {umoja}", Rows(1)),
        case(Official, "but not its status, paybill account or join code", "update public.chamas set status = 'closed', closed_at = now() where id = {umoja}", NoGrant),
        case(Official, "", "update public.chamas set paybill_account = 'MINE01' where id = {umoja}", NoGrant),
        case(Official, "", "update public.chamas set join_code = 'OPENDOOR' where id = {umoja}", NoGrant),
        case(Outsider, "a new chama cannot start with money in it", "insert into public.chamas (name, contribution_amount, created_by, balance) values ('Rich', 100, auth.uid(), 1000000)", NoGrant),
        case(Outsider, "and is created in one's own name only", "insert into public.chamas (name, contribution_amount, created_by) values ('Framed', 100, {member})", Policy),
        case(Member, "a member cannot write their contributed total", "update public.chama_members set contributed_total = 99999999 where chama_id = {umoja} and user_id = {member}", NoGrant),
        case(Official, "nor can an official", "update public.chama_members set contributed_total = 0 where chama_id = {umoja}", NoGrant),
        case(Official, "nor move a membership to another chama or user", "update public.chama_members set chama_id = {boda} where user_id = {member}", NoGrant),
        case(Outsider, "a join request cannot bring money with it", "insert into public.chama_members (chama_id, user_id, status, contributed_total) values ({umoja}, {outsider}, 'pending', 5000000)", NoGrant),
        case(Member, "a member edits their profile", "update public.users set id_number = 'A1234567', language = 'sw' where id = {member}", Rows(1)),
        case(Member, "but not its email (that belongs to auth)", "update public.users set email = 'someone@example.co.ke' where id = {member}", NoGrant),
        case(Member, "nor its soft-delete mark", "update public.users set deleted_at = now() where id = {member}", NoGrant),
        case(Member, "a notification can only be marked read", "update public.notifications set title = 'Changed' where user_id = {member}", NoGrant),
        case(Member, "a request cannot arrive approved", "insert into public.disbursement_requests (chama_id, requested_by, recipient_phone, amount, reason, required_approvals, approvals_count) values ({umoja}, {member}, '+254720345007', 50000, 'Pre-approved', 2, 2)", NoGrant),
        case(Member, "nor be paid out by hand", "update public.disbursement_requests set status = 'completed' where id = {request}", NoGrant),
        case(Member, "a request is filed through request_disbursement only", "insert into public.disbursement_requests (chama_id, requested_by, recipient_phone, amount, reason, required_approvals) values ({umoja}, {member}, '+254720345007', 50000, 'Hospital bill', 2)", NoGrant),
        case(Member, "a request is filed in one's own chama only", "select public.request_disbursement({boda}, 50000, 'Not my chama', null, 'policy-key', 'h')", Fails("PX404")),
        case(Member, "a profile's phone is the verified phone of the sign-in", "update public.users set phone = '+254799000111' where id = {member}", NoGrant),
        case(Newcomer, "a new profile brings neither phone nor email", "insert into public.users (id, phone, first_name) values ({newcomer}, '+254799000111', 'Neema')", NoGrant),
        case(Official, "only the chairperson changes the approval threshold", "update public.chamas set required_approvals = 3 where id = {umoja}", Guard("only the chairperson changes required_approvals")),
        case(Chair, "and does not lower it while the chama holds money", "update public.chamas set required_approvals = 1 where id = {umoja}", Fails("P0001")),
        case(Chair, "raising it is the chairperson's to do", "update public.chamas set required_approvals = 3 where id = {umoja}", Rows(1)),
        case(Newcomer, "a new user creates their own profile", "insert into public.users (id, first_name) values ({newcomer}, 'Neema')", Rows(1)),
        case(Outsider, "request roles cannot create tables in public", "create table public.sneaky (id int)", NoGrant),
        case(Anon, "", "create table public.sneaky (id int)", NoGrant),
    ];
    check(&db.pool, &cases).await;
}

#[tokio::test]
async fn memberships_change_only_through_their_rpcs() {
    let db = fixture().await;
    use Actor::*;
    // Every statement the guard used to judge is now refused outright: the rpcs do these
    // writes, with their checks, counts and notifications.
    #[rustfmt::skip]
    let direct = [
        (Member, "a member cannot promote themselves to chairperson", "update public.chama_members set role = 'chairperson' where chama_id = {umoja} and user_id = {member}"),
        (Chair, "the chairperson names roles through change_member_role", "update public.chama_members set role = 'secretary' where chama_id = {umoja} and user_id = {member}"),
        (Member, "a member leaves through leave_chama", "update public.chama_members set status = 'left' where chama_id = {umoja} and user_id = {member}"),
        (Official, "an official suspends through set_member_suspended", "update public.chama_members set status = 'suspended' where chama_id = {umoja} and user_id = {member}"),
        (Official, "never the chairperson", "update public.chama_members set status = 'suspended' where chama_id = {umoja} and user_id = {chair}"),
        (Official, "nor another official", "update public.chama_members set status = 'suspended' where chama_id = {umoja} and user_id = {secretary}"),
        (Official, "nor themselves", "update public.chama_members set status = 'suspended' where chama_id = {umoja} and user_id = {official}"),
        (Outsider, "a join request needs the join code (join_chama)", "insert into public.chama_members (chama_id, user_id, status) values ({umoja}, {outsider}, 'pending')"),
        (Official, "an official does not add members", "insert into public.chama_members (chama_id, user_id, status, invited_by) values ({umoja}, {invitee}, 'invited', auth.uid())"),
    ];
    let mut cases: Vec<Case> = direct
        .into_iter()
        .map(|(actor, what, sql)| case(actor, what, sql, NoGrant))
        .collect();
    #[rustfmt::skip]
    cases.extend([
        case(Member, "the rpcs keep the rules: only the chairperson names roles", "select public.change_member_role({umoja}, {member}, 'treasurer')", Guard("only the chairperson changes roles")),
        case(Chair, "who does", "select public.change_member_role({umoja}, {member}, 'treasurer')", Rows(1)),
        case(Official, "an official suspends a member", "select public.set_member_suspended({umoja}, {member}, true, 'Missed six meetings')", Rows(1)),
        case(Official, "but not the chairperson", "select public.set_member_suspended({umoja}, {chair}, true, 'A coup')", Fails("P0001")),
        case(Official, "nor themselves", "select public.set_member_suspended({umoja}, {official}, true, 'Holiday')", Fails("P0001")),
        case(Outsider, "a wrong join code finds nothing", "select public.join_chama('GUESSED1')", Fails("PX404")),
        case(Outsider, "the right one asks to join", "select public.join_chama('UMOJA2024')", Rows(1)),
    ]);
    check(&db.pool, &cases).await;
}

#[tokio::test]
async fn only_the_invitee_accepts_an_invitation() {
    let db = fixture().await;
    // Barasa invited to Umoja by its treasurer; the outsider asked to join it.
    add(
        &db.pool,
        "insert into public.chama_members (chama_id, user_id, status, invited_by)
           values ({umoja}, {invitee}, 'invited', {official});
         insert into public.chama_members (chama_id, user_id, status)
           values ({umoja}, {outsider}, 'pending');",
    )
    .await;
    use Actor::*;
    #[rustfmt::skip]
    let cases = [
        case(Invitee, "the invitee sees the invitation", "select from public.chama_members where user_id = {invitee}", Rows(2)),
        case(Invitee, "but not the chama before accepting", "select from public.chamas where id = {umoja}", Hidden),
        case(Member, "an invitation reveals nothing of the invitee", "select from public.users where id = {invitee}", Hidden),
        case(Member, "a join request shows the one who asked", "select from public.users where id = {outsider}", Rows(1)),
        case(Invitee, "nobody answers by writing the row, not the invitee", "update public.chama_members set status = 'active' where chama_id = {umoja} and user_id = {invitee}", NoGrant),
        case(Official, "nor an official", "update public.chama_members set status = 'active' where chama_id = {umoja} and user_id = {invitee}", NoGrant),
        case(Official, "an official admits a join request through admit_member", "select public.admit_member({umoja}, {outsider}, true)", Rows(1)),
        case(Member, "a plain member does not", "select public.admit_member({umoja}, {outsider}, true)", Guard("only officials admit members")),
        case(Outsider, "the invited phone answers its invitation through respond_to_invitation", "select public.respond_to_invitation(id, true) from public.chama_invitations where phone = '+254711000999'", Rows(1)),
        case(Outsider, "not by writing the invitation", "update public.chama_invitations set status = 'accepted', responded_at = now(), user_id = auth.uid() where phone = '+254711000999'", NoGrant),
        case(Official, "nor does an official answer it on someone's behalf", "update public.chama_invitations set status = 'accepted', user_id = {member} where phone = '+254711000999'", NoGrant),
        case(Member, "nor answer an invitation for another phone", "select public.respond_to_invitation(id, true) from public.chama_invitations where phone = '+254711000999'", Hidden),
    ];
    check(&db.pool, &cases).await;

    // A withdrawn invitation stays withdrawn: the invitee can no longer answer it.
    add(
        &db.pool,
        "update public.chama_invitations set status = 'revoked' where phone = '+254711000999'",
    )
    .await;
    #[rustfmt::skip]
    let cases = [
        case(Outsider, "a revoked invitation cannot be accepted", "select public.respond_to_invitation(id, true) from public.chama_invitations where phone = '+254711000999'", Fails("P0001")),
        case(Outsider, "but is still visible to its phone", "select from public.chama_invitations where phone = '+254711000999'", Rows(1)),
    ];
    check(&db.pool, &cases).await;
}

/// Anyone may create a chama and so become an official of it; that must not open anyone else's
/// profile or membership to them.
#[tokio::test]
async fn creating_a_chama_gives_no_power_over_strangers() {
    let db = fixture().await;
    let (role, claims) = Actor::Outsider.token();
    let mut tx = begin_as(&db.pool, role, &claims).await.unwrap();
    let profile = expand("select count(*) from public.users where id = {member}");
    let visible: i64 = sqlx::query_scalar(&profile)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible, 0);

    let chama: uuid::Uuid = sqlx::query_scalar(
        "insert into public.chamas (name, contribution_amount, created_by)
         values ('Curious Group', 10000, auth.uid()) returning id",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let forced = sqlx::query(
        "insert into public.chama_members (chama_id, user_id, role, status) values ($1, $2::uuid, 'member', 'active')",
    )
    .bind(chama)
    .bind(id("member"))
    .execute(&mut *tx)
    .await;
    let forced = outcome(forced);
    assert!(
        agrees(NoGrant, &forced, None),
        "made a stranger a member: {forced}"
    );
    tx.rollback().await.unwrap();

    // Inviting them by user id is not a thing any more; by phone, the invitation shows nothing.
    let mut tx = begin_as(&db.pool, role, &claims).await.unwrap();
    let chama: uuid::Uuid = sqlx::query_scalar(
        "insert into public.chamas (name, contribution_amount, created_by)
         values ('Curious Group', 10000, auth.uid()) returning id",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query("select public.invite_member($1, '+254720345007', 'member')")
        .bind(chama)
        .execute(&mut *tx)
        .await
        .unwrap();
    let visible: i64 = sqlx::query_scalar(&profile)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(visible, 0, "an invitation revealed the invitee's profile");
}

#[tokio::test]
async fn an_official_cannot_approve_their_own_disbursement_request() {
    let db = fixture().await;
    // Akinyi (treasurer) asks for a withdrawal to herself.
    let (role, claims) = Actor::Official.token();
    let mut tx = begin_as(&db.pool, role, &claims).await.unwrap();
    let answer: Value = sqlx::query_scalar(
        "select public.request_disbursement($1::uuid, 40000, 'Transport to Nakuru', null, 'policy-own', 'h')",
    )
    .bind(id("umoja"))
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let own = answer["request"]["id"].as_str().unwrap().to_owned();

    let approve = format!("select public.decide_disbursement('{own}', 'approve', null)");
    use Actor::*;
    #[rustfmt::skip]
    let cases = [
        case(Official, "an official cannot approve their own request", &approve, Guard("you cannot decide on your own request")),
        case(Chair, "another official can", &approve, Rows(1)),
        case(Secretary, "any other official", &approve, Rows(1)),
        case(Member, "a plain member cannot", &approve, Guard("only officials decide")),
        case(Official, "an official decides once", "select public.decide_disbursement({request}, 'reject', null)", Fails("PX409")),
        case(Secretary, "the second approval of Nafula's request", "select public.decide_disbursement({request}, 'approve', null)", Rows(1)),
        case(Secretary, "and never by writing the row", "insert into public.disbursement_approvals (request_id, chama_id, approver_id, decision) values ({request}, {umoja}, auth.uid(), 'approve')", NoGrant),
    ];
    check(&db.pool, &cases).await;
}

#[tokio::test]
async fn the_internal_schema_is_unusable_by_request_roles() {
    let db = fixture().await;
    let statements = [
        "select from internal.ledger_accounts",
        "select from internal.journals",
        "select from internal.postings",
        "select from internal.outbox",
        "select from internal.idempotency_keys",
        "select from internal.user_pins",
        "select from internal.mpesa_callbacks",
        "select from internal.audit_chain_heads",
        "update internal.user_pins set failed_attempts = 0",
        "select internal.record_contribution({umoja}, {member}, 100000, 'cash')",
        "select internal.post_journal({umoja}, 'adjustment', 'x', '[]'::jsonb)",
        "select internal.audit_log('forged', null, null, null, '{}'::jsonb)",
        "select from internal.integrity_report()",
        "select from internal.verify_audit_chain()",
    ];
    let mut cases = Vec::new();
    for actor in [
        Actor::Anon,
        Actor::Outsider,
        Actor::Member,
        Actor::Official,
        Actor::Admin,
    ] {
        for sql in statements {
            cases.push(case(actor, "internal is not for requests", sql, NoGrant));
        }
    }
    // The system paths use it.
    cases.push(case(
        Actor::Service,
        "the service role reads the ledger",
        "select from internal.ledger_accounts",
        All,
    ));
    cases.push(case(
        Actor::Service,
        "and runs the integrity report",
        "select from internal.integrity_report()",
        All,
    ));
    check(&db.pool, &cases).await;
}

#[tokio::test]
async fn nobody_can_change_the_audit_log_not_even_the_service_role_or_a_superuser() {
    let db = fixture().await;
    use Actor::*;
    let mut cases = Vec::new();
    for actor in [Anon, Outsider, Member, Official, Admin, Service] {
        cases.extend([
            case(
                actor,
                "no updates",
                "update public.audit_logs set metadata = '{}'::jsonb",
                NoGrant,
            ),
            case(
                actor,
                "no deletes",
                "delete from public.audit_logs where chama_id = {umoja}",
                NoGrant,
            ),
            case(
                actor,
                "no truncation",
                "truncate public.audit_logs",
                NoGrant,
            ),
        ]);
    }
    check(&db.pool, &cases).await;

    // The owner holds every privilege; the append-only triggers refuse it anyway.
    for sql in [
        "update public.audit_logs set metadata = '{}'::jsonb",
        "delete from public.audit_logs",
        "truncate public.audit_logs",
    ] {
        let got = run_as_superuser(&db.pool, sql).await;
        assert!(agrees(Guard("append-only"), &got, None), "{sql}: got {got}");
    }
}

/// Through the Data API, nobody deletes from `storage.objects`: the row would go and its bytes
/// stay, orphaned. storage-api's trigger refuses it unless the transaction is storage-api's own
/// (our compatibility layer has the same trigger, so plain PostgreSQL refuses it too).
#[tokio::test]
async fn direct_storage_delete() {
    let db = fixture().await;
    let sql = expand(
        "delete from storage.objects where bucket_id = 'avatars' and name = {member} || '/face.png'",
    );
    for actor in [Actor::Member, Actor::Outsider, Actor::Official] {
        let (role, claims) = actor.token();
        let mut tx = begin_as(&db.pool, role, &claims).await.unwrap();
        let got = outcome(sqlx::query(&sql).execute(&mut *tx).await);
        tx.rollback().await.unwrap();
        assert!(
            agrees(
                Guard("Direct deletion from storage tables is not allowed"),
                &got,
                None
            ),
            "{actor:?}: {got}"
        );
    }
}
