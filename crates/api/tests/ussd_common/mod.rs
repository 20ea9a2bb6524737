//! A stand-in for Africa's Talking's USSD gateway: the exact form encoding, a session's `text`
//! growing by `*`-joined inputs, answers checked to be 200 `text/plain` `CON`/`END`.

#![allow(dead_code, clippy::unwrap_used)]

use pesachama_testkit::{TEST_USSD_TOKEN, TestApp};
use uuid::Uuid;

/// `application/x-www-form-urlencoded` as the gateway writes it (`*` as `%2A`, `+` as `%2B`).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub fn form(session: &str, phone: &str, text: &str) -> String {
    format!(
        "sessionId={}&serviceCode={}&phoneNumber={}&networkCode=63902&text={}",
        encode(session),
        encode("*384*21#"),
        encode(phone),
        encode(text)
    )
}

/// Posts a raw body to the test app's USSD callback (`/ussd/{TEST_USSD_TOKEN}`, from
/// loopback, which the test configuration allows) and checks the answer is a 200
/// `text/plain` beginning CON or END.
pub async fn post(
    base: &str,
    client: &reqwest::Client,
    content_type: &str,
    body: String,
) -> String {
    let response = client
        .post(format!("{base}/ussd/{TEST_USSD_TOKEN}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("text/plain"), "{kind}");
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("CON ") || text.starts_with("END "),
        "{text:?}"
    );
    text
}

pub struct Gateway {
    base: String,
    client: reqwest::Client,
}

impl Gateway {
    pub fn of(app: &TestApp) -> Self {
        Self {
            base: app.url(""),
            client: app.client.clone(),
        }
    }

    pub async fn hop(&self, session: &str, phone: &str, text: &str) -> String {
        post(
            &self.base,
            &self.client,
            "application/x-www-form-urlencoded",
            form(session, phone, text),
        )
        .await
    }

    /// A whole session: each input appended to `text` as the gateway does; the answers.
    pub async fn dial(&self, phone: &str, inputs: &[&str]) -> Vec<String> {
        let session = format!("ATUid_{}", Uuid::new_v4().simple());
        let mut answers = vec![self.hop(&session, phone, "").await];
        let mut text = String::new();
        for (i, input) in inputs.iter().enumerate() {
            if i > 0 {
                text.push('*');
            }
            text.push_str(input);
            answers.push(self.hop(&session, phone, &text).await);
        }
        answers
    }
}
