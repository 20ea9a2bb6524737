//! What the menus ask the handler to do, done inside the hop's transaction.
//!
//! PINs are compared with the app's hash (`crate::pins::compare`), but wrong ones are counted
//! here, per (phone number, source address), never against the app's lockout: see [`check`].
//! What the member then does runs
//! as the member (role `authenticated`, claims `{sub, role, phone}`) inside a savepoint, so RLS
//! and the database functions decide exactly as for the app, and a refusal rolls back only the
//! savepoint: the wrong-try count and the session row still commit.

use chrono::{DateTime, Utc};
use pesachama_domain::{Phone, Pin};
use pesachama_store::StoreError;
use pesachama_store::auth::{self as auth_store, NewUser};
use pesachama_store::ussd as store;
use pesachama_store::ussd_pin_tries as pin_tries;
use pesachama_ussd::Action;
use pesachama_ussd::model::{
    Decision, Meeting, Outcome, PendingWithdrawal, PinRefusal, Refusal, StatementLine,
};
use serde_json::{Value, json};
use sqlx::{Acquire, PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::HopError;
use crate::gotrue::{AuthError, blocking};
use crate::pins::{self, PinCheck};

/// Lines of a mini statement: the latest ones.
const MINI_STATEMENT: usize = 9;

#[derive(Debug)]
pub(super) struct Context<'a> {
    pub session_id: &'a str,
    /// Hops so far: with the session id, the idempotency key of a withdrawal request.
    pub hop: i32,
    pub phone: &'a Phone,
    /// The address the request came from (the gateway's, in production): wrong PINs are
    /// counted per number and source.
    pub source: &'a str,
    pub user: Option<Uuid>,
    /// Whether M-Pesa (Daraja or the simulator) is configured: without it no STK push is queued.
    pub mpesa: bool,
}

