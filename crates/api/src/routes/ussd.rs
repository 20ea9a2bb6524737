//! `POST /ussd`: Africa's Talking's USSD callback (CONTRACTS §6).
//!
//! The gateway posts a form (`sessionId`, `serviceCode`, `phoneNumber`, `networkCode`, `text`)
//! each hop and shows whatever `CON ...` (wait for input) or `END ...` (close) we answer. This
//! module only adapts: it locks the session row, loads the member's facts, lets the pure menus
//! (`pesachama-ussd`) decide, performs the action they ask for ([`actions`]), stores the new
//! state and answers. The answer is always `200 text/plain` with `CON` or `END`: an HTTP error
//! would end the member's session with the telco's own unhelpful message, so an internal
//! failure is logged with the session id and answered with a polite END in their language.
//!
//! One transaction per hop: the session row, wrong-PIN counts and whatever the member did
//! commit together, so a gateway retry (the same `text` again) gets the stored answer instead
//! of doing the work twice, and a server restarted between hops carries on from the row.

mod access;
mod actions;

pub use access::UssdGate;
pub(crate) use access::loggable_path;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use pesachama_domain::Phone;
use pesachama_store::StoreError;
use pesachama_store::ussd as store;
use pesachama_ussd::input::{self, Hop};
use pesachama_ussd::model::{ChamaFacts, Frequency, Member};
use pesachama_ussd::{Facts, Language, Reply, Screen, State as Menu, machine};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::gotrue::{AuthError, ClientIp};

/// The gateway's form. Every field is optional here so that nothing the gateway (or anyone
/// else) sends can turn into an HTTP error; missing fields get a polite END.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct UssdForm {
    #[serde(rename = "sessionId")]
    pub session_id: Option<String>,
    #[serde(rename = "serviceCode")]
    pub service_code: Option<String>,
    #[serde(rename = "phoneNumber")]
    pub phone_number: Option<String>,
    #[serde(rename = "networkCode")]
    pub network_code: Option<String>,
    /// Every input of the session so far, joined by `*`.
    pub text: Option<String>,
}

/// What `ussd_sessions.state` holds between hops: the menus' state, a fingerprint of the
/// gateway text seen last (to find the next input), and the answer sent (for a repeated
/// request). Never a PIN: the menus' state holds none, no screen shows one, and the gateway's
/// text (which does hold the PINs typed) is kept only as its length and a keyed digest.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    menu: Menu,
    seen: Seen,
    reply: String,
}

/// The gateway text of the last hop, without its content: its length, and SHA-256 over the
/// server's secret and the text (a plain hash of a text ending in a 4-digit PIN would give the
/// PIN away in 10,000 guesses; without the secret it gives nothing).
#[derive(Debug, Serialize, Deserialize)]
struct Seen {
    len: usize,
    digest: String,
}

impl Seen {
    fn of(secret: &str, text: &str) -> Self {
        Self {
            len: text.len(),
            digest: digest(secret, text),
        }
    }

    /// The input this text adds to the one seen.
    fn next(&self, secret: &str, text: &str) -> Hop {
        let previous = text
            .get(..self.len)
            .filter(|prefix| digest(secret, prefix) == self.digest);
        match previous {
            Some(previous) => input::latest(Some(previous), text),
            None => input::last(text),
        }
    }
}

fn digest(secret: &str, text: &str) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(secret.as_bytes());
    hasher.update([0]);
    hasher.update(text.as_bytes());
    hex::encode(hasher.finalize())
}

/// Why a hop failed inside; logged, never shown.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HopError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Auth(AuthError),
    #[error("stored session state is unreadable: {0}")]
    State(#[from] serde_json::Error),
}

impl From<AuthError> for HopError {
    fn from(err: AuthError) -> Self {
        Self::Auth(err)
    }
}

impl From<sqlx::Error> for HopError {
    fn from(err: sqlx::Error) -> Self {
        Self::Store(err.into())
    }
}

/// Session ids longer than this are not Africa's Talking's (theirs are `ATUid_` + 32 hex).
const MAX_SESSION_ID: usize = 100;

