//! The Daraja client against the local simulator over real HTTP: what Daraja would accept is
//! accepted, what it would refuse is refused, and the callbacks arrive in Daraja's shapes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use pesachama_domain::Phone;
use pesachama_mpesa::callback::{parse_b2c_result, parse_stk};
use pesachama_mpesa::client::{B2cPayment, StkPush, StkQueryOutcome};
use pesachama_mpesa::simulator::{RunningSimulator, Scenario, Simulator, SimulatorConfig};
use pesachama_mpesa::{DarajaClient, DarajaError};
use serde_json::{Value, json};

/// A receiver of callbacks on a port of its own: every body posted to it, in order.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let router = axum::Router::new().route(
        "/{*rest}",
        post(move |Json(body): Json<Value>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                Json(json!({"ResultCode": 0, "ResultDesc": "Accepted"}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}"), seen)
}

async fn simulator() -> RunningSimulator {
    let config = SimulatorConfig {
        delay: Duration::from_millis(20),
        ..SimulatorConfig::default()
    };
    Simulator::new(config).unwrap().start().await.unwrap()
}

async fn wait_for(seen: &Arc<Mutex<Vec<Value>>>, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        if seen.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen.lock().unwrap().clone()
}

fn push<'a>(phone: &'a Phone, url: &'a str, amount: i64) -> StkPush<'a> {
    StkPush {
        amount,
        phone,
        callback_url: url,
        account_reference: "UMOJA-WOMEN-GROUP",
        description: "Monthly contribution",
    }
}

#[tokio::test]
async fn an_stk_push_is_accepted_and_its_callback_parses() {
    let sim = simulator().await;
    let (url, seen) = receiver().await;
    let client = DarajaClient::new(sim.client_config()).unwrap();
    let phone = Phone::parse("0712345001").unwrap();
    let stk_url = format!("{url}/stk");
    // AccountReference and TransactionDesc are longer than Daraja allows: the client clips them.
    let accepted = client.stk_push(&push(&phone, &stk_url, 500)).await.unwrap();
    let callbacks = wait_for(&seen, 1).await;
    let parsed = parse_stk(&callbacks[0]).unwrap();
    assert_eq!(parsed.checkout_request_id, accepted.checkout_request_id);
    let paid = parsed.paid.unwrap();
    assert_eq!((paid.amount.minor(), paid.phone), (50_000, phone));
    assert_eq!(
        client
            .stk_query(&accepted.checkout_request_id)
            .await
            .unwrap(),
        StkQueryOutcome::Final {
            result_code: 0,
            result_desc: "The service request is processed successfully.".into()
        }
    );
}

#[tokio::test]
async fn one_token_serves_many_concurrent_calls() {
    let sim = simulator().await;
    let client = Arc::new(DarajaClient::new(sim.client_config()).unwrap());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.access_token().await.unwrap() })
        })
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.unwrap());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1);
    assert_eq!(Simulator::count(&sim.simulator.counters().tokens_issued), 1);
}

#[tokio::test]
async fn a_wrong_passkey_or_credentials_are_refused_and_not_retried() {
    let sim = simulator().await;
    let mut config = sim.client_config();
    config.passkey = "not-the-passkey".into();
    let client = DarajaClient::new(config).unwrap();
    let phone = Phone::parse("0712345001").unwrap();
    let err = client
        .stk_push(&push(&phone, "http://127.0.0.1:9/x", 10))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DarajaError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(Simulator::count(&sim.simulator.counters().stk_pushes), 0);

    let mut config = sim.client_config();
    config.consumer_secret = "wrong".into();
    let err = DarajaClient::new(config)
        .unwrap()
        .access_token()
        .await
        .unwrap_err();
    assert!(matches!(err, DarajaError::Rejected { .. }), "{err:?}");
}

#[tokio::test]
async fn outages_are_retried_with_backoff_then_reported() {
    let sim = simulator().await;
    let client = DarajaClient::new(sim.client_config()).unwrap();
    client.access_token().await.unwrap();
    let phone = Phone::parse("0712345001").unwrap();
    sim.simulator.fail_next(2);
    client
        .stk_push(&push(&phone, "http://127.0.0.1:9/x", 10))
        .await
        .unwrap();
    sim.simulator.fail_next(10);
    let err = client
        .stk_push(&push(&phone, "http://127.0.0.1:9/x", 10))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(Simulator::count(&sim.simulator.counters().stk_pushes), 1);
}

