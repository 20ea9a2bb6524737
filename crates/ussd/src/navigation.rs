//! `0`: where "back" leads from each state (`00` always leads home).

use crate::state::{Purpose, State};

/// Where `0` leads from each state.
pub(crate) fn back(state: &State) -> Option<State> {
    Some(match state {
        State::Welcome | State::Home | State::Ended => return None,
        State::RegisterName => State::Welcome,
        State::RegisterPin { .. } => State::RegisterName,
        State::RegisterConfirm {
            first_name,
            last_name,
        } => State::RegisterPin {
            first_name: first_name.clone(),
            last_name: last_name.clone(),
        },
        State::Chamas { purpose, page } => match page.checked_sub(1) {
            Some(page) => State::Chamas {
                purpose: *purpose,
                page,
            },
            None => State::Home,
        },
        State::BalancePin { .. } | State::Balance { .. } => State::Chamas {
            purpose: Purpose::Balances,
            page: 0,
        },
        State::ContributeAmount { .. } => State::Chamas {
            purpose: Purpose::Contribute,
            page: 0,
        },
        State::ContributeOther { chama } | State::ContributePin { chama, .. } => {
            State::ContributeAmount { chama: *chama }
        }
        State::StatementPin { .. } => State::Chamas {
            purpose: Purpose::Statement,
            page: 0,
        },
        State::Statement {
            chama,
            lines,
            balance,
            page,
        } => match page.checked_sub(1) {
            Some(page) => State::Statement {
                chama: *chama,
                lines: lines.clone(),
                balance: *balance,
                page,
            },
            None => State::Chamas {
                purpose: Purpose::Statement,
                page: 0,
            },
        },
        State::WithdrawAmount { .. } => State::Chamas {
            purpose: Purpose::Withdraw,
            page: 0,
        },
        State::WithdrawReason { chama, .. } => State::WithdrawAmount { chama: *chama },
        State::WithdrawPin { chama, amount, .. } => State::WithdrawReason {
            chama: *chama,
            amount: *amount,
        },
        State::Approvals { items, page } => match page.checked_sub(1) {
            Some(page) => State::Approvals {
                items: items.clone(),
                page,
            },
            None => State::Home,
        },
        State::Approval { items, page, .. } => State::Approvals {
            items: items.clone(),
            page: *page,
        },
        State::ApprovalPin {
            items, page, index, ..
        } => State::Approval {
            items: items.clone(),
            page: *page,
            index: *index,
        },
        State::MeetingPin { .. } | State::Meeting { .. } => State::Chamas {
            purpose: Purpose::Meeting,
            page: 0,
        },
        State::ChangePinCurrent
        | State::ChangePinNew
        | State::ChangePinConfirm
        | State::Language => State::Home,
    })
}
