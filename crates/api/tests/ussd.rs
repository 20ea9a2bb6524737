//! `POST /ussd/{token}` as Africa's Talking calls it: the exact form encoding, a session's `text`
//! growing by `*`-joined inputs, answers `CON`/`END` in `text/plain`. Against the demo data on
//! a fresh database; every test that moves money checks the ledger afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ussd_common;

use pesachama_testkit::{TestApp, TestDb};
use reqwest::Method;
use serde_json::{Value, json};
use ussd_common::{Gateway, form, post};
use uuid::Uuid;

const UMOJA: &str = "c4a3a000-0000-4000-8000-000000000001";
const NAFULAS_REQUEST: &str = "d15b0000-0000-4000-8000-000000000001";
// Umoja: Wanjiku chairs (also a member of Eldoret), Akinyi is treasurer (Kiswahili), Chebet a member.
const WANJIKU: (&str, &str) = ("wanjiku.kamau@example.co.ke", "+254712345001");
const AKINYI: (&str, &str) = ("akinyi.achieng@example.co.ke", "+254733345003");
const CHEBET: (&str, &str) = ("chebet.langat@example.co.ke", "+254115345009");
// Nafula: a member of Umoja only, no official anywhere.
const NAFULA: &str = "+254720345007";
// Menus list chamas by name: Wanjiku and Chebet see 1. Eldoret Merry-Go-Round, 2. Umoja;
// Akinyi sees 1. Kisumu Boda Boda Sacco, 2. Umoja.

/// The demo data, with M-Pesa configured (contributions queue STK pushes; nothing sends them).
async fn demo() -> TestApp {
    let app = TestApp::spawn_with(
        TestDb::new().await,
        TestApp::with_queued_mpesa(TestApp::config()),
    )
    .await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    app
}

