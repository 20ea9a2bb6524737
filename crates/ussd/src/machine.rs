//! The menus' transitions. [`step`] takes the state, the latest input and this hop's facts and
//! answers the next state with either a screen or an action for the handler to perform;
//! [`resume`] (in `resume.rs`) takes what came of that action and answers the screen. Both
//! are pure functions: the handler owns the database, the clock and the PIN hashes.

use pesachama_domain::Pin;

use crate::gsm;
use crate::input::MAX_INPUT;
use crate::model::{Action, Facts, Language};
use crate::navigation::back;
use crate::parse::{amount, choice, full_name, in_range, money};
use crate::render::{self, CHAMAS_PER_PAGE, LINES_PER_PAGE, PENDING_PER_PAGE, Screen, pages};
use crate::state::{Purpose, State};
use crate::text::phrases;

pub use crate::parse::{MAX_AMOUNT, MIN_AMOUNT};
pub use crate::resume::{expired, failure, not_kenyan, resume};

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Show(Screen),
    /// Perform this, then call [`resume`] with the same state and what came of it.
    Run(Action),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub state: State,
    pub language: Language,
    pub reply: Reply,
}

pub(crate) fn show(state: State, language: Language, facts: &Facts, notice: Option<&str>) -> Step {
    let screen = render::state(&state, language, facts, notice);
    let state = if screen.end { State::Ended } else { state };
    Step {
        state,
        language,
        reply: Reply::Show(screen),
    }
}

pub(crate) fn end(language: Language, text: String) -> Step {
    Step {
        state: State::Ended,
        language,
        reply: Reply::Show(Screen::end(text)),
    }
}

fn run(state: &State, language: Language, action: Action) -> Step {
    Step {
        state: state.clone(),
        language,
        reply: Reply::Run(action),
    }
}

fn home_of(facts: &Facts) -> State {
    if facts.member.is_some() {
        State::Home
    } else {
        State::Welcome
    }
}

/// The first screen of a session.
pub fn start(language: Language, facts: &Facts) -> Step {
    show(home_of(facts), language, facts, None)
}