pub(super) fn perform<'a>(
    tx: &'a mut Transaction<'static, Postgres>,
    cx: &'a Context<'_>,
    action: Action,
) -> BoxFuture<'a, Result<Outcome, HopError>> {
    Box::pin(async move {
        match action {
            Action::HoldPin { pin } => {
                let hash = hash(&pin).await?;
                store::hold_pin(tx, cx.session_id, &hash).await?;
                Ok(Outcome::PinHeld)
            }
            Action::Register {
                first_name,
                last_name,
                language,
                confirm,
            } => {
                let Some(hash) = held_matching(tx, cx.session_id, &confirm).await? else {
                    return Ok(Outcome::PinMismatch);
                };
                if cx.user.is_some() {
                    return Ok(Outcome::Refused(Refusal::NotAllowed));
                }
                register(
                    tx,
                    cx.phone,
                    &first_name,
                    last_name.as_deref(),
                    language.code(),
                    &hash,
                )
                .await
            }
            Action::VerifyPin { pin } => Ok(match check(tx, cx, &pin).await? {
                None => Outcome::PinVerified,
                Some(refusal) => Outcome::Pin(refusal),
            }),
            Action::ChangePin { confirm } => {
                let Some(user) = cx.user else {
                    return Ok(Outcome::Refused(Refusal::NotAllowed));
                };
                if held_matching(tx, cx.session_id, &confirm).await?.is_none() {
                    return Ok(Outcome::PinMismatch);
                }
                let change: BoxFuture<'_, Result<(), AuthError>> =
                    Box::pin(pins::set(tx, user, &confirm));
                change.await?;
                Ok(Outcome::PinChanged)
            }
            Action::SetLanguage { language } => {
                if let Some(user) = cx.user {
                    store::set_language(tx, user, language.code()).await?;
                }
                Ok(Outcome::LanguageSet(language))
            }
            Action::Contribute { pin, chama, amount } => {
                if !cx.mpesa {
                    // Nobody would send the prompt: say so before the PIN, and queue nothing.
                    return Ok(Outcome::Refused(Refusal::MpesaUnavailable));
                }
                if let Some(refusal) = check(tx, cx, &pin).await? {
                    return Ok(Outcome::Pin(refusal));
                }
                let Some(user) = cx.user else {
                    return Ok(Outcome::Refused(Refusal::NotAllowed));
                };
                let mut savepoint = tx.begin().await?;
                match store::start_contribution(
                    &mut savepoint,
                    chama,
                    user,
                    cx.phone.as_e164(),
                    amount.minor(),
                )
                .await
                {
                    Ok(request) => {
                        savepoint.commit().await?;
                        tracing::info!(session_id = cx.session_id, payment_request_id = %request, "USSD contribution queued for an STK push");
                        Ok(Outcome::ContributionQueued)
                    }
                    Err(err) => refused(savepoint, err).await,
                }
            }
            Action::Statement { pin, chama } => {
                if let Some(refusal) = check(tx, cx, &pin).await? {
                    return Ok(Outcome::Pin(refusal));
                }
                let Some((mut member, me)) = enter(tx, cx).await? else {
                    return Ok(not_allowed());
                };
                let result = store::member_statement(&mut member, chama, me).await;
                leave(
                    member,
                    result.map(|statement| statement_outcome(&statement)),
                )
                .await
            }
            Action::RequestWithdrawal {
                pin,
                chama,
                amount,
                reason,
            } => {
                if let Some(refusal) = check(tx, cx, &pin).await? {
                    return Ok(Outcome::Pin(refusal));
                }
                let key = format!("ussd:{}:{}", cx.session_id, cx.hop);
                let hash = format!("{chama}:{}:{reason}", amount.minor());
                let Some((mut member, _)) = enter(tx, cx).await? else {
                    return Ok(not_allowed());
                };
                let result = store::request_disbursement(
                    &mut member,
                    chama,
                    amount.minor(),
                    &reason,
                    &key,
                    &hash,
                )
                .await;
                leave(
                    member,
                    result.map(|answer| {
                        let required = answer["request"]["required_approvals"]
                            .as_i64()
                            .unwrap_or(0);
                        Outcome::WithdrawalRequested {
                            required: i32::try_from(required).unwrap_or(0),
                        }
                    }),
                )
                .await
            }
            Action::LoadPending => {
                let Some((mut member, me)) = enter(tx, cx).await? else {
                    return Ok(not_allowed());
                };
                let result = store::pending_for_official(&mut member, me).await;
                leave(
                    member,
                    result.map(|rows| {
                        Outcome::Pending(
                            rows.into_iter()
                                .map(|r| PendingWithdrawal {
                                    id: r.id,
                                    chama_name: r.chama_name,
                                    requester: r.requester,
                                    amount: r.amount,
                                    reason: r.reason,
                                    approvals: r.approvals,
                                    required: r.required,
                                })
                                .collect(),
                        )
                    }),
                )
                .await
            }
            Action::Decide {
                pin,
                request,
                approve,
            } => {
                if let Some(refusal) = check(tx, cx, &pin).await? {
                    return Ok(Outcome::Pin(refusal));
                }
                let Some((mut member, _)) = enter(tx, cx).await? else {
                    return Ok(not_allowed());
                };
                let result = store::decide_disbursement(&mut member, request, approve).await;
                leave(member, result.map(|answer| decision_outcome(&answer))).await
            }
            Action::NextMeeting { pin, chama } => {
                if let Some(refusal) = check(tx, cx, &pin).await? {
                    return Ok(Outcome::Pin(refusal));
                }
                let Some((mut member, _)) = enter(tx, cx).await? else {
                    return Ok(not_allowed());
                };
                let result = store::next_meeting(&mut member, chama).await;
                leave(
                    member,
                    result.map(|meeting| Outcome::Meeting {
                        chama,
                        meeting: meeting.map(|m| Meeting {
                            title: m.title,
                            at: m.scheduled_for,
                            venue: m.venue,
                        }),
                    }),
                )
                .await
            }
        }
    })
}

fn not_allowed() -> Outcome {
    Outcome::Refused(Refusal::NotAllowed)
}

/// A savepoint in which queries run as the member; `None` for a number not registered.
async fn enter<'t>(
    tx: &'t mut Transaction<'_, Postgres>,
    cx: &Context<'_>,
) -> Result<Option<(Transaction<'t, Postgres>, Uuid)>, HopError> {
    let Some(me) = cx.user else { return Ok(None) };
    let claims = json!({ "sub": me, "role": "authenticated", "aud": "authenticated", "phone": cx.phone.msisdn() });
    let mut savepoint = tx.begin().await?;
    store::become_member(&mut savepoint, &claims).await?;
    Ok(Some((savepoint, me)))
}

/// Ends the member's savepoint: back to the system role on success; on a refusal by RLS or a
/// database function, rolled back, and the refusal is the outcome.
async fn leave(
    mut savepoint: Transaction<'_, Postgres>,
    result: Result<Outcome, StoreError>,
) -> Result<Outcome, HopError> {
    match result {
        Ok(outcome) => {
            store::become_system(&mut savepoint).await?;
            savepoint.commit().await?;
            Ok(outcome)
        }
        Err(err) => refused(savepoint, err).await,
    }
}