#[tokio::test]
async fn a_payment_whose_answer_is_lost_is_never_sent_twice() {
    let sim = simulator().await;
    let client = DarajaClient::new(sim.client_config()).unwrap();
    let phone = Phone::parse("0712345002").unwrap();
    // Daraja prompts the phone, but its answer is a 500: the push may have gone out.
    sim.simulator.lose_next_answers(1);
    let err = client
        .stk_push(&push(&phone, "http://127.0.0.1:9/x", 10))
        .await
        .unwrap_err();
    assert!(matches!(err, DarajaError::Uncertain(_)), "{err:?}");
    assert!(
        !err.is_transient(),
        "an uncertain payment is not retried later either"
    );
    assert_eq!(
        Simulator::count(&sim.simulator.counters().stk_pushes),
        1,
        "one prompt, not a retry"
    );
    // The next push goes through as usual.
    client
        .stk_push(&push(&phone, "http://127.0.0.1:9/x", 10))
        .await
        .unwrap();
    assert_eq!(Simulator::count(&sim.simulator.counters().stk_pushes), 2);
}

#[tokio::test]
async fn failures_duplicates_and_lost_callbacks_come_as_chosen() {
    let sim = simulator().await;
    let (url, seen) = receiver().await;
    let url = format!("{url}/stk");
    let client = DarajaClient::new(sim.client_config()).unwrap();
    let cancelled = Phone::parse("0722000001").unwrap();
    sim.simulator
        .set_phone(cancelled.msisdn(), Scenario::Fail(1032));
    let accepted = client.stk_push(&push(&cancelled, &url, 10)).await.unwrap();
    let parsed = parse_stk(&wait_for(&seen, 1).await[0]).unwrap();
    assert_eq!((parsed.result_code, parsed.paid), (1032, None));
    assert!(matches!(
        client
            .stk_query(&accepted.checkout_request_id)
            .await
            .unwrap(),
        StkQueryOutcome::Final {
            result_code: 1032,
            ..
        }
    ));

    let phone = Phone::parse("0722000002").unwrap();
    client.stk_push(&push(&phone, &url, 2222)).await.unwrap(); // built in: three copies
    assert_eq!(wait_for(&seen, 4).await.len(), 4);

    let lost = client.stk_push(&push(&phone, &url, 4040)).await.unwrap(); // built in: lost
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(seen.lock().unwrap().len(), 4, "no callback for a lost one");
    assert!(matches!(
        client.stk_query(&lost.checkout_request_id).await.unwrap(),
        StkQueryOutcome::Final { result_code: 0, .. }
    ));
}

#[tokio::test]
async fn b2c_needs_a_credential_made_with_the_certificate() {
    let sim = simulator().await;
    let (url, seen) = receiver().await;
    let client = DarajaClient::new(sim.client_config()).unwrap();
    let phone = Phone::parse("0712345001").unwrap();
    let result_url = format!("{url}/result");
    let payment = B2cPayment {
        amount: 250,
        phone: &phone,
        remarks: "withdrawal",
        occasion: "chama",
        result_url: &result_url,
        timeout_url: &result_url,
    };
    let accepted = client.b2c_payment(&payment, "pesachama-1").await.unwrap();
    let result = parse_b2c_result(&wait_for(&seen, 1).await[0]).unwrap();
    assert_eq!(result.conversation_id, accepted.conversation_id);
    assert_eq!(result.originator_conversation_id, "pesachama-1");
    assert_eq!(
        (result.result_code, result.amount.map(|a| a.minor())),
        (0, Some(25_000))
    );

    let other = pesachama_mpesa::credential::local::LocalCertificate::generate().unwrap();
    let mut config = sim.client_config();
    config.security_credential =
        pesachama_mpesa::credential::security_credential("Safaricom999!*!", &other.certificate_pem)
            .unwrap();
    let err = DarajaClient::new(config)
        .unwrap()
        .b2c_payment(&payment, "pesachama-2")
        .await
        .unwrap_err();
    assert!(
        matches!(err, DarajaError::Rejected { status: 400, .. }),
        "{err:?}"
    );
}
