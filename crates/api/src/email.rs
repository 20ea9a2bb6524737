//! Email through any SMTP server (the provider Supabase projects are configured with, too).
//!
//! `SMTP_URL` names the server the way lettre reads it: `smtps://user:pass@host:465` (TLS from
//! the start), `smtp://user:pass@host:587?tls=required` (STARTTLS), or `smtp://host:25` (plain,
//! for a local relay). Outbox messages of topic `email` carry `{to, template, code}`; the text is
//! made here. A 5xx answer from the server is permanent (the message is dead); a 4xx answer or a
//! connection failure is worth another try.

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::Error as SmtpError;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailOutcome {
    Sent,
    Retry(String),
    Rejected(String),
}

#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Smtp {
    /// `url` as described above; `from` an address (`PesaChama <no-reply@example.com>`).
    pub fn new(url: &str, from: &str) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|err| format!("SMTP_URL is not a usable SMTP URL: {err}"))?
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        let from = from
            .parse()
            .map_err(|err| format!("SMTP_FROM is not an email address: {err}"))?;
        Ok(Self { transport, from })
    }

    pub async fn send(&self, payload: &Value) -> EmailOutcome {
        let Some(to) = payload["to"].as_str().filter(|to| !to.is_empty()) else {
            return EmailOutcome::Rejected("an email needs `to`".to_owned());
        };
        let to: Mailbox = match to.parse() {
            Ok(to) => to,
            Err(err) => return EmailOutcome::Rejected(format!("not an email address: {err}")),
        };
        let (subject, text) = compose(payload);
        let message = match Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text)
        {
            Ok(message) => message,
            Err(err) => return EmailOutcome::Rejected(format!("cannot build the email: {err}")),
        };
        match self.transport.send(message).await {
            Ok(_) => EmailOutcome::Sent,
            Err(err) => classify(&err),
        }
    }
}

fn classify(err: &SmtpError) -> EmailOutcome {
    if err.is_permanent() {
        EmailOutcome::Rejected(format!("the SMTP server refused the message: {err}"))
    } else {
        EmailOutcome::Retry(format!("SMTP: {err}"))
    }
}

/// The subject and text of a message, from its template and code (or its own subject and
/// message, for messages that bring them).
pub fn compose(payload: &Value) -> (String, String) {
    let code = payload["code"].as_str().unwrap_or_default();
    let (subject, intro) = match payload["template"].as_str().unwrap_or_default() {
        "recovery" => (
            "Reset your PesaChama password",
            "Someone (we hope you) asked to reset the password of your PesaChama account.",
        ),
        "signup" | "confirmation" => (
            "Confirm your PesaChama account",
            "Welcome to PesaChama. Confirm your email address with this code.",
        ),
        "email_change" => (
            "Confirm your new email address",
            "Confirm the new email address of your PesaChama account with this code.",
        ),
        "reauthentication" => (
            "Confirm it is you",
            "Someone (we hope you) asked to change the password of your PesaChama account. \
             Confirm it is you with this code.",
        ),
        "otp" | "magiclink" => (
            "Your PesaChama sign-in code",
            "Use this code to sign in to PesaChama.",
        ),
        _ => {
            let subject = payload["subject"].as_str().unwrap_or("PesaChama");
            let message = payload["message"].as_str().unwrap_or_default();
            return (subject.to_owned(), format!("{message}\n"));
        }
    };
    let text = format!(
        "{intro}\n\nYour code: {code}\n\nIt expires soon and can be used once. If you did not ask \
         for it, ignore this email.\n"
    );
    (subject.to_owned(), text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_carry_the_code() {
        let (subject, text) = compose(&json!({"template": "recovery", "code": "123456"}));
        assert_eq!(subject, "Reset your PesaChama password");
        assert!(text.contains("Your code: 123456"));
        let (subject, text) = compose(&json!({"subject": "Hello", "message": "Meeting at 6"}));
        assert_eq!(
            (subject.as_str(), text.as_str()),
            ("Hello", "Meeting at 6\n")
        );
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(
            Smtp::new("http://nope", "a@b.c")
                .unwrap_err()
                .contains("SMTP_URL")
        );
        assert!(
            Smtp::new("smtp://localhost:25", "not an address")
                .unwrap_err()
                .contains("SMTP_FROM")
        );
    }
}
