//! Screens: what a state looks like in a language. Lists are paged so that every page fits
//! one screen however long the names; names from outside are cleaned to plain GSM text.

use chrono::{FixedOffset, Offset};

use crate::gsm;
use crate::model::{ChamaFacts, Facts, Language, Meeting, PendingWithdrawal};
use crate::state::State;
use crate::text::{Phrases, kes, phrases};

/// Chamas on one page of a list.
pub const CHAMAS_PER_PAGE: usize = 5;
/// Pending withdrawals on one page.
pub const PENDING_PER_PAGE: usize = 3;
/// Statement lines on one page.
pub const LINES_PER_PAGE: usize = 3;

/// One answer to the gateway: `CON` text (wait for input) or `END` text (close).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    pub text: String,
    pub end: bool,
}

impl Screen {
    pub fn con(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            end: false,
        }
    }

    pub fn end(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            end: true,
        }
    }

    /// The body Africa's Talking expects, made safe to send (see [`gsm::fit`]).
    pub fn body(&self) -> String {
        let text = gsm::fit(&self.text);
        if self.end {
            format!("END {text}")
        } else {
            format!("CON {text}")
        }
    }
}

/// Lines joined by newlines, the notice (if any) first.
fn lines(notice: Option<&str>, rest: &[&str]) -> String {
    notice
        .into_iter()
        .chain(rest.iter().copied())
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn nav(p: &Phrases) -> String {
    format!("{} {}", p.back, p.home)
}

pub fn chama_name(chama: &ChamaFacts, max: usize) -> String {
    gsm::clean(&chama.name, max)
}

/// How many pages a list of `len` items takes.
pub fn pages(len: usize, per_page: usize) -> usize {
    len.div_ceil(per_page).max(1)
}

fn page_of<T>(items: &[T], page: usize, per_page: usize) -> &[T] {
    let start = (page * per_page).min(items.len());
    let end = (start + per_page).min(items.len());
    &items[start..end]
}

pub fn page_items<T>(items: &[T], page: usize, per_page: usize) -> &[T] {
    page_of(items, page, per_page)
}

pub fn welcome(language: Language, notice: Option<&str>) -> Screen {
    let p = phrases(language);
    let one = format!("1. {}", p.register_en);
    let two = format!("2. {}", p.register_sw);
    Screen::con(lines(notice, &[p.welcome_new, &one, &two]))
}

pub fn home(language: Language, first_name: &str, notice: Option<&str>) -> Screen {
    let p = phrases(language);
    // A notice takes the greeting's place: the menu alone nearly fills a screen.
    let mut text = match notice {
        Some(notice) => notice.to_owned(),
        None => format!("{} {}", p.welcome, gsm::clean(first_name, 20)),
    };
    for (i, item) in p.menu.iter().enumerate() {
        text.push_str(&format!("\n{}. {item}", i + 1));
    }
    Screen::con(text)
}

/// The screen of `state`, with the facts of this hop and an optional notice on top (an error
/// about the last input, or what just happened).
pub fn state(state: &State, language: Language, facts: &Facts, notice: Option<&str>) -> Screen {
    let p = phrases(language);
    let chamas = facts
        .member
        .as_ref()
        .map(|m| m.chamas.as_slice())
        .unwrap_or(&[]);
    let find = |id| chamas.iter().find(|c| c.id == id);
    let nav = nav(p);
    match state {
        State::Welcome => welcome(language, notice),
        State::RegisterName => Screen::con(lines(notice, &[p.ask_name, p.back])),
        State::RegisterPin { .. } | State::ChangePinNew => {
            let prompt = if matches!(state, State::ChangePinNew) {
                p.new_pin
            } else {
                p.choose_pin
            };
            Screen::con(lines(notice, &[prompt, p.back]))
        }
        State::RegisterConfirm { .. } | State::ChangePinConfirm => {
            Screen::con(lines(notice, &[p.pin_again, p.back]))
        }
        State::Home => {
            let name = facts
                .member
                .as_ref()
                .map(|m| m.first_name.as_str())
                .unwrap_or("");
            home(language, name, notice)
        }
        State::Chamas { page, .. } => {
            if chamas.is_empty() {
                return Screen::con(lines(notice, &[p.no_chama, &nav]));
            }
            // A notice takes the title's place, so a full page still fits.
            let mut body = vec![notice.unwrap_or(p.choose_chama).to_owned()];
            for (i, chama) in page_of(chamas, *page, CHAMAS_PER_PAGE).iter().enumerate() {
                body.push(format!("{}. {}", i + 1, chama_name(chama, 18)));
            }
            if page + 1 < pages(chamas.len(), CHAMAS_PER_PAGE) {
                body.push(p.more.to_owned());
            }
            body.push(nav.clone());
            let body: Vec<&str> = body.iter().map(String::as_str).collect();
            Screen::con(lines(None, &body))
        }
        State::BalancePin { chama } | State::MeetingPin { chama } => match find(*chama) {
            Some(c) => {
                let title = if matches!(state, State::BalancePin { .. }) {
                    p.balance
                } else {
                    p.next_meeting
                };
                let what = format!("{title}: {}", chama_name(c, 30));
                Screen::con(lines(notice, &[&what, p.enter_pin, p.back]))
            }
            None => gone(language, facts),
        },
        State::Balance { chama } => match find(*chama) {
            Some(c) => {
                // A notice takes the name's place (this screen only reads; 0 and 00 lead on).
                let name = notice.map_or_else(|| chama_name(c, 30), str::to_owned);
                let balance = format!("{}: {}", p.balance, kes(c.balance));
                let mine = format!("{}: {}", p.your_savings, kes(c.contributed));
                let due = format!(
                    "{}: {} {}",
                    p.contribution,
                    kes(c.contribution),
                    p.frequency(c.frequency)
                );
                Screen::con(lines(None, &[&name, &balance, &mine, &due, &nav]))
            }
            None => gone(language, facts),
        },
        State::ContributeAmount { chama } => match find(*chama) {
            Some(c) => {
                let name = chama_name(c, 30);
                let usual = format!("1. {} {}", p.pay, kes(c.contribution));
                let other = format!("2. {}", p.other_amount);
                Screen::con(lines(notice, &[&name, &usual, &other, &nav]))
            }
            None => gone(language, facts),
        },
        State::ContributeOther { .. } => Screen::con(lines(notice, &[p.amount_prompt, &nav])),
        State::ContributePin { chama, amount } => match find(*chama) {
            Some(c) => {
                let what = format!(
                    "{} {} -> {}",
                    p.confirm_contribute,
                    kes(*amount),
                    chama_name(c, 30)
                );
                Screen::con(lines(notice, &[&what, p.enter_pin, p.back]))
            }
            None => gone(language, facts),
        },
        State::StatementPin { chama } => match find(*chama) {
            Some(c) => {
                let what = format!("{}: {}", p.statement_title, chama_name(c, 30));
                Screen::con(lines(notice, &[&what, p.enter_pin, p.back]))
            }
            None => gone(language, facts),
        },
        State::Statement {
            chama,
            lines: entries,
            balance,
            page,
        } => {
            let name = notice
                .map(str::to_owned)
                .unwrap_or_else(|| find(*chama).map(|c| chama_name(c, 20)).unwrap_or_default());
            let mut body = vec![name, format!("{}: {}", p.your_savings, kes(*balance))];
            if entries.is_empty() {
                body.push(p.no_entries.to_owned());
            }
            for line in page_of(entries, *page, LINES_PER_PAGE) {
                let at = line.at.with_timezone(&nairobi()).format("%d/%m");
                body.push(format!("{at} {} {}", p.kind(&line.kind), kes(line.amount)));
            }
            if page + 1 < pages(entries.len(), LINES_PER_PAGE) {
                body.push(p.more.to_owned());
            }
            body.push(nav.clone());
            let body: Vec<&str> = body.iter().map(String::as_str).collect();
            Screen::con(lines(None, &body))
        }
        State::WithdrawAmount { chama } => match find(*chama) {
            Some(c) => {
                let what = format!("{} {}", p.withdraw_amount, chama_name(c, 30));
                Screen::con(lines(notice, &[&what, p.amount_prompt, &nav]))
            }
            None => gone(language, facts),
        },
        State::WithdrawReason { .. } => Screen::con(lines(notice, &[p.reason_prompt, &nav])),
        State::WithdrawPin {
            chama,
            amount,
            reason,
        } => match find(*chama) {
            Some(c) => {
                let what = format!(
                    "{} {} ({}): {}",
                    p.confirm_withdraw,
                    kes(*amount),
                    chama_name(c, 20),
                    gsm::clean(reason, 30)
                );
                Screen::con(lines(notice, &[&what, p.enter_pin, p.back]))
            }
            None => gone(language, facts),
        },
        State::Approvals { items, page } => {
            if items.is_empty() {
                return Screen::con(lines(notice, &[p.no_pending, &nav]));
            }
            let mut body = vec![notice.unwrap_or(p.pending_title).to_owned()];
            for (i, item) in page_of(items, *page, PENDING_PER_PAGE).iter().enumerate() {
                body.push(format!(
                    "{}. {} {}: {}",
                    i + 1,
                    kes(item.amount),
                    gsm::clean(&item.requester, 12),
                    gsm::clean(&item.reason, 14)
                ));
            }
            if page + 1 < pages(items.len(), PENDING_PER_PAGE) {
                body.push(p.more.to_owned());
            }
            body.push(nav.clone());
            let body: Vec<&str> = body.iter().map(String::as_str).collect();
            Screen::con(lines(None, &body))
        }
        State::Approval { items, index, .. } => match items.get(*index) {
            Some(item) => {
                let what = describe(p, item, 40);
                let one = format!("1. {}", p.approve);
                let two = format!("2. {}", p.reject);
                Screen::con(lines(notice, &[&what, &one, &two, &nav]))
            }
            None => gone(language, facts),
        },
        State::ApprovalPin {
            items,
            index,
            approve,
            ..
        } => match items.get(*index) {
            Some(item) => {
                let decision = if *approve { p.approve } else { p.reject };
                let what = format!(
                    "{}: {} {} {}",
                    p.confirm_decision,
                    decision,
                    kes(item.amount),
                    gsm::clean(&item.requester, 20)
                );
                Screen::con(lines(notice, &[&what, p.enter_pin, p.back]))
            }
            None => gone(language, facts),
        },
        State::Meeting { chama, meeting } => {
            let name = find(*chama).map(|c| chama_name(c, 24)).unwrap_or_default();
            let title = format!("{}: {name}", p.next_meeting);
            match meeting {
                Some(m) => {
                    let when = meeting_time(m);
                    let what = gsm::clean(&m.title, 40);
                    let venue = m
                        .venue
                        .as_deref()
                        .map(|v| gsm::clean(v, 40))
                        .unwrap_or_default();
                    Screen::con(lines(notice, &[&title, &what, &when, &venue, &nav]))
                }
                None => Screen::con(lines(notice, &[&title, p.no_meeting, &nav])),
            }
        }
        State::ChangePinCurrent => Screen::con(lines(notice, &[p.current_pin, p.back])),
        State::Language => Screen::con(lines(
            notice,
            &[p.choose_language, "1. English", "2. Kiswahili", p.back],
        )),
        State::Ended => Screen::end(p.goodbye),
    }
}

/// `Chama: Name asks KES 5,000 for school fees. Approvals 1/2`
fn describe(p: &Phrases, item: &PendingWithdrawal, reason_max: usize) -> String {
    format!(
        "{}: {} {} - {}. {} {}/{}",
        gsm::clean(&item.chama_name, 20),
        gsm::clean(&item.requester, 20),
        kes(item.amount),
        gsm::clean(&item.reason, reason_max),
        p.approvals_so_far,
        item.approvals,
        item.required
    )
}

/// East Africa Time (UTC+3, no daylight saving).
fn nairobi() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).unwrap_or_else(|| chrono::Utc.fix())
}

fn meeting_time(meeting: &Meeting) -> String {
    meeting
        .at
        .with_timezone(&nairobi())
        .format("%d/%m/%Y %H:%M")
        .to_string()
}

/// A chama or request that disappeared between two hops (the member left, it was decided).
fn gone(language: Language, facts: &Facts) -> Screen {
    let p = phrases(language);
    let name = facts
        .member
        .as_ref()
        .map(|m| m.first_name.as_str())
        .unwrap_or("");
    home(language, name, Some(p.refused_gone))
}
