//! `/metrics`: not for everyone, and no way to grow it without bound.

use pesachama_api::MetricsAccess;
use pesachama_testkit::{TestApp, TestDb};
use reqwest::Method;

async fn app_with(access: MetricsAccess) -> TestApp {
    let mut config = TestApp::config();
    config.metrics = access;
    TestApp::spawn_with(TestDb::new().await, config).await
}

#[tokio::test]
async fn metrics_are_not_served_without_a_token_outside_the_demo() {
    let app = app_with(MetricsAccess::Off).await;
    assert_eq!(app.get("/metrics").await.status(), 404);
}

#[tokio::test]
async fn metrics_need_the_bearer_token_when_one_is_set() {
    let app = app_with(MetricsAccess::Token("a-metrics-token-of-length".to_owned())).await;
    assert_eq!(app.get("/metrics").await.status(), 401);
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("a-metrics-token-of-lengtX")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("a-metrics-token-of-length")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().contains("http_requests_total"));
}

#[tokio::test]
async fn made_up_http_methods_share_one_label() {
    let app = app_with(MetricsAccess::Public).await;
    for i in 0..20 {
        let method = Method::from_bytes(format!("PROBE{i}").as_bytes()).unwrap();
        let _ = app.client.request(method, app.url("/health")).send().await;
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(!text.contains("PROBE"), "{text}");
    assert!(text.contains("method=\"OTHER\""), "{text}");
}