/// The next step from `state` given the latest input.
pub fn step(state: &State, language: Language, input: &str, facts: &Facts) -> Step {
    let p = phrases(language);
    let input = input.trim();
    // A number registered or removed meanwhile (in the app, in another session).
    let registering = matches!(
        state,
        State::Welcome
            | State::RegisterName
            | State::RegisterPin { .. }
            | State::RegisterConfirm { .. }
    );
    let state = match (facts.member.is_some(), registering) {
        (true, true) if matches!(state, State::Welcome) => &State::Home,
        (false, false) => &State::Welcome,
        _ => state,
    };
    let invalid = |state: State| show(state, language, facts, Some(p.invalid_choice));
    if input.chars().count() > MAX_INPUT {
        return invalid(state.clone());
    }
    if matches!(state, State::Ended) {
        return end(language, p.goodbye.to_owned());
    }
    if input == "00" {
        return show(home_of(facts), language, facts, None);
    }
    if input == "0" {
        return match back(state) {
            Some(previous) => show(previous, language, facts, None),
            None => end(language, p.goodbye.to_owned()),
        };
    }
    let chamas = facts
        .member
        .as_ref()
        .map(|m| m.chamas.as_slice())
        .unwrap_or(&[]);
    let pin = || Pin::parse(input).ok();
    let bad_pin = |state: &State| show(state.clone(), language, facts, Some(p.bad_pin));

    match state {
        State::Welcome => match choice(input, 2) {
            Some(1) => show(State::RegisterName, Language::En, facts, None),
            Some(_) => show(State::RegisterName, Language::Sw, facts, None),
            None => invalid(state.clone()),
        },
        State::RegisterName => match full_name(input) {
            Some((first_name, last_name)) => show(
                State::RegisterPin {
                    first_name,
                    last_name,
                },
                language,
                facts,
                None,
            ),
            None => show(state.clone(), language, facts, Some(p.bad_name)),
        },
        State::RegisterPin { .. } | State::ChangePinNew => match pin() {
            Some(pin) => run(state, language, Action::HoldPin { pin }),
            None => bad_pin(state),
        },
        State::RegisterConfirm {
            first_name,
            last_name,
        } => match pin() {
            Some(confirm) => run(
                state,
                language,
                Action::Register {
                    first_name: first_name.clone(),
                    last_name: last_name.clone(),
                    language,
                    confirm,
                },
            ),
            None => bad_pin(state),
        },
        State::Home => match choice(input, 8) {
            Some(1) => show(
                State::Chamas {
                    purpose: Purpose::Balances,
                    page: 0,
                },
                language,
                facts,
                None,
            ),
            Some(2) => show(
                State::Chamas {
                    purpose: Purpose::Contribute,
                    page: 0,
                },
                language,
                facts,
                None,
            ),
            Some(3) => show(
                State::Chamas {
                    purpose: Purpose::Statement,
                    page: 0,
                },
                language,
                facts,
                None,
            ),
            Some(4) => show(
                State::Chamas {
                    purpose: Purpose::Withdraw,
                    page: 0,
                },
                language,
                facts,
                None,
            ),
            Some(5) if chamas.iter().any(|c| c.official) => {
                run(state, language, Action::LoadPending)
            }
            Some(5) => show(State::Home, language, facts, Some(p.only_officials)),
            Some(6) => show(
                State::Chamas {
                    purpose: Purpose::Meeting,
                    page: 0,
                },
                language,
                facts,
                None,
            ),
            Some(7) => show(State::ChangePinCurrent, language, facts, None),
            Some(8) => show(State::Language, language, facts, None),
            _ => invalid(state.clone()),
        },
        State::Chamas { purpose, page } => {
            if input == "98" && page + 1 < pages(chamas.len(), CHAMAS_PER_PAGE) {
                return show(
                    State::Chamas {
                        purpose: *purpose,
                        page: page + 1,
                    },
                    language,
                    facts,
                    None,
                );
            }
            let on_page = render::page_items(chamas, *page, CHAMAS_PER_PAGE);
            let Some(n) = choice(input, on_page.len()) else {
                return invalid(state.clone());
            };
            let chama = on_page[n - 1].id;
            let next = match purpose {
                Purpose::Balances => State::BalancePin { chama },
                Purpose::Contribute => State::ContributeAmount { chama },
                Purpose::Statement => State::StatementPin { chama },
                Purpose::Withdraw => State::WithdrawAmount { chama },
                Purpose::Meeting => State::MeetingPin { chama },
            };
            show(next, language, facts, None)
        }
        State::ContributeAmount { chama } => match choice(input, 2) {
            Some(1) => {
                let usual = chamas
                    .iter()
                    .find(|c| c.id == *chama)
                    .map(|c| c.contribution)
                    .unwrap_or(0);
                match in_range(usual, language) {
                    Ok(amount) => show(
                        State::ContributePin {
                            chama: *chama,
                            amount,
                        },
                        language,
                        facts,
                        None,
                    ),
                    Err(notice) => show(
                        State::ContributeOther { chama: *chama },
                        language,
                        facts,
                        Some(notice),
                    ),
                }
            }
            Some(_) => show(
                State::ContributeOther { chama: *chama },
                language,
                facts,
                None,
            ),
            None => invalid(state.clone()),
        },
        State::ContributeOther { chama } => match amount(input, language) {
            Ok(amount) => show(
                State::ContributePin {
                    chama: *chama,
                    amount,
                },
                language,
                facts,
                None,
            ),
            Err(notice) => show(state.clone(), language, facts, Some(notice)),
        },
        State::ContributePin { chama, amount } => match (pin(), money(*amount)) {
            (Some(pin), Some(amount)) => run(
                state,
                language,
                Action::Contribute {
                    pin,
                    chama: *chama,
                    amount,
                },
            ),
            _ => bad_pin(state),
        },
        State::BalancePin { .. } => match pin() {
            Some(pin) => run(state, language, Action::VerifyPin { pin }),
            None => bad_pin(state),
        },
        State::MeetingPin { chama } => match pin() {
            Some(pin) => run(state, language, Action::NextMeeting { pin, chama: *chama }),
            None => bad_pin(state),
        },
        State::StatementPin { chama } => match pin() {
            Some(pin) => run(state, language, Action::Statement { pin, chama: *chama }),
            None => bad_pin(state),
        },
        State::Statement {
            chama,
            lines,
            balance,
            page,
        } => {
            if input == "98" && page + 1 < pages(lines.len(), LINES_PER_PAGE) {
                let next = State::Statement {
                    chama: *chama,
                    lines: lines.clone(),
                    balance: *balance,
                    page: page + 1,
                };
                return show(next, language, facts, None);
            }
            invalid(state.clone())
        }
        State::WithdrawAmount { chama } => match amount(input, language) {
            Ok(amount) => show(
                State::WithdrawReason {
                    chama: *chama,
                    amount,
                },
                language,
                facts,
                None,
            ),
            Err(notice) => show(state.clone(), language, facts, Some(notice)),
        },
        State::WithdrawReason { chama, amount } => {
            let reason = input.split_whitespace().collect::<Vec<_>>().join(" ");
            let length = reason.chars().count();
            if (3..=60).contains(&length) && reason.chars().all(gsm::is_basic) {
                show(
                    State::WithdrawPin {
                        chama: *chama,
                        amount: *amount,
                        reason,
                    },
                    language,
                    facts,
                    None,
                )
            } else {
                show(state.clone(), language, facts, Some(p.bad_reason))
            }
        }
        State::WithdrawPin {
            chama,
            amount,
            reason,
        } => match (pin(), money(*amount)) {
            (Some(pin), Some(amount)) => run(
                state,
                language,
                Action::RequestWithdrawal {
                    pin,
                    chama: *chama,
                    amount,
                    reason: reason.clone(),
                },
            ),
            _ => bad_pin(state),
        },
        State::Approvals { items, page } => {
            if input == "98" && page + 1 < pages(items.len(), PENDING_PER_PAGE) {
                return show(
                    State::Approvals {
                        items: items.clone(),
                        page: page + 1,
                    },
                    language,
                    facts,
                    None,
                );
            }
            let on_page = render::page_items(items, *page, PENDING_PER_PAGE).len();
            match choice(input, on_page) {
                Some(n) => {
                    let index = page * PENDING_PER_PAGE + n - 1;
                    show(
                        State::Approval {
                            items: items.clone(),
                            page: *page,
                            index,
                        },
                        language,
                        facts,
                        None,
                    )
                }
                None => invalid(state.clone()),
            }
        }
        State::Approval { items, page, index } => match choice(input, 2) {
            Some(n) => {
                let next = State::ApprovalPin {
                    items: items.clone(),
                    page: *page,
                    index: *index,
                    approve: n == 1,
                };
                show(next, language, facts, None)
            }
            None => invalid(state.clone()),
        },
        State::ApprovalPin {
            items,
            index,
            approve,
            ..
        } => match (pin(), items.get(*index)) {
            (Some(pin), Some(item)) => run(
                state,
                language,
                Action::Decide {
                    pin,
                    request: item.id,
                    approve: *approve,
                },
            ),
            _ => bad_pin(state),
        },
        State::ChangePinCurrent => match pin() {
            Some(pin) => run(state, language, Action::VerifyPin { pin }),
            None => bad_pin(state),
        },
        State::ChangePinConfirm => match pin() {
            Some(confirm) => run(state, language, Action::ChangePin { confirm }),
            None => bad_pin(state),
        },
        State::Language => match choice(input, 2) {
            Some(1) => run(
                state,
                language,
                Action::SetLanguage {
                    language: Language::En,
                },
            ),
            Some(_) => run(
                state,
                language,
                Action::SetLanguage {
                    language: Language::Sw,
                },
            ),
            None => invalid(state.clone()),
        },
        State::Balance { .. } | State::Meeting { .. } | State::Ended => invalid(state.clone()),
    }
}