/// A refusal the member should hear about, or an error to fail the hop with.
async fn refused(
    savepoint: Transaction<'_, Postgres>,
    err: StoreError,
) -> Result<Outcome, HopError> {
    savepoint.rollback().await?;
    let refusal = match &err {
        StoreError::NotFound { .. } => Refusal::Gone,
        StoreError::Refused { .. }
        | StoreError::Invalid { .. }
        | StoreError::InvalidField { .. } => Refusal::Rule,
        StoreError::RateLimited { .. } => Refusal::TooManyPrompts,
        StoreError::InFlight { .. } | StoreError::Conflict { .. } => Refusal::AlreadyDecided,
        StoreError::PermissionDenied { .. } => Refusal::NotAllowed,
        _ => return Err(err.into()),
    };
    tracing::info!(error = %err, "USSD action refused");
    Ok(Outcome::Refused(refusal))
}

/// Wrong PINs from one source for one number before that pair has to wait.
pub(crate) const FREE_TRIES: i32 = 3;
/// The first wait, doubled after each further wrong PIN from the pair...
pub(crate) const FIRST_WAIT_SECONDS: i64 = 30;
/// ...up to this.
pub(crate) const LONGEST_WAIT_SECONDS: i64 = 60 * 60;

/// Checks the PIN; `None` when it is right. The try counts whatever the hop does next, since
/// the hop's transaction commits.
///
/// Why not the app's lockout: Africa's Talking signs nothing, so before the gate (or in
/// `--demo`, or with a leaked token) anyone can post "I am +2547..." with a wrong PIN, and
/// three of those would lock the member out of the app too. So USSD only compares the PIN
/// with the app's hash ([`pins::compare`], which still honours a lockout the app set) and
/// counts wrong ones in `internal.ussd_pin_tries` per (number, source address): after
/// [`FREE_TRIES`] the pair waits [`FIRST_WAIT_SECONDS`], doubled after each further wrong PIN
/// (at most [`LONGEST_WAIT_SECONDS`]), and a right PIN clears it. A source guessing slows
/// only itself; the member from elsewhere, and the app, are untouched. Brute force stays
/// slow: from one source about thirty guesses a day against 10,000 PINs. Each wrong PIN is
/// audited (`auth.ussd_pin_failed`, with the source) so guessing shows per number.
fn check<'a>(
    conn: &'a mut PgConnection,
    cx: &'a Context<'_>,
    pin: &'a Pin,
) -> BoxFuture<'a, Result<Option<PinRefusal>, HopError>> {
    let user = cx.user;
    Box::pin(async move {
        let Some(user) = user else {
            return Ok(Some(PinRefusal::NotSet));
        };
        let phone = cx.phone.as_e164();
        let tries = pin_tries::lock(&mut *conn, phone, cx.source).await?;
        if let Some(until) = tries.waiting_until() {
            return Ok(Some(PinRefusal::Locked {
                minutes: minutes_until(until),
            }));
        }
        let compared = {
            let compare: BoxFuture<'_, Result<PinCheck, AuthError>> =
                Box::pin(pins::compare(&mut *conn, user, pin));
            compare.await?
        };
        Ok(match compared {
            PinCheck::Correct => {
                pin_tries::clear(&mut *conn, phone, cx.source).await?;
                None
            }
            PinCheck::Wrong { .. } => {
                let tries = pin_tries::record_failure(
                    &mut *conn,
                    phone,
                    cx.source,
                    FREE_TRIES,
                    FIRST_WAIT_SECONDS,
                    LONGEST_WAIT_SECONDS,
                )
                .await?;
                let audit: BoxFuture<'_, Result<(), AuthError>> = Box::pin(pins::audit(
                    &mut *conn,
                    "auth.ussd_pin_failed",
                    user,
                    json!({ "source": cx.source, "failures": tries.failures }),
                ));
                audit.await?;
                match tries.waiting_until() {
                    Some(until) => Some(PinRefusal::Locked {
                        minutes: minutes_until(until),
                    }),
                    None => Some(PinRefusal::Wrong {
                        remaining: FREE_TRIES - tries.failures,
                    }),
                }
            }
            PinCheck::Locked { until } => Some(PinRefusal::Locked {
                minutes: minutes_until(until),
            }),
            PinCheck::NotSet => Some(PinRefusal::NotSet),
        })
    })
}

/// The helpers here return boxed futures: it keeps the handler's future provably `Send`.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

fn minutes_until(until: DateTime<Utc>) -> i64 {
    (until - Utc::now()).num_seconds().max(0).saturating_add(59) / 60
}

/// The PIN's bcrypt hash, computed off the async workers.
fn hash(pin: &Pin) -> BoxFuture<'static, Result<String, HopError>> {
    let digits = pin.expose().to_owned();
    Box::pin(async move {
        match blocking(move || pesachama_auth::hashing::hash_password(&digits)).await? {
            Ok(hash) => Ok(hash),
            Err(err) => {
                tracing::error!(error = %err, "cannot hash a PIN");
                Err(HopError::Auth(AuthError::internal()))
            }
        }
    })
}