/// Africa's Talking's callback: `CON ...` or `END ...`, always 200 `text/plain` once admitted.
/// The URL given to the gateway is `https://<host>/ussd/<USSD_CALLBACK_TOKEN>`; requests are
/// accepted from `USSD_ALLOWED_IPS` only (see `access.rs`).
#[utoipa::path(
    post, path = "/ussd/{token}", tag = "ussd",
    params(("token" = String, Path, description = "USSD_CALLBACK_TOKEN")),
    request_body(content = UssdForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`CON <screen>` or `END <screen>`", content_type = "text/plain", body = String),
        (status = 403, description = "not from the gateway's addresses", body = crate::error::ErrorBody),
        (status = 404, description = "wrong token", body = crate::error::ErrorBody),
        (status = 503, description = "`ussd_not_configured`", body = crate::error::ErrorBody)
    )
)]
pub async fn ussd_with_token(
    State(state): State<AppState>,
    Path(token): Path<String>,
    client: ClientIp,
    form: Result<Form<UssdForm>, FormRejection>,
) -> Response {
    match access::admit(state.config.ussd.as_ref(), Some(&token), &client) {
        Ok(()) => answer(&state, &client, form).await,
        Err(refused) => refused.into_response(),
    }
}

/// The tokenless callback, served only in `--demo`; otherwise 404 (or 503 without USSD).
#[utoipa::path(
    post, path = "/ussd", tag = "ussd",
    request_body(content = UssdForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`CON <screen>` or `END <screen>` (`--demo` only)", content_type = "text/plain", body = String),
        (status = 404, description = "not served outside `--demo`", body = crate::error::ErrorBody),
        (status = 503, description = "`ussd_not_configured`", body = crate::error::ErrorBody)
    )
)]
pub async fn ussd(
    State(state): State<AppState>,
    client: ClientIp,
    form: Result<Form<UssdForm>, FormRejection>,
) -> Response {
    match access::admit(state.config.ussd.as_ref(), None, &client) {
        Ok(()) => answer(&state, &client, form).await,
        Err(refused) => refused.into_response(),
    }
}

async fn answer(
    state: &AppState,
    client: &ClientIp,
    form: Result<Form<UssdForm>, FormRejection>,
) -> Response {
    let screen = match form {
        Ok(Form(form)) => hop(state, client, form).await,
        Err(rejection) => {
            tracing::warn!(error = %rejection, "USSD request that is not a gateway form");
            machine::failure(Language::En)
        }
    };
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        screen.body(),
    )
        .into_response()
}

async fn hop(state: &AppState, client: &ClientIp, form: UssdForm) -> Screen {
    let session_id = form.session_id.as_deref().map(str::trim).unwrap_or("");
    if session_id.is_empty() || session_id.len() > MAX_SESSION_ID {
        tracing::warn!("USSD request without a usable sessionId");
        return machine::failure(Language::En);
    }
    let Ok(phone) = Phone::parse(form.phone_number.as_deref().unwrap_or("")) else {
        tracing::info!(session_id, "USSD from a number that is not Kenyan");
        return machine::not_kenyan();
    };
    let text = form.text.unwrap_or_default();
    let mut language = Language::En;
    let source = client.text().unwrap_or_else(|| "unknown".to_owned());
    match run(
        state,
        &source,
        session_id,
        &phone,
        form.service_code.as_deref(),
        &text,
        &mut language,
    )
    .await
    {
        Ok(screen) => screen,
        Err(err) => {
            tracing::error!(session_id, error = %err, "USSD hop failed");
            if let Ok(mut conn) = state.pool.acquire().await {
                let _ = store::mark_session(&mut conn, session_id, "failed").await;
            }
            machine::failure(language)
        }
    }
}