async fn set_pin(app: &TestApp, who: (&str, &str), pin: &str) {
    let token = app.demo_token(who.0).await;
    let (status, body) = app
        .call(
            Method::PUT,
            &token,
            "/auth/pin",
            Some(json!({ "pin": pin })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
}

async fn scalar<T>(db: &TestDb, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test]
async fn a_new_number_registers_with_name_and_pin_and_is_greeted_next_time() {
    let app = TestApp::spawn().await;
    let gw = Gateway::of(&app);
    let phone = "+254799000111";
    let answers = gw.dial(phone, &["1", "Juma Otieno", "2468", "2468"]).await;
    assert_eq!(
        answers[0],
        "CON Welcome to PesaChama. This number is not registered.\n1. Register (English)\n2. Jisajili (Kiswahili)"
    );
    assert_eq!(answers[1], "CON Enter your full name:\n0 Back");
    assert_eq!(answers[2], "CON Choose a 4-digit PIN:\n0 Back");
    assert_eq!(answers[3], "CON Enter the same PIN again:\n0 Back");
    assert!(
        answers[4].starts_with("CON You are registered.\n1. My chamas"),
        "{}",
        answers[4]
    );

    let (first, last, language): (String, String, String) = sqlx::query_as(
        "select first_name, last_name, language from public.users where phone = '+254799000111'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (first.as_str(), last.as_str(), language.as_str()),
        ("Juma", "Otieno", "en")
    );
    assert_eq!(scalar::<i64>(&app.db, "select count(*) from internal.user_pins p join public.users u on u.id = p.user_id where u.phone = '+254799000111'").await, 1);
    // The PIN is in no session state and no held PIN is left over.
    assert_eq!(
        scalar::<i64>(
            &app.db,
            "select count(*) from public.ussd_sessions where state::text like '%2468%'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar::<i64>(&app.db, "select count(*) from internal.ussd_pending_pins").await,
        0
    );
    // The app's PIN check accepts the PIN chosen on USSD: the same rules, the same row.
    let answers = gw.dial(phone, &["7", "2468"]).await;
    assert!(
        answers[0].starts_with("CON Welcome Juma\n1. My chamas"),
        "{}",
        answers[0]
    );
    assert_eq!(answers[2], "CON Enter your new PIN:\n0 Back");
    // A member of no chama is told how to join.
    let answers = gw.dial(phone, &["2"]).await;
    assert!(
        answers[1].starts_with("CON You are not in any chama yet."),
        "{}",
        answers[1]
    );
}

#[tokio::test]
async fn registration_in_kiswahili_and_mismatched_pins_ask_again() {
    let app = TestApp::spawn().await;
    let gw = Gateway::of(&app);
    let answers = gw
        .dial(
            "0799000222",
            &["2", "Amina", "1111", "2222", "3333", "3333"],
        )
        .await;
    assert_eq!(answers[2], "CON Chagua PIN ya tarakimu 4:\n0 Rudi");
    assert_eq!(
        answers[4],
        "CON PIN hazilingani.\nChagua PIN ya tarakimu 4:\n0 Rudi"
    );
    assert!(
        answers[6].starts_with("CON Umesajiliwa.\n1. Chama zangu"),
        "{}",
        answers[6]
    );
    assert_eq!(
        scalar::<String>(
            &app.db,
            "select language from public.users where phone = '+254799000222'"
        )
        .await,
        "sw"
    );
}

#[tokio::test]
async fn a_contribution_queues_an_stk_push_and_ends_at_once() {
    let app = demo().await;
    set_pin(&app, WANJIKU, "1234").await;
    let gw = Gateway::of(&app);
    let answers = gw.dial(WANJIKU.1, &["2", "2", "1", "1234"]).await;
    assert!(
        answers[0].starts_with("CON Welcome Wanjiku\n1. My chamas\n2. Contribute"),
        "{}",
        answers[0]
    );
    assert!(
        answers[1].starts_with(
            "CON Choose a chama:\n1. Eldoret Merry-Go-.\n2. Umoja Women Group\n0 Back 00 Home"
        ),
        "{}",
        answers[1]
    );
    assert_eq!(
        answers[2],
        "CON Umoja Women Group\n1. Pay KES 1,000\n2. Other amount\n0 Back 00 Home"
    );
    assert_eq!(
        answers[3],
        "CON Pay KES 1,000 -> Umoja Women Group\nEnter PIN to confirm:\n0 Back"
    );
    assert_eq!(
        answers[4],
        "END You will receive an M-Pesa prompt for KES 1,000. Enter your M-Pesa PIN to pay."
    );

    let (id, chama, user, phone, amount, status, channel): (
        Uuid,
        Uuid,
        Uuid,
        String,
        i64,
        String,
        String,
    ) = sqlx::query_as(
        "select id, chama_id, user_id, phone, amount, status, channel from public.payment_requests",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(chama.to_string(), UMOJA);
    assert_eq!(user.to_string(), "5eed0000-0000-4000-8000-000000000001");
    assert_eq!(
        (phone.as_str(), amount, status.as_str(), channel.as_str()),
        (WANJIKU.1, 100_000, "queued", "ussd")
    );
    let (topic, payload, key, job_status): (String, Value, String, String) = sqlx::query_as(
        "select topic, payload, dedupe_key, status from internal.outbox where topic = 'mpesa.stk_push'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(topic, "mpesa.stk_push");
    assert_eq!(payload, json!({ "payment_request_id": id }));
    assert_eq!(key, format!("stk:{id}"));
    assert_eq!(job_status, "pending");
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn another_amount_is_checked_and_a_repeated_request_does_the_work_once() {
    let app = demo().await;
    set_pin(&app, CHEBET, "1234").await;
    let gw = Gateway::of(&app);
    let session = "ATUid_repeat";
    let mut last = String::new();
    for (text, want) in [
        ("", "CON Welcome Chebet"),
        (
            "2",
            "CON Choose a chama:\n1. Eldoret Merry-Go-.\n2. Umoja Women Group",
        ),
        ("2*2", "CON Umoja Women Group\n1. Pay"),
        ("2*2*2", "CON Enter amount (KES 10 - 250,000):"),
        ("2*2*2*abc", "CON Enter the amount in digits."),
        ("2*2*2*abc*5*0", "CON Enter the amount in digits."),
        ("2*2*2*abc*5*0*9", "CON The smallest amount is KES 10."),
        (
            "2*2*2*abc*5*0*9*250001",
            "CON The largest M-Pesa amount is KES 250,000.",
        ),
        (
            "2*2*2*abc*5*0*9*250001*2500",
            "CON Pay KES 2,500 -> Umoja Women Group",
        ),
        (
            "2*2*2*abc*5*0*9*250001*2500*12",
            "CON A PIN is exactly 4 digits.",
        ),
        (
            "2*2*2*abc*5*0*9*250001*2500*12*1234",
            "END You will receive an M-Pesa prompt for KES 2,500.",
        ),
    ] {
        last = gw.hop(session, CHEBET.1, text).await;
        assert!(
            last.starts_with(want),
            "{text}: {last:?} does not start with {want:?}"
        );
    }
    // The gateway repeats the last request (its own timeout): the same answer, one request.
    let again = gw
        .hop(session, CHEBET.1, "2*2*2*abc*5*0*9*250001*2500*12*1234")
        .await;
    assert_eq!(again, last);
    assert_eq!(
        scalar::<i64>(&app.db, "select count(*) from public.payment_requests").await,
        1
    );
    assert_eq!(
        scalar::<i64>(&app.db, "select amount from public.payment_requests").await,
        250_000
    );
    assert_eq!(
        scalar::<i64>(
            &app.db,
            "select count(*) from internal.outbox where topic = 'mpesa.stk_push'"
        )
        .await,
        1
    );
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn a_withdrawal_request_is_made_as_the_member() {
    let app = demo().await;
    set_pin(&app, CHEBET, "1234").await;
    let gw = Gateway::of(&app);
    let answers = gw
        .dial(CHEBET.1, &["4", "2", "2000", "ab", "School fees", "1234"])
        .await;
    assert_eq!(
        answers[2],
        "CON Withdraw from Umoja Women Group\nEnter amount (KES 10 - 250,000):\n0 Back 00 Home"
    );
    assert_eq!(
        answers[4],
        "CON The reason must be 3 to 60 letters.\nEnter the reason (3-60 letters):\n0 Back 00 Home"
    );
    assert_eq!(
        answers[5],
        "CON Request KES 2,000 (Umoja Women Group): School fees\nEnter PIN to confirm:\n0 Back"
    );
    assert_eq!(
        answers[6],
        "END Request sent. It needs 2 approvals from officials."
    );
    let (by, amount, reason, status): (Uuid, i64, String, String) = sqlx::query_as(
        "select requested_by, amount, reason, status from public.disbursement_requests where id <> $1::uuid",
    )
    .bind(NAFULAS_REQUEST)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(by.to_string(), "5eed0000-0000-4000-8000-000000000009");
    assert_eq!(
        (amount, reason.as_str(), status.as_str()),
        (200_000, "School fees", "pending")
    );
    // Written by the member's own call: the audit trail names Chebet as the actor.
    assert_eq!(
        scalar::<i64>(&app.db, "select count(*) from public.audit_logs where action = 'disbursement_requests.insert' and actor_id = '5eed0000-0000-4000-8000-000000000009'").await,
        1
    );
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn an_official_approves_a_pending_withdrawal_and_the_money_is_reserved() {
    let app = demo().await;
    set_pin(&app, WANJIKU, "1234").await;
    let before: i64 = scalar(
        &app.db,
        "select balance from public.chamas where id = 'c4a3a000-0000-4000-8000-000000000001'",
    )
    .await;
    let gw = Gateway::of(&app);
    let answers = gw.dial(WANJIKU.1, &["5", "1", "1", "1234"]).await;
    assert_eq!(
        answers[1],
        "CON Waiting for you:\n1. KES 1,500 Nafula: School fees f.\n0 Back 00 Home"
    );
    assert_eq!(
        answers[2],
        "CON Umoja Women Group: Nafula KES 1,500 - School fees for Form 2, second term. Approvals 1/2\n1. Approve\n2. Reject\n0 Back 00 Home"
    );
    assert_eq!(
        answers[3],
        "CON Decision: Approve KES 1,500 Nafula\nEnter PIN to confirm:\n0 Back"
    );
    assert_eq!(answers[4], "END Approved. The money is being sent.");
    assert_eq!(scalar::<String>(&app.db, "select status from public.disbursement_requests where id = 'd15b0000-0000-4000-8000-000000000001'").await, "approved");
    assert_eq!(
        scalar::<i64>(&app.db, "select count(*) from public.disbursement_approvals where request_id = 'd15b0000-0000-4000-8000-000000000001' and approver_id = '5eed0000-0000-4000-8000-000000000001'").await,
        1
    );
    let after: i64 = scalar(
        &app.db,
        "select balance from public.chamas where id = 'c4a3a000-0000-4000-8000-000000000001'",
    )
    .await;
    assert_eq!(before - after, 150_000);
    assert_eq!(
        scalar::<i64>(
            &app.db,
            "select count(*) from internal.outbox where topic = 'payout'"
        )
        .await,
        1
    );
    // Nothing is left for Wanjiku to decide.
    let answers = gw.dial(WANJIKU.1, &["5"]).await;
    assert_eq!(
        answers[1],
        "CON No withdrawals are waiting for you.\n0 Back 00 Home"
    );
    // A member who is no official is told so (Nafula reads Kiswahili).
    let answers = gw.dial(NAFULA, &["5"]).await;
    assert!(
        answers[1].starts_with("CON Viongozi pekee huidhinisha maombi.\n1. Chama zangu"),
        "{}",
        answers[1]
    );
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn three_wrong_pins_make_this_number_wait_on_ussd_but_leave_the_app_alone() {
    let app = demo().await;
    set_pin(&app, CHEBET, "1234").await;
    let gw = Gateway::of(&app);
    let answers = gw.dial(CHEBET.1, &["3", "2", "1111", "2222", "3333"]).await;
    assert_eq!(
        answers[2],
        "CON Statement: Umoja Women Group\nEnter PIN to confirm:\n0 Back"
    );
    assert!(
        answers[3].starts_with("CON Wrong PIN. 2 tries left.\nStatement"),
        "{}",
        answers[3]
    );
    assert!(
        answers[4].starts_with("CON Wrong PIN. 1 tries left."),
        "{}",
        answers[4]
    );
    assert_eq!(answers[5], "END Too many wrong PINs. Try again in 1 min.");
    // From the same source, even the right PIN waits (it is not even compared)...
    let answers = gw.dial(CHEBET.1, &["2", "2", "1", "1234"]).await;
    assert_eq!(answers[4], "END Too many wrong PINs. Try again in 1 min.");
    assert_eq!(
        scalar::<i64>(&app.db, "select count(*) from public.payment_requests").await,
        0
    );
    // ...but the app's PIN is not locked: USSD tries are counted apart.
    let token = app.demo_token(CHEBET.0).await;
    let (status, body) = app
        .call(
            Method::POST,
            &token,
            "/auth/pin/verify",
            Some(json!({ "pin": "1234" })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    // Once the wait is over, a right PIN works and clears the count.
    sqlx::query("update internal.ussd_pin_tries set blocked_until = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let answers = gw.dial(CHEBET.1, &["2", "2", "1", "1234"]).await;
    assert!(
        answers[4].starts_with("END You will receive an M-Pesa prompt"),
        "{}",
        answers[4]
    );
    assert_eq!(
        scalar::<i64>(&app.db, "select count(*) from internal.ussd_pin_tries").await,
        0
    );
    app.db.assert_ledger_balanced().await;
}

#[tokio::test]
async fn the_mini_statement_and_next_meeting_in_kiswahili() {
    let app = demo().await;
    set_pin(&app, AKINYI, "1234").await;
    let gw = Gateway::of(&app);
    let answers = gw.dial(AKINYI.1, &["3", "2", "1234"]).await;
    assert!(
        answers[0].starts_with("CON Karibu Akinyi\n1. Chama zangu"),
        "{}",
        answers[0]
    );
    let statement = &answers[3];
    assert!(
        statement.starts_with("CON Umoja Women Group\nAkiba yako: KES "),
        "{statement}"
    );
    assert!(statement.contains(" Mchango KES 1,000\n"), "{statement}");
    let saved: i64 = scalar(&app.db, "select contributed_total from public.chama_members where chama_id = 'c4a3a000-0000-4000-8000-000000000001' and user_id = '5eed0000-0000-4000-8000-000000000003'").await;
    assert!(
        statement.contains(&format!("Akiba yako: KES {}", group(saved / 100))),
        "{statement} vs {saved}"
    );
    let answers = gw.dial(AKINYI.1, &["6", "2", "1234"]).await;
    assert_eq!(
        answers[2],
        "CON Mkutano ujao: Umoja Women Group\nWeka PIN kuthibitisha:\n0 Rudi"
    );
    assert!(
        answers[3].starts_with("CON Mkutano ujao: Umoja Women Group\nMonthly meeting\n"),
        "{}",
        answers[3]
    );
    assert!(
        answers[3].contains("Gikomba Community Hall"),
        "{}",
        answers[3]
    );
    let answers = gw.dial(AKINYI.1, &["1", "2", "1234"]).await;
    assert!(
        answers[3].contains("Mchango: KES 1,000 kila mwezi"),
        "{}",
        answers[3]
    );
}

fn group(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::test]
async fn changing_the_language_sticks_for_the_next_session() {
    let app = demo().await;
    let gw = Gateway::of(&app);
    let answers = gw.dial(CHEBET.1, &["8", "2"]).await;
    assert!(
        answers[2].starts_with("CON Lugha sasa ni Kiswahili.\n1. Chama zangu"),
        "{}",
        answers[2]
    );
    let answers = gw.dial(CHEBET.1, &[]).await;
    assert!(
        answers[0].starts_with("CON Karibu Chebet"),
        "{}",
        answers[0]
    );
}

#[tokio::test]
async fn an_expired_session_ends_politely() {
    let app = demo().await;
    let gw = Gateway::of(&app);
    gw.hop("ATUid_old", CHEBET.1, "").await;
    sqlx::query("update public.ussd_sessions set created_at = now() - interval '200 seconds', last_activity_at = now() - interval '190 seconds', expires_at = now() - interval '20 seconds'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        gw.hop("ATUid_old", CHEBET.1, "1").await,
        "END Your session has expired. Please dial again."
    );
    assert_eq!(
        scalar::<String>(&app.db, "select status from public.ussd_sessions").await,
        "timeout"
    );
    assert_eq!(
        gw.hop("ATUid_old", CHEBET.1, "1*1").await,
        "END Your session has expired. Please dial again."
    );
}

#[tokio::test]
async fn bad_requests_get_a_screen_never_an_http_error() {
    let app = demo().await;
    let gw = Gateway::of(&app);
    let base = app.url("");
    let form_type = "application/x-www-form-urlencoded";
    // An unknown session id in the middle of its history: a fresh start, not an error.
    assert!(
        gw.hop("ATUid_unknown", CHEBET.1, "2*1*1")
            .await
            .starts_with("CON Welcome Chebet")
    );
    // Not a Kenyan number.
    assert_eq!(
        gw.hop("ATUid_abroad", "+15551234567", "").await,
        "END Sorry, PesaChama USSD is only for Kenyan mobile numbers."
    );
    // Fields missing, not a form, empty.
    let polite = "END Sorry, something went wrong. Please try again later.";
    assert_eq!(
        post(
            &base,
            &app.client,
            form_type,
            "phoneNumber=%2B254115345009&text=".into()
        )
        .await,
        polite
    );
    assert_eq!(
        post(
            &base,
            &app.client,
            "application/json",
            "{\"sessionId\":\"x\"}".into()
        )
        .await,
        polite
    );
    assert_eq!(
        post(&base, &app.client, form_type, String::new()).await,
        polite
    );
    // Overlong text, letters, stars: the screen again with a notice.
    let long = "1".repeat(5000);
    assert!(
        gw.hop("ATUid_long", CHEBET.1, "")
            .await
            .starts_with("CON Welcome")
    );
    assert!(
        gw.hop("ATUid_long", CHEBET.1, &long)
            .await
            .starts_with("CON Invalid choice.")
    );
    assert!(
        gw.hop("ATUid_long", CHEBET.1, &format!("{long}*abc"))
            .await
            .starts_with("CON Invalid choice.")
    );
    assert!(
        gw.hop("ATUid_long", CHEBET.1, &format!("{long}*abc*1*2"))
            .await
            .starts_with("CON Invalid choice.")
    );
    // An empty input (send pressed on nothing) and a letter where a digit is expected.
    assert!(
        gw.hop("ATUid_empty", CHEBET.1, "")
            .await
            .starts_with("CON Welcome")
    );
    assert!(
        gw.hop("ATUid_empty", CHEBET.1, "1")
            .await
            .starts_with("CON Choose a chama:")
    );
    assert!(
        gw.hop("ATUid_empty", CHEBET.1, "1*")
            .await
            .starts_with("CON Invalid choice.\n1. Eldoret")
    );
    assert!(
        gw.hop("ATUid_empty", CHEBET.1, "1**x")
            .await
            .starts_with("CON Invalid choice.\n1. Eldoret")
    );
    // A session id used by another number is refused.
    assert_eq!(gw.hop("ATUid_long", WANJIKU.1, "1").await, polite);
    assert_eq!(
        scalar::<i64>(&app.db, "select count(*) from public.payment_requests").await,
        0
    );
}

/// A server of our own on the test's database, stoppable, like a process that restarts.
async fn server(url: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let pool = pesachama_store::connect(url, 5).await.unwrap();
    let state = pesachama_api::AppState::new(pool, TestApp::config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pesachama_api::serve(
        listener,
        pesachama_api::app(state),
        async {
            let _ = stopped.await;
        },
    ));
    (base, stop)
}

#[tokio::test]
async fn a_session_survives_a_server_restart_between_hops() {
    let db = TestDb::new().await;
    pesachama_store::seed_demo(&db.pool).await.unwrap();
    let client = reqwest::Client::new();
    let (first, stop) = server(&db.url).await;
    let hop = |base: String, text: &'static str| {
        let client = client.clone();
        async move {
            post(
                &base,
                &client,
                "application/x-www-form-urlencoded",
                form("ATUid_restart", CHEBET.1, text),
            )
            .await
        }
    };
    assert!(
        hop(first.clone(), "")
            .await
            .starts_with("CON Welcome Chebet")
    );
    assert!(
        hop(first.clone(), "4")
            .await
            .starts_with("CON Choose a chama:")
    );
    let _ = stop.send(());
    // The first server is gone; a new one, sharing nothing but the database, carries on.
    let (second, _keep) = server(&db.url).await;
    assert_ne!(first, second);
    assert!(
        hop(second.clone(), "4*2")
            .await
            .starts_with("CON Withdraw from Umoja Women Group")
    );
    assert!(
        hop(second.clone(), "4*2*300")
            .await
            .starts_with("CON Enter the reason")
    );
    assert_eq!(
        scalar::<i32>(
            &db,
            "select hops from public.ussd_sessions where session_id = 'ATUid_restart'"
        )
        .await,
        4
    );
}

/// A member whom Supabase Auth signed up (confirmed phone, no profile: they never signed in
/// through us) is a member on their first call, greeted by name, not asked to register, and no
/// second account is made for the number.
#[tokio::test]
async fn a_user_supabase_auth_created_is_known_on_the_first_call() {
    let app = demo().await;
    sqlx::query(
        "insert into auth.users (instance_id, id, aud, role, phone, phone_confirmed_at,
             raw_app_meta_data, raw_user_meta_data, confirmation_token, recovery_token,
             email_change_token_new, email_change, created_at, updated_at)
         values ('00000000-0000-0000-0000-000000000000', gen_random_uuid(), 'authenticated',
             'authenticated', '254799000888', now(), '{\"provider\": \"phone\"}',
             '{\"first_name\": \"Zawadi\"}', '', '', '', '', now(), now())",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let screens = Gateway::of(&app).dial("+254799000888", &[]).await;
    assert!(screens[0].starts_with("CON"), "{screens:?}");
    assert!(screens[0].contains("Zawadi"), "{screens:?}");
    assert!(!screens[0].contains("not registered"), "{screens:?}");
    let accounts: i64 = scalar(
        &app.db,
        "select count(*) from auth.users where phone in ('254799000888', '+254799000888')",
    )
    .await;
    assert_eq!(accounts, 1);
}

/// Someone signs up in the app with a number that is not theirs and never confirms it; the
/// number's holder then registers on USSD. The unconfirmed account proves nothing, so the
/// registration takes it over: one account, the holder's name and PIN, the squatter's password
/// and session gone (before, the holder was refused, locked out by the squatter).
#[tokio::test]
async fn a_ussd_registration_takes_over_a_number_squatted_by_an_unconfirmed_sign_up() {
    let mut config = TestApp::config();
    config.auth.autoconfirm = false;
    let app = TestApp::spawn_with(TestDb::new().await, config).await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    let phone = "+254799000222";
    let squat = app
        .auth(Method::POST, "/signup")
        .json(&json!({ "phone": phone, "password": "squatters-password-1", "data": { "first_name": "Mallory" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(squat.status(), 200);

    let gw = Gateway::of(&app);
    let answers = gw.dial(phone, &["1", "Juma Otieno", "2468", "2468"]).await;
    assert!(
        answers[4].starts_with("CON You are registered."),
        "{answers:?}"
    );
    assert_eq!(
        scalar::<i64>(
            &app.db,
            "select count(*) from auth.users where phone = '254799000222'"
        )
        .await,
        1
    );
    let (first, pins): (String, i64) = sqlx::query_as(
        "select u.first_name, (select count(*) from internal.user_pins p where p.user_id = u.id)
           from public.users u where u.phone = '+254799000222'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((first.as_str(), pins), ("Juma", 1));
    let login = app
        .auth(Method::POST, "/token?grant_type=password")
        .json(&json!({ "phone": phone, "password": "squatters-password-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 400, "the squatter's password is gone");
    app.db.assert_gotrue_can_read().await;

    // A number whose owner confirmed it is not taken over.
    let again = gw.dial("+254712345001", &["1"]).await;
    assert!(!again[0].contains("not registered"), "{again:?}");
}
