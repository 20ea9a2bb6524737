//! The PIN never reaches the logs: every log line of a USSD registration, a contribution and
//! wrong PINs, captured at TRACE level (the server's spans and events, sqlx's statements), is
//! searched for the PINs typed. A process of its own (nextest), so the global subscriber is ours.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use pesachama_testkit::TestApp;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn hop(app: &TestApp, session: &str, phone: &str, text: &str) -> String {
    app.client
        .post(app.url(&format!("/ussd/{}", pesachama_testkit::TEST_USSD_TOKEN)))
        .form(&[
            ("sessionId", session),
            ("serviceCode", "*384*21#"),
            ("phoneNumber", phone),
            ("networkCode", "63902"),
            ("text", text),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn pins_typed_on_ussd_never_appear_in_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .json()
        .with_writer(move || writer.clone())
        .init();
    let app = TestApp::spawn_with(
        pesachama_testkit::TestDb::new().await,
        TestApp::with_queued_mpesa(TestApp::config()),
    )
    .await;
    pesachama_store::seed_demo(&app.db.pool).await.unwrap();
    let phone = "+254799000444";
    for text in [
        "",
        "1",
        "1*Baraka Mwangi",
        "1*Baraka Mwangi*8642",
        "1*Baraka Mwangi*8642*8642",
    ] {
        hop(&app, "ATUid_logs_1", phone, text).await;
    }
    // Wrong PINs then the right one, on a member of a chama (Chebet), after setting hers.
    let token = app.demo_token("chebet.langat@example.co.ke").await;
    let (status, _) = app
        .call(
            reqwest::Method::PUT,
            &token,
            "/auth/pin",
            Some(serde_json::json!({ "pin": "9753" })),
        )
        .await;
    assert_eq!(status, 204);
    let mut last = String::new();
    for text in ["", "2", "2*2", "2*2*1", "2*2*1*1357", "2*2*1*1357*9753"] {
        last = hop(&app, "ATUid_logs_2", "+254115345009", text).await;
    }
    assert!(
        last.starts_with("END You will receive an M-Pesa prompt"),
        "{last}"
    );
    drop(app);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("USSD contribution queued"),
        "the capture works"
    );
    assert!(logs.contains("registered on USSD"), "the capture works");
    assert!(
        !logs.contains(pesachama_testkit::TEST_USSD_TOKEN),
        "the USSD callback token is in the logs"
    );
    for pin in ["8642", "1357", "9753"] {
        let found: Vec<&str> = logs.lines().filter(|line| has_token(line, pin)).collect();
        assert!(found.is_empty(), "PIN {pin} in the logs: {found:?}");
    }
}

/// `pin` standing alone (not inside a longer run of hex digits, as in an id or a timestamp,
/// which would make the test fail by chance).
fn has_token(line: &str, pin: &str) -> bool {
    let bytes = line.as_bytes();
    line.match_indices(pin).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + pin.len()).copied();
        ![before, after]
            .into_iter()
            .flatten()
            .any(|b| b.is_ascii_hexdigit())
    })
}

#[test]
fn a_pin_is_found_alone_and_not_inside_an_id() {
    assert!(has_token(r#"{"text":"1*8642"}"#, "8642"));
    assert!(has_token("pin=8642", "8642"));
    assert!(!has_token("id 5eed8642a000", "8642"));
}