async fn run(
    state: &AppState,
    source: &str,
    session_id: &str,
    phone: &Phone,
    service_code: Option<&str>,
    text: &str,
    language: &mut Language,
) -> Result<Screen, HopError> {
    let secret = state.config.auth.jwt_secret.as_str();
    let mut tx = state.pool.begin().await?;
    let member = store::member_by_phone(&mut tx, phone.as_e164()).await?;
    if let Some(found) = &member {
        *language = Language::from_code(&found.language).unwrap_or(Language::En);
    }
    let existing = store::lock_session(&mut tx, session_id).await?;
    let (row, stored) = match existing {
        Some(row) => {
            *language = Language::from_code(&row.language).unwrap_or(*language);
            if row.phone_number != phone.as_e164() {
                tracing::warn!(session_id, "USSD session id reused by another number");
                return Ok(machine::failure(*language));
            }
            if row.status == "completed"
                && let Ok(stored) = serde_json::from_value::<Stored>(row.state.clone())
                && stored.seen.next(secret, text) == Hop::Repeat
            {
                // The gateway repeating the request that ended the session: the same answer.
                tx.commit().await?;
                return Ok(replay(&stored.reply));
            }
            if row.expired || row.status != "active" {
                if row.status == "active" {
                    store::mark_session(&mut tx, session_id, "timeout").await?;
                    tx.commit().await?;
                }
                return Ok(machine::expired(*language));
            }
            let stored: Stored = serde_json::from_value(row.state.clone())?;
            (row, Some(stored))
        }
        None => {
            let row = store::open_session(
                &mut tx,
                session_id,
                phone.as_e164(),
                service_code,
                language.code(),
            )
            .await?
            .ok_or_else(|| StoreError::NotFound {
                message: "session vanished".to_owned(),
            })?;
            (row, None)
        }
    };
    if member.as_ref().is_some_and(|m| m.banned) {
        store::mark_session(&mut tx, session_id, "completed").await?;
        tx.commit().await?;
        return Ok(Screen::end(
            pesachama_ussd::text::phrases(*language).refused_not_allowed,
        ));
    }
    let facts = facts(&mut tx, member.as_ref()).await?;

    let step = match &stored {
        None => machine::start(*language, &facts),
        Some(stored) => match stored.seen.next(secret, text) {
            Hop::Repeat => {
                // The gateway asked again (a timeout on its side): the same answer, no new work.
                tx.commit().await?;
                return Ok(replay(&stored.reply));
            }
            Hop::Input(latest) => machine::step(&stored.menu, *language, &latest, &facts),
        },
    };
    let step = match step.reply {
        Reply::Show(_) => step,
        Reply::Run(action) => {
            let context = actions::Context {
                session_id,
                hop: row.hops,
                phone,
                source,
                user: member.as_ref().map(|m| m.id),
                mpesa: state.config.mpesa.is_some(),
            };
            let outcome = actions::perform(&mut tx, &context, action).await?;
            machine::resume(&step.state, step.language, outcome, &facts)
        }
    };
    let Reply::Show(screen) = step.reply else {
        // resume always shows a screen; anything else is a bug, answered politely.
        return Err(HopError::Store(StoreError::Invalid {
            message: "the menus asked for a second action".to_owned(),
        }));
    };
    *language = step.language;
    let stored = Stored {
        menu: step.state,
        seen: Seen::of(secret, text),
        reply: screen.body(),
    };
    let status = if screen.end { "completed" } else { "active" };
    store::save_session(
        &mut tx,
        session_id,
        language.code(),
        &serde_json::to_value(&stored)?,
        status,
    )
    .await?;
    tx.commit().await?;
    Ok(screen)
}

/// A stored answer (`CON ...`/`END ...`) as a screen again.
fn replay(body: &str) -> Screen {
    match body.strip_prefix("END ") {
        Some(text) => Screen::end(text),
        None => Screen::con(body.strip_prefix("CON ").unwrap_or(body)),
    }
}

async fn facts(
    conn: &mut sqlx::PgConnection,
    member: Option<&store::MemberRow>,
) -> Result<Facts, HopError> {
    let Some(member) = member else {
        return Ok(Facts::default());
    };
    let chamas = store::memberships(conn, member.id)
        .await?
        .into_iter()
        .map(|row| ChamaFacts {
            id: row.chama_id,
            name: row.name,
            balance: row.balance,
            contributed: row.contributed,
            contribution: row.contribution,
            frequency: Frequency::from_code(&row.frequency),
            official: row.official,
        })
        .collect();
    Ok(Facts {
        member: Some(Member {
            first_name: member.first_name.clone(),
            chamas,
        }),
    })
}
