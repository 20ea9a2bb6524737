//! The operational surface over real HTTP on a real database: health, readiness, metrics, the
//! OpenAPI document, and the error format of requests no route accepts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pesachama_api::ServerConfig;
use pesachama_testkit::{TestApp, TestDb};
use serde_json::Value;

#[tokio::test]
async fn health_answers_without_touching_the_database() {
    let app = TestApp::spawn().await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn ready_once_every_migration_is_applied() {
    let app = TestApp::spawn().await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["migrations_applied"].as_u64().unwrap() as usize,
        pesachama_store::migrations::EMBEDDED.len()
    );
}

#[tokio::test]
async fn not_ready_on_a_database_without_the_schema() {
    let app = TestApp::spawn_with(TestDb::empty().await, TestApp::config()).await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pesachama db migrate")
    );
}

#[tokio::test]
async fn unknown_routes_answer_the_error_format() {
    let app = TestApp::spawn().await;
    let response = app.get("/no/such/route").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"].is_string());
    assert!(body["error"].as_object().unwrap().contains_key("details"));
}

#[tokio::test]
async fn a_wrong_method_is_405_in_the_error_format() {
    let app = TestApp::spawn().await;
    let response = app.client.delete(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_before_they_are_read() {
    let config = ServerConfig {
        body_limit: 1024,
        ..TestApp::config()
    };
    let app = TestApp::spawn_with(TestDb::new().await, config).await;
    let response = app
        .client
        .post(app.url("/health"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert_eq!(body["error"]["details"]["limit_bytes"], 1024);
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_keeps_the_callers() {
    let app = TestApp::spawn().await;
    let made = app.get("/health").await;
    let id = made.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a uuid: {id}");

    let given = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.get("/health").await;
    }
    app.get("/missing").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/health",status="200"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="<unmatched>",status="404"} 1"#)
    );
    assert!(
        text.contains(r#"http_request_duration_seconds_count{method="GET",route="/health"} 3"#)
    );
    assert!(text.contains("db_pool_connections{state=\"idle\"}"));
}

#[tokio::test]
async fn the_openapi_document_lists_the_routes_and_the_error_body() {
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/health"]["get"].is_object());
    assert!(doc["paths"]["/ready"]["get"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

/// Storage has a router of its own, so its part of the document is listed by hand: every
/// documented storage operation must be one the server routes, and every route documented.
#[tokio::test]
async fn the_openapi_document_lists_every_storage_route_and_each_is_served() {
    let app = TestApp::spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if let Some(path) = path.strip_prefix("/storage/v1") {
            for method in item.as_object().unwrap().keys() {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();
    assert_eq!(
        documented,
        [
            "DELETE /object/{bucket}",
            "DELETE /object/{bucket}/{path}",
            "GET /bucket",
            "GET /bucket/{id}",
            "GET /object/authenticated/{bucket}/{path}",
            "GET /object/public/{bucket}/{path}",
            "GET /object/sign/{bucket}/{path}",
            "GET /object/{bucket}/{path}",
            "POST /object/copy",
            "POST /object/list/{bucket}",
            "POST /object/move",
            "POST /object/sign/{bucket}",
            "POST /object/sign/{bucket}/{path}",
            "POST /object/upload/sign/{bucket}/{path}",
            "POST /object/{bucket}/{path}",
            "PUT /object/upload/sign/{bucket}/{path}",
            "PUT /object/{bucket}/{path}",
        ]
    );
    assert!(doc["components"]["schemas"]["StorageErrorBody"].is_object());
    let client = reqwest::Client::new();
    // The control: what an unrouted storage path and method answer.
    let unrouted: Value = app.get("/storage/v1/nowhere").await.json().await.unwrap();
    assert_eq!(unrouted["message"], "no such storage route");
    let wrong_method = client
        .patch(app.url("/storage/v1/object/move"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    for operation in &documented {
        let (method, path) = operation.split_once(' ').unwrap();
        let path = path
            .replace("{bucket}", "avatars")
            .replace("{id}", "avatars")
            .replace("{path}", "someone/avatar.png");
        let response = client
            .request(
                method.parse().unwrap(),
                app.url(&format!("/storage/v1{path}")),
            )
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{operation} is documented but not routed");
        assert_ne!(
            body["message"], "no such storage route",
            "{operation} is documented but not routed"
        );
    }
}
