//! What follows an action: the handler performed what the menus asked and reports the outcome.

use crate::machine::{Reply, Step, end, show};
use crate::model::{Decision, Facts, Language, Outcome, PinRefusal, Refusal};
use crate::render::{self, Screen};
use crate::state::State;
use crate::text::{kes, phrases};

/// The step after the handler performed the action `state` asked for.
pub fn resume(state: &State, language: Language, outcome: Outcome, facts: &Facts) -> Step {
    let p = phrases(language);
    match (state, outcome) {
        (_, Outcome::Pin(PinRefusal::Wrong { remaining })) => {
            let notice = p.wrong_pin.replace("{n}", &remaining.to_string());
            show(state.clone(), language, facts, Some(&notice))
        }
        (_, Outcome::Pin(PinRefusal::Locked { minutes })) => end(
            language,
            p.pin_locked.replace("{n}", &minutes.max(1).to_string()),
        ),
        (_, Outcome::Pin(PinRefusal::NotSet)) => end(language, p.pin_not_set.to_owned()),
        (
            State::RegisterPin {
                first_name,
                last_name,
            },
            Outcome::PinHeld,
        ) => show(
            State::RegisterConfirm {
                first_name: first_name.clone(),
                last_name: last_name.clone(),
            },
            language,
            facts,
            None,
        ),
        (State::ChangePinNew, Outcome::PinHeld) => {
            show(State::ChangePinConfirm, language, facts, None)
        }
        (
            State::RegisterConfirm {
                first_name,
                last_name,
            },
            Outcome::PinMismatch,
        ) => show(
            State::RegisterPin {
                first_name: first_name.clone(),
                last_name: last_name.clone(),
            },
            language,
            facts,
            Some(p.pin_mismatch),
        ),
        (State::ChangePinConfirm, Outcome::PinMismatch) => {
            show(State::ChangePinNew, language, facts, Some(p.pin_mismatch))
        }
        (State::RegisterConfirm { first_name, .. }, Outcome::Registered) => Step {
            state: State::Home,
            language,
            reply: Reply::Show(render::home(language, first_name, Some(p.registered))),
        },
        (State::BalancePin { chama }, Outcome::PinVerified) => {
            show(State::Balance { chama: *chama }, language, facts, None)
        }
        (State::ChangePinCurrent, Outcome::PinVerified) => {
            show(State::ChangePinNew, language, facts, None)
        }
        (State::ChangePinConfirm, Outcome::PinChanged) => end(language, p.pin_changed.to_owned()),
        (State::Language, Outcome::LanguageSet(chosen)) => {
            let name = facts
                .member
                .as_ref()
                .map(|m| m.first_name.as_str())
                .unwrap_or("");
            let notice = phrases(chosen).language_set;
            Step {
                state: State::Home,
                language: chosen,
                reply: Reply::Show(render::home(chosen, name, Some(notice))),
            }
        }
        (State::ContributePin { amount, .. }, Outcome::ContributionQueued) => {
            end(language, p.stk_sent.replace("{amount}", &kes(*amount)))
        }
        (State::StatementPin { chama }, Outcome::Statement { lines, balance }) => show(
            State::Statement {
                chama: *chama,
                lines,
                balance,
                page: 0,
            },
            language,
            facts,
            None,
        ),
        (State::WithdrawPin { .. }, Outcome::WithdrawalRequested { required }) => end(
            language,
            p.withdraw_sent.replace("{n}", &required.to_string()),
        ),
        (State::Home, Outcome::Pending(items)) => {
            show(State::Approvals { items, page: 0 }, language, facts, None)
        }
        (State::ApprovalPin { .. }, Outcome::Decided(decision)) => end(
            language,
            match decision {
                Decision::Counted {
                    approvals,
                    required,
                } => p
                    .counted
                    .replace("{a}", &approvals.to_string())
                    .replace("{k}", &required.to_string()),
                Decision::Approved => p.approved.to_owned(),
                Decision::Unfunded => p.unfunded.to_owned(),
                Decision::Rejected => p.rejected.to_owned(),
            },
        ),
        (State::MeetingPin { .. }, Outcome::Meeting { chama, meeting }) => {
            show(State::Meeting { chama, meeting }, language, facts, None)
        }
        (_, Outcome::Refused(refusal)) => end(
            language,
            match refusal {
                Refusal::Rule => p.refused_rule,
                Refusal::Gone => p.refused_gone,
                Refusal::AlreadyDecided => p.refused_decided,
                Refusal::NotAllowed => p.refused_not_allowed,
                Refusal::MpesaUnavailable => p.mpesa_unavailable,
                Refusal::TooManyPrompts => p.too_many_prompts,
            }
            .to_owned(),
        ),
        // An outcome that does not belong to the state: a bug in the handler; close politely.
        _ => end(language, p.failure.to_owned()),
    }
}

/// The polite END for any internal failure, in the member's language.
pub fn failure(language: Language) -> Screen {
    Screen::end(phrases(language).failure)
}

/// The END for a hop on a session past the telco's 180 seconds.
pub fn expired(language: Language) -> Screen {
    Screen::end(phrases(language).expired)
}

/// The END for a number that is not a Kenyan mobile number.
pub fn not_kenyan() -> Screen {
    Screen::end(phrases(Language::En).not_kenyan)
}