fn held_matching<'a>(
    conn: &'a mut PgConnection,
    session_id: &'a str,
    confirm: &'a Pin,
) -> BoxFuture<'a, Result<Option<String>, HopError>> {
    let digits = confirm.expose().to_owned();
    Box::pin(async move {
        let Some(hash) = store::take_held_pin(conn, session_id).await? else {
            return Ok(None);
        };
        let checked = hash.clone();
        let same =
            blocking(move || pesachama_auth::hashing::verify_password(&digits, &checked)).await?;
        Ok(same.then_some(hash))
    })
}

/// A new member from USSD: the auth user, the identity, the profile and the PIN, in the hop's
/// transaction. The phone is **not** marked confirmed: a USSD request proves only that the
/// gateway (or, in `--demo`, anyone) sent that `phoneNumber`, not that a code reached the
/// number, so the app treats the number as unverified until it is verified there (an OTP).
/// USSD itself finds the member by the profile's number and asks for the PIN chosen here.
fn register<'a>(
    conn: &'a mut PgConnection,
    phone: &'a Phone,
    first_name: &'a str,
    last_name: Option<&'a str>,
    language: &'a str,
    pin_hash: &'a str,
) -> BoxFuture<'a, Result<Outcome, HopError>> {
    Box::pin(async move {
        let metadata =
            json!({ "first_name": first_name, "last_name": last_name, "language": language });
        if let Some(existing) = auth_store::find_user_by_phone(&mut *conn, phone.msisdn()).await? {
            // An account on this number that nobody ever confirmed proves nothing (an app
            // sign-up by whoever typed the number): as a sign-up would, the registration takes
            // it over, its password and sessions gone, rather than leaving the number's holder
            // locked out of USSD by a squatter.
            if existing.confirmed_at.is_some() {
                return Ok(Outcome::Refused(Refusal::NotAllowed));
            }
            auth_store::take_over_unconfirmed(conn, existing.id, &metadata).await?;
            store::save_profile(
                conn,
                existing.id,
                phone.as_e164(),
                (first_name, last_name),
                language,
                true,
            )
            .await?;
            pesachama_store::pins::set(&mut *conn, existing.id, pin_hash).await?;
            tracing::info!(user_id = %existing.id, phone = %phone.masked(), "registered on USSD over an unconfirmed sign-up");
            return Ok(Outcome::Registered);
        }
        let user = auth_store::insert_user(
            conn,
            &NewUser {
                email: None,
                phone: Some(phone.msisdn()),
                password_hash: None,
                user_metadata: &metadata,
                provider: "phone",
                confirmed: false,
            },
        )
        .await?;
        let identity =
            json!({ "sub": user.id.to_string(), "phone": phone.msisdn(), "phone_verified": false });
        auth_store::insert_identity(conn, user.id, "phone", &user.id.to_string(), &identity)
            .await?;
        store::save_profile(
            conn,
            user.id,
            phone.as_e164(),
            (first_name, last_name),
            language,
            false,
        )
        .await?;
        pesachama_store::pins::set(&mut *conn, user.id, pin_hash).await?;
        tracing::info!(user_id = %user.id, phone = %phone.masked(), "registered on USSD");
        Ok(Outcome::Registered)
    })
}

fn statement_outcome(statement: &Value) -> Outcome {
    let entries = statement["entries"].as_array().cloned().unwrap_or_default();
    let skip = entries.len().saturating_sub(MINI_STATEMENT);
    let lines = entries
        .iter()
        .skip(skip)
        .rev()
        .filter_map(|entry| {
            Some(StatementLine {
                at: entry["at"].as_str()?.parse().ok()?,
                kind: entry["kind"].as_str()?.to_owned(),
                amount: entry["amount"].as_i64()?,
            })
        })
        .collect();
    Outcome::Statement {
        lines,
        balance: statement["closing_balance"].as_i64().unwrap_or(0),
    }
}

fn decision_outcome(answer: &Value) -> Outcome {
    let count = |key: &str| i32::try_from(answer[key].as_i64().unwrap_or(0)).unwrap_or(0);
    Outcome::Decided(match answer["status"].as_str() {
        Some("approved") => Decision::Approved,
        Some("failed") => Decision::Unfunded,
        Some("rejected") => Decision::Rejected,
        Some("pending") => Decision::Counted {
            approvals: count("approvals"),
            required: count("required_approvals"),
        },
        _ => return Outcome::Refused(Refusal::Gone),
    })
}
