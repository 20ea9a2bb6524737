//! Where a session is in the menus. Stored as JSON in `ussd_sessions.state` between hops, so a
//! restarted server carries on; it holds choices and loaded lists, never a PIN.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{Meeting, PendingWithdrawal, StatementLine};

/// Why a chama is being chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    Balances,
    Contribute,
    Statement,
    Withdraw,
    Meeting,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "at", rename_all = "snake_case")]
pub enum State {
    /// A number that is not registered: offer registration.
    Welcome,
    RegisterName,
    RegisterPin {
        first_name: String,
        last_name: Option<String>,
    },
    RegisterConfirm {
        first_name: String,
        last_name: Option<String>,
    },
    Home,
    Chamas {
        purpose: Purpose,
        page: usize,
    },
    /// The PIN before a balance: nothing about a chama's money is shown without it.
    BalancePin {
        chama: Uuid,
    },
    Balance {
        chama: Uuid,
    },
    ContributeAmount {
        chama: Uuid,
    },
    ContributeOther {
        chama: Uuid,
    },
    ContributePin {
        chama: Uuid,
        amount: i64,
    },
    StatementPin {
        chama: Uuid,
    },
    Statement {
        chama: Uuid,
        lines: Vec<StatementLine>,
        balance: i64,
        page: usize,
    },
    WithdrawAmount {
        chama: Uuid,
    },
    WithdrawReason {
        chama: Uuid,
        amount: i64,
    },
    WithdrawPin {
        chama: Uuid,
        amount: i64,
        reason: String,
    },
    Approvals {
        items: Vec<PendingWithdrawal>,
        page: usize,
    },
    Approval {
        items: Vec<PendingWithdrawal>,
        page: usize,
        index: usize,
    },
    ApprovalPin {
        items: Vec<PendingWithdrawal>,
        page: usize,
        index: usize,
        approve: bool,
    },
    /// The PIN before the next meeting (where and when the members gather).
    MeetingPin {
        chama: Uuid,
    },
    Meeting {
        chama: Uuid,
        meeting: Option<Meeting>,
    },
    ChangePinCurrent,
    ChangePinNew,
    ChangePinConfirm,
    Language,
    /// The session is over (an END was sent).
    Ended,
}
