//! What the menus know and what they ask for: the facts the handler loads before a hop, the
//! actions it performs for the menus, and what came of them. All plain data.

use chrono::{DateTime, Utc};
use pesachama_domain::{Money, Pin};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Language {
    #[serde(rename = "en")]
    En,
    #[serde(rename = "sw")]
    Sw,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Sw => "sw",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "en" => Some(Self::En),
            "sw" => Some(Self::Sw),
            _ => None,
        }
    }
}

/// What the handler loads each hop: who is dialling, and their chamas.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `None` for a number that is not registered.
    pub member: Option<Member>,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub first_name: String,
    /// Active memberships, in a stable order.
    pub chamas: Vec<ChamaFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChamaFacts {
    pub id: Uuid,
    pub name: String,
    /// The chama's cash balance, in cents.
    pub balance: i64,
    /// What this member has put in, in cents.
    pub contributed: i64,
    /// The agreed contribution, in cents.
    pub contribution: i64,
    pub frequency: Frequency,
    /// Chairperson, treasurer or secretary.
    pub official: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frequency {
    Weekly,
    Biweekly,
    Monthly,
}

impl Frequency {
    pub fn from_code(code: &str) -> Self {
        match code {
            "weekly" => Self::Weekly,
            "biweekly" => Self::Biweekly,
            _ => Self::Monthly,
        }
    }
}

/// A pending withdrawal an official may decide on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWithdrawal {
    pub id: Uuid,
    pub chama_name: String,
    pub requester: String,
    pub amount: i64,
    pub reason: String,
    pub approvals: i32,
    pub required: i32,
}

/// One line of a mini statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    pub at: DateTime<Utc>,
    /// The journal kind: `contribution`, `reversal`, ...
    pub kind: String,
    /// Signed cents: money in is positive.
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meeting {
    pub title: String,
    pub at: DateTime<Utc>,
    pub venue: Option<String>,
}

/// Work the handler does for the menus. Actions carry the PIN typed this hop; they are never
/// stored, and `Pin`'s `Debug` hides the digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Keep a newly chosen PIN (hashed, outside the session state) until it is typed again.
    HoldPin {
        pin: Pin,
    },
    /// Create the member: the PIN typed again must match the held one.
    Register {
        first_name: String,
        last_name: Option<String>,
        language: Language,
        confirm: Pin,
    },
    /// Check the PIN (changing it starts with the current one).
    VerifyPin {
        pin: Pin,
    },
    /// Replace the PIN with the held one, which `confirm` must match.
    ChangePin {
        confirm: Pin,
    },
    SetLanguage {
        language: Language,
    },
    /// PIN, then an STK push request through the outbox.
    Contribute {
        pin: Pin,
        chama: Uuid,
        amount: Money,
    },
    /// PIN, then the member's last statement lines.
    Statement {
        pin: Pin,
        chama: Uuid,
    },
    /// PIN, then a withdrawal request as the member.
    RequestWithdrawal {
        pin: Pin,
        chama: Uuid,
        amount: Money,
        reason: String,
    },
    /// The withdrawals this official may decide on.
    LoadPending,
    /// PIN, then the official's decision.
    Decide {
        pin: Pin,
        request: Uuid,
        approve: bool,
    },
    /// PIN, then the chama's next meeting.
    NextMeeting {
        pin: Pin,
        chama: Uuid,
    },
}

/// What checking a PIN found, when it was not right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinRefusal {
    Wrong {
        remaining: i32,
    },
    /// Locked for about this many more minutes.
    Locked {
        minutes: i64,
    },
    NotSet,
}

/// What came of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The PIN was not accepted; nothing else was done.
    Pin(PinRefusal),
    PinHeld,
    /// The PIN typed again is not the one held (or the held one expired).
    PinMismatch,
    Registered,
    PinVerified,
    PinChanged,
    LanguageSet(Language),
    ContributionQueued,
    Statement {
        lines: Vec<StatementLine>,
        balance: i64,
    },
    WithdrawalRequested {
        required: i32,
    },
    Pending(Vec<PendingWithdrawal>),
    Decided(Decision),
    Meeting {
        chama: Uuid,
        meeting: Option<Meeting>,
    },
    /// A rule refused it; nothing was written.
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Counted; more approvals are needed.
    Counted {
        approvals: i32,
        required: i32,
    },
    /// This approval was the last one: the payout is queued.
    Approved,
    /// Approved, but the chama's balance cannot pay it now.
    Unfunded,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The chama's rules do not allow it now (not enough officials, chama not active, ...).
    Rule,
    /// Not found, or no longer open to the member.
    Gone,
    AlreadyDecided,
    NotAllowed,
    /// M-Pesa is not configured on this server: no prompt can be sent.
    MpesaUnavailable,
    /// The member or the phone had as many M-Pesa prompts as the limit allows for now.
    TooManyPrompts,
}
