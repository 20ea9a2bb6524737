//! Property test of the money paths: random sequences of contributions (some replayed with their
//! Idempotency-Key, some reusing a key with another body), reversals, withdrawal requests,
//! approvals and rejections, cancellations, cash payouts and failed payouts, all in Umoja and
//! each in a transaction of its own, through the same SQL functions the API calls.
//!
//! A model in Rust predicts every outcome (accepted, or refused with which SQLSTATE) and every
//! balance. After each operation:
//! - the outcome is the model's (`outcome matches the model`);
//! - a refused operation left the books exactly as they were (`a refused operation changes
//!   nothing`): every chama's balance, every member's total, every ledger account, the journals,
//!   postings, transactions, withdrawal requests, decisions, idempotency keys, and the
//!   notifications, outbox jobs and audit entries that go with them;
//! - Umoja's balance, its members' totals, the money in transit and paid out and its number of
//!   journals are the model's (`the books equal the model`);
//! - no money is created or lost (`money is conserved`): what the members have in (their totals)
//!   is exactly the chama's cash plus what is in transit plus what was paid out, and the other
//!   chamas did not move;
//! - no balance is negative and all postings sum to zero (`the ledger balances`).
//!
//! At the end of the sequence every check of `internal.integrity_report()` has no violations.
//!
//! Each case runs on a database of its own, a copy of one seeded database. A failure names the
//! property, the operations run with their outcomes (the last one broke it), and the minimal
//! sequence proptest shrank it to. `PROPTEST_CASES` overrides the number of cases (24);
//! `LEDGER_PROPERTIES_LOG=1` prints every passing case's operations too, to see what is covered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use pesachama_store::PgPool;
use pesachama_store::rls::{DbRole, begin_as};
use pesachama_testkit::TestDb;
use proptest::prelude::*;
use proptest::strategy::{NewTree, ValueTree};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const UMOJA: Uuid = Uuid::from_u128(0xc4a3a000_0000_4000_8000_000000000001);

/// Umoja's members (supabase/seed.sql). The first three are its officials; it needs 2 approvals.
const MEMBERS: [(Uuid, &str); 5] = [
    (
        Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000001),
        "Wanjiku(chair)",
    ),
    (
        Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000003),
        "Akinyi(treasurer)",
    ),
    (
        Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000005),
        "Mwanaisha(secretary)",
    ),
    (
        Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000007),
        "Nafula",
    ),
    (
        Uuid::from_u128(0x5eed0000_0000_4000_8000_000000000009),
        "Chebet",
    ),
];
const OFFICIALS: usize = 3;
/// Umoja's threshold (chamas.required_approvals in the seed).
const REQUIRED_APPROVALS: i32 = 2;
const TREASURER: Uuid = MEMBERS[1].0;

fn name(user: Uuid) -> &'static str {
    MEMBERS
        .iter()
        .find(|(id, _)| *id == user)
        .map_or("someone else", |(_, name)| name)
}

fn is_official(user: Uuid) -> bool {
    MEMBERS[..OFFICIALS].iter().any(|(id, _)| *id == user)
}

// The operations ----------------------------------------------------------------------------------

/// One of Umoja's members, by index into `MEMBERS` (officials are 0..3).
#[derive(Clone, Copy)]
struct Member(usize);

impl Member {
    fn id(self) -> Uuid {
        MEMBERS[self.0].0
    }
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MEMBERS[self.0].1)
    }
}

/// A withdrawal's amount: fixed, or all of Umoja's balance when it is asked but a little (so that
/// sequences also drain the cash, and reversals meet money already spent).
#[derive(Clone, Copy, Debug)]
enum Amount {
    Cents(i64),
    AllBut(i64),
}

/// What proptest generates. `pick` chooses among what exists when the operation runs, counting
/// back from the newest (0 is the newest), so a shrunk sequence still means something; small
/// picks prefer the rows the operation fits (a pending request to decide on, an approved one to
/// pay, a contribution not yet reversed), large ones take any.
#[derive(Clone, Debug)]
enum Op {
    /// The treasurer records a cash contribution, with a fresh Idempotency-Key.
    Contribute { member: Member, amount: i64 },
    /// The treasurer sends an earlier contribution again: same key, same body.
    ReplayContribution { pick: usize },
    /// The treasurer reuses an earlier contribution's key with another amount.
    ReuseKeyOtherAmount { pick: usize, amount: i64 },
    /// An official reverses a contribution (the seed's or one made here).
    Reverse { pick: usize, by: Member },
    /// A member asks for a withdrawal to themselves.
    Request { by: Member, amount: Amount },
    /// An official approves or rejects a withdrawal request.
    Decide {
        pick: usize,
        by: Member,
        approve: bool,
    },
    /// Cancelling a request: by its requester (`by: None`) or by someone else.
    Cancel { pick: usize, by: Option<Member> },
    /// The treasurer marks a request paid in cash.
    MarkPaid { pick: usize },
    /// The payout failed (M-Pesa B2C): internal.settle_disbursement(.., false, ..) as the owner.
    FailPayout { pick: usize },
}

fn member() -> impl Strategy<Value = Member> {
    (0..MEMBERS.len()).prop_map(Member)
}

fn official() -> impl Strategy<Value = Member> {
    (0..OFFICIALS).prop_map(Member)
}

fn op() -> impl Strategy<Value = Op> {
    let contribution = 1i64..=300_000;
    // Mostly affordable, sometimes (nearly) all of the balance, sometimes more than Umoja ever has.
    let withdrawal = prop_oneof![
        3 => (1i64..=400_000).prop_map(Amount::Cents),
        3 => (0i64..=60_000).prop_map(Amount::AllBut),
        1 => (400_001i64..=5_000_000).prop_map(Amount::Cents),
    ];
    prop_oneof![
        4 => (member(), contribution.clone())
            .prop_map(|(member, amount)| Op::Contribute { member, amount }),
        1 => (0..8usize).prop_map(|pick| Op::ReplayContribution { pick }),
        1 => (0..8usize, contribution)
            .prop_map(|(pick, amount)| Op::ReuseKeyOtherAmount { pick, amount }),
        4 => (0..16usize, official()).prop_map(|(pick, by)| Op::Reverse { pick, by }),
        3 => (member(), withdrawal).prop_map(|(by, amount)| Op::Request { by, amount }),
        6 => (0..8usize, official(), prop::bool::weighted(0.8))
            .prop_map(|(pick, by, approve)| Op::Decide { pick, by, approve }),
        1 => (0..8usize, prop::option::weighted(0.25, member()))
            .prop_map(|(pick, by)| Op::Cancel { pick, by }),
        2 => (0..8usize).prop_map(|pick| Op::MarkPaid { pick }),
        2 => (0..8usize).prop_map(|pick| Op::FailPayout { pick }),
    ]
}

/// Sequences of 10 to 40 operations that shrink to as few as one: the vector strategy never
/// shrinks below its minimum length, so this one asks for 1 to 40 and draws again below 10.
#[derive(Debug)]
struct Sequences;

impl Strategy for Sequences {
    type Tree = <prop::collection::VecStrategy<BoxedStrategy<Op>> as Strategy>::Tree;
    type Value = Vec<Op>;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let sequences = prop::collection::vec(op().boxed(), 1..=40);
        loop {
            let tree = sequences.new_tree(runner)?;
            if tree.current().len() >= 10 {
                return Ok(tree);
            }
        }
    }
}

/// An operation made concrete against the current state: who, which row, which key.
#[derive(Clone, Debug)]
enum Step {
    Contribute {
        member: Uuid,
        amount: i64,
        key: String,
    },
    Reverse {
        index: usize,
        by: Uuid,
        key: String,
    },
    Request {
        by: Uuid,
        amount: i64,
        key: String,
    },
    Decide {
        index: usize,
        by: Uuid,
        approve: bool,
    },
    Cancel {
        index: usize,
        by: Uuid,
    },
    MarkPaid {
        index: usize,
    },
    FailPayout {
        index: usize,
    },
    /// Nothing to do (e.g. a replay before any contribution was made here).
    Skip(&'static str),
}

/// The request hash the API would compute from a contribution's body.
fn contribution_hash(member: Uuid, amount: i64) -> String {
    format!("contribution:{member}:{amount}:cash")
}

// The model ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Approved,
    Rejected,
    Cancelled,
    Completed,
    Failed,
    /// Any status the model does not produce (e.g. `expired` from elsewhere).
    Other,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Other => "other",
        }
    }

    fn parse(status: &str) -> Self {
        match status {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "rejected" => Self::Rejected,
            "cancelled" => Self::Cancelled,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            _ => Self::Other,
        }
    }
}

#[derive(Clone, Debug)]
struct Contribution {
    tx: Uuid,
    member: Uuid,
    amount: i64,
    /// The Idempotency-Key it was recorded with (none for the seed's).
    key: Option<String>,
    reversed: bool,
}

#[derive(Clone, Debug)]
struct Request {
    id: Uuid,
    requester: Uuid,
    amount: i64,
    status: Status,
    required: i32,
    approvals: i32,
    rejections: i32,
    decided: BTreeSet<Uuid>,
}

/// What Umoja's books should be.
#[derive(Clone, Debug)]
struct Model {
    cash: i64,
    in_transit: i64,
    paid_out: i64,
    totals: BTreeMap<Uuid, i64>,
    journals: i64,
    contributions: Vec<Contribution>,
    requests: Vec<Request>,
    /// The treasurer's contribution keys: key -> (request hash, transaction).
    contribution_keys: BTreeMap<String, (String, Uuid)>,
    next_key: u32,
}

/// The model's prediction for a step.
#[derive(Clone, Debug)]
enum Expect {
    /// Refused with this SQLSTATE.
    Refused(&'static str),
    Contributed,
    Replayed {
        tx: Uuid,
    },
    Reversed,
    Requested,
    Decided {
        status: Status,
        reserves: bool,
    },
    Cancelled,
    Paid,
    Returned,
    Nothing,
}

impl Model {
    async fn load(books: &Books, pool: &PgPool) -> Self {
        let contributions: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
            "select id, user_id, amount from public.transactions
              where chama_id = $1 and type = 'contribution' and status = 'completed'
              order by created_at, id",
        )
        .bind(UMOJA)
        .fetch_all(pool)
        .await
        .unwrap();
        let requests: Vec<(Uuid, Uuid, i64, String, i32, i32, i32)> = sqlx::query_as(
            "select id, requested_by, amount, status, required_approvals, approvals_count,
                    rejections_count
               from public.disbursement_requests where chama_id = $1 order by created_at, id",
        )
        .bind(UMOJA)
        .fetch_all(pool)
        .await
        .unwrap();
        let decisions: Vec<(Uuid, Uuid)> =
            sqlx::query_as("select request_id, approver_id from public.disbursement_approvals")
                .fetch_all(pool)
                .await
                .unwrap();
        let model = Self {
            cash: books.balance(UMOJA),
            in_transit: books.account(UMOJA, "payouts_in_transit"),
            paid_out: books.account(UMOJA, "disbursements"),
            totals: books.totals(UMOJA),
            journals: books.journals(UMOJA),
            contributions: contributions
                .into_iter()
                .map(|(tx, member, amount)| Contribution {
                    tx,
                    member,
                    amount,
                    key: None,
                    reversed: false,
                })
                .collect(),
            requests: requests
                .into_iter()
                .map(
                    |(id, requester, amount, status, required, approvals, rejections)| Request {
                        id,
                        requester,
                        amount,
                        status: Status::parse(&status),
                        required,
                        approvals,
                        rejections,
                        decided: decisions
                            .iter()
                            .filter(|(request, _)| *request == id)
                            .map(|(_, official)| *official)
                            .collect(),
                    },
                )
                .collect(),
            contribution_keys: BTreeMap::new(),
            next_key: 0,
        };
        assert!(!model.contributions.is_empty() && !model.requests.is_empty());
        model
    }

    fn fresh_key(&mut self) -> String {
        self.next_key += 1;
        format!("prop-key-{}", self.next_key)
    }

    fn resolve(&mut self, op: &Op) -> Step {
        fn newest(len: usize, pick: usize) -> usize {
            len - 1 - pick % len
        }
        /// The first half of the picks choose among the rows the operation fits (the newest
        /// first), when there are any; the second half among all of them, so that refusals
        /// stay common too.
        fn choose(len: usize, half: usize, fits: impl Fn(usize) -> bool, pick: usize) -> usize {
            let fitting: Vec<usize> = (0..len).filter(|&i| fits(i)).collect();
            if pick < half && !fitting.is_empty() {
                fitting[newest(fitting.len(), pick)]
            } else {
                newest(len, pick)
            }
        }
        let status = |status: Status| {
            let requests = &self.requests;
            move |i: usize| requests[i].status == status
        };
        let keyed: Vec<usize> = (0..self.contributions.len())
            .filter(|&i| self.contributions[i].key.is_some())
            .collect();
        let requests = self.requests.len();
        match *op {
            Op::Contribute { member, amount } => Step::Contribute {
                member: member.id(),
                amount,
                key: self.fresh_key(),
            },
            Op::ReplayContribution { pick } | Op::ReuseKeyOtherAmount { pick, .. } => {
                if keyed.is_empty() {
                    return Step::Skip("no contribution with a key to replay yet");
                }
                let earlier = &self.contributions[keyed[newest(keyed.len(), pick)]];
                let amount = match *op {
                    Op::ReuseKeyOtherAmount { amount, .. } if amount == earlier.amount => {
                        amount + 1
                    }
                    Op::ReuseKeyOtherAmount { amount, .. } => amount,
                    _ => earlier.amount,
                };
                Step::Contribute {
                    member: earlier.member,
                    amount,
                    key: earlier.key.clone().unwrap(),
                }
            }
            Op::Reverse { pick, by } => Step::Reverse {
                index: choose(
                    self.contributions.len(),
                    8,
                    |i| !self.contributions[i].reversed,
                    pick,
                ),
                by: by.id(),
                key: self.fresh_key(),
            },
            Op::Request { by, amount } => Step::Request {
                by: by.id(),
                amount: match amount {
                    Amount::Cents(cents) => cents,
                    Amount::AllBut(left) => (self.cash - left).max(1),
                },
                key: self.fresh_key(),
            },
            Op::Decide { pick, by, approve } => Step::Decide {
                index: choose(requests, 4, status(Status::Pending), pick),
                by: by.id(),
                approve,
            },
            Op::Cancel { pick, by } => {
                let index = choose(requests, 4, status(Status::Pending), pick);
                Step::Cancel {
                    index,
                    by: by.map_or(self.requests[index].requester, Member::id),
                }
            }
            Op::MarkPaid { pick } => Step::MarkPaid {
                index: choose(requests, 4, status(Status::Approved), pick),
            },
            Op::FailPayout { pick } => Step::FailPayout {
                index: choose(requests, 4, status(Status::Approved), pick),
            },
        }
    }

    fn describe(&self, step: &Step) -> String {
        let request = |index: usize| {
            let r = &self.requests[index];
            format!(
                "request #{index} (by {}, {} cents, {}, {}/{} approvals, {} rejections)",
                name(r.requester),
                r.amount,
                r.status.as_str(),
                r.approvals,
                r.required,
                r.rejections
            )
        };
        match step {
            Step::Contribute {
                member,
                amount,
                key,
            } => format!(
                "treasurer records {amount} cents for {} with key {key}",
                name(*member)
            ),
            Step::Reverse { index, by, .. } => {
                let c = &self.contributions[*index];
                format!(
                    "{} reverses contribution #{index} ({} cents for {}{}{})",
                    name(*by),
                    c.amount,
                    name(c.member),
                    if c.key.is_none() {
                        ", from the seed"
                    } else {
                        ""
                    },
                    if c.reversed { ", already reversed" } else { "" }
                )
            }
            Step::Request { by, amount, .. } => {
                format!("{} requests a withdrawal of {amount} cents", name(*by))
            }
            Step::Decide { index, by, approve } => format!(
                "{} {} {}",
                name(*by),
                if *approve { "approves" } else { "rejects" },
                request(*index)
            ),
            Step::Cancel { index, by } => format!("{} cancels {}", name(*by), request(*index)),
            Step::MarkPaid { index } => format!("treasurer marks paid {}", request(*index)),
            Step::FailPayout { index } => format!("payout fails for {}", request(*index)),
            Step::Skip(why) => format!("(skipped: {why})"),
        }
    }

    fn predict(&self, step: &Step) -> Expect {
        match step {
            Step::Contribute {
                member,
                amount,
                key,
            } => match self.contribution_keys.get(key) {
                Some((hash, tx)) if *hash == contribution_hash(*member, *amount) => {
                    Expect::Replayed { tx: *tx }
                }
                Some(_) => Expect::Refused("PX422"),
                None => Expect::Contributed,
            },
            Step::Reverse { index, .. } => {
                let c = &self.contributions[*index];
                if c.reversed {
                    Expect::Refused("P0001")
                } else if self.cash < c.amount {
                    // The money was spent (reserved for a withdrawal): cash cannot go negative.
                    Expect::Refused("23514")
                } else {
                    Expect::Reversed
                }
            }
            Step::Request { .. } => Expect::Requested,
            Step::Decide { index, by, approve } => {
                let r = &self.requests[*index];
                if *by == r.requester {
                    Expect::Refused("42501")
                } else if r.status != Status::Pending {
                    Expect::Refused("P0001")
                } else if r.decided.contains(by) {
                    Expect::Refused("PX409")
                } else if *approve {
                    if r.approvals + 1 < r.required {
                        Expect::Decided {
                            status: Status::Pending,
                            reserves: false,
                        }
                    } else if self.cash < r.amount {
                        Expect::Decided {
                            status: Status::Failed,
                            reserves: false,
                        }
                    } else {
                        Expect::Decided {
                            status: Status::Approved,
                            reserves: true,
                        }
                    }
                } else {
                    // The officials other than the requester.
                    let eligible = OFFICIALS as i32 - i32::from(is_official(r.requester));
                    let status = if eligible - (r.rejections + 1) < r.required {
                        Status::Rejected
                    } else {
                        Status::Pending
                    };
                    Expect::Decided {
                        status,
                        reserves: false,
                    }
                }
            }
            Step::Cancel { index, by } => {
                let r = &self.requests[*index];
                if *by != r.requester {
                    Expect::Refused("42501")
                } else if r.status != Status::Pending {
                    Expect::Refused("P0001")
                } else {
                    Expect::Cancelled
                }
            }
            Step::MarkPaid { index } | Step::FailPayout { index } => {
                if self.requests[*index].status != Status::Approved {
                    Expect::Refused("P0001")
                } else if matches!(step, Step::MarkPaid { .. }) {
                    Expect::Paid
                } else {
                    Expect::Returned
                }
            }
            Step::Skip(_) => Expect::Nothing,
        }
    }

    /// Applies an accepted step, checking the function's answer on the way.
    fn apply(&mut self, step: &Step, expect: &Expect, answer: &Value) -> Result<(), String> {
        let status_is = |status: Status| -> Result<(), String> {
            let got = answer["status"].as_str().unwrap_or_default();
            if got == status.as_str() {
                Ok(())
            } else {
                Err(format!(
                    "the request is {got}, the model says {}",
                    status.as_str()
                ))
            }
        };
        match (step, expect) {
            (
                Step::Contribute {
                    member,
                    amount,
                    key,
                },
                Expect::Contributed,
            ) => {
                let tx = uuid_of(&answer["transaction"]["id"])?;
                if answer["replayed"] != json!(false) || answer["transaction"]["amount"] != *amount
                {
                    return Err(format!("unexpected answer {answer}"));
                }
                self.cash += amount;
                *self.totals.entry(*member).or_default() += amount;
                self.journals += 1;
                self.contribution_keys
                    .insert(key.clone(), (contribution_hash(*member, *amount), tx));
                self.contributions.push(Contribution {
                    tx,
                    member: *member,
                    amount: *amount,
                    key: Some(key.clone()),
                    reversed: false,
                });
            }
            (Step::Contribute { .. }, Expect::Replayed { tx }) => {
                if answer["replayed"] != json!(true)
                    || uuid_of(&answer["transaction"]["id"])? != *tx
                {
                    return Err(format!(
                        "a replay should answer the first transaction {tx}: {answer}"
                    ));
                }
            }
            (Step::Reverse { index, .. }, Expect::Reversed) => {
                let c = &mut self.contributions[*index];
                if answer["replayed"] != json!(false)
                    || answer["transaction"]["type"] != "reversal"
                    || answer["transaction"]["amount"] != c.amount
                    || uuid_of(&answer["transaction"]["reverses_id"])? != c.tx
                {
                    return Err(format!("unexpected answer {answer}"));
                }
                c.reversed = true;
                self.cash -= c.amount;
                *self.totals.entry(c.member).or_default() -= c.amount;
                self.journals += 1;
            }
            (Step::Request { by, amount, .. }, Expect::Requested) => {
                let request = &answer["request"];
                if answer["replayed"] != json!(false)
                    || request["status"] != "pending"
                    || request["amount"] != *amount
                    || request["required_approvals"] != REQUIRED_APPROVALS
                {
                    return Err(format!("unexpected answer {answer}"));
                }
                self.requests.push(Request {
                    id: uuid_of(&request["id"])?,
                    requester: *by,
                    amount: *amount,
                    status: Status::Pending,
                    required: REQUIRED_APPROVALS,
                    approvals: 0,
                    rejections: 0,
                    decided: BTreeSet::new(),
                });
            }
            (Step::Decide { index, by, approve }, Expect::Decided { status, reserves }) => {
                status_is(*status)?;
                let r = &mut self.requests[*index];
                r.decided.insert(*by);
                if *approve {
                    r.approvals += 1;
                } else {
                    r.rejections += 1;
                }
                r.status = *status;
                if *reserves {
                    self.cash -= r.amount;
                    self.in_transit += r.amount;
                    self.journals += 1;
                }
            }
            (Step::Cancel { index, .. }, Expect::Cancelled) => {
                status_is(Status::Cancelled)?;
                self.requests[*index].status = Status::Cancelled;
            }
            (Step::MarkPaid { index }, Expect::Paid) => {
                status_is(Status::Completed)?;
                let r = &mut self.requests[*index];
                r.status = Status::Completed;
                self.in_transit -= r.amount;
                self.paid_out += r.amount;
                self.journals += 1;
            }
            (Step::FailPayout { index }, Expect::Returned) => {
                status_is(Status::Failed)?;
                let r = &mut self.requests[*index];
                r.status = Status::Failed;
                self.in_transit -= r.amount;
                self.cash += r.amount;
                self.journals += 1;
            }
            (_, Expect::Nothing) => {}
            (step, expect) => unreachable!("{step:?} cannot be {expect:?}"),
        }
        Ok(())
    }
}

fn uuid_of(value: &Value) -> Result<Uuid, String> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a uuid: {value}"))
}

// Running a step ----------------------------------------------------------------------------------

/// A refusal: the SQLSTATE and the message.
#[derive(Debug)]
struct Refusal {
    code: String,
    message: String,
}

fn refusal(err: sqlx::Error) -> Refusal {
    let db = err
        .as_database_error()
        .unwrap_or_else(|| panic!("not a database error (the test itself broke): {err}"));
    Refusal {
        code: db.code().unwrap_or_default().into_owned(),
        message: db.message().to_owned(),
    }
}

type Query<'q> = sqlx::query::QueryScalar<'q, sqlx::Postgres, Value, sqlx::postgres::PgArguments>;

/// Runs one call in a transaction of its own: as a signed-in user, or as the pool's owner (the
/// worker's path). A refusal rolls the transaction back before it is reported: dropped, the
/// transaction would be rolled back later, on its connection's next use, and until then it
/// would hold its locks (an Idempotency-Key's advisory lock among them), so the next step, on
/// another connection, could find its key "in progress".
async fn call(pool: &PgPool, caller: Option<Uuid>, query: Query<'_>) -> Result<Value, Refusal> {
    let mut tx = match caller {
        Some(user) => begin_as(
            pool,
            DbRole::Authenticated,
            &json!({"sub": user, "role": "authenticated", "aud": "authenticated"}),
        )
        .await
        .unwrap(),
        None => pool.begin().await.unwrap(),
    };
    let answer = match query.fetch_one(&mut *tx).await {
        Ok(answer) => answer,
        Err(err) => {
            tx.rollback().await.unwrap();
            return Err(refusal(err));
        }
    };
    tx.commit().await.map_err(refusal)?;
    Ok(answer)
}

async fn execute(pool: &PgPool, model: &Model, step: &Step) -> Result<Value, Refusal> {
    let request_id = |index: usize| model.requests[index].id;
    match step {
        Step::Contribute {
            member,
            amount,
            key,
        } => {
            let query = sqlx::query_scalar(
                "select public.record_manual_contribution($1, $2, $3, 'cash', $4,
                                                          'property test', $4, $5)",
            )
            .bind(UMOJA)
            .bind(*member)
            .bind(*amount)
            .bind(key.clone())
            .bind(contribution_hash(*member, *amount));
            call(pool, Some(TREASURER), query).await
        }
        Step::Reverse { index, by, key } => {
            let tx = model.contributions[*index].tx;
            let query = sqlx::query_scalar(
                "select public.reverse_transaction($1, 'Recorded by mistake', $2, $3)",
            )
            .bind(tx)
            .bind(key.clone())
            .bind(format!("reversal:{tx}"));
            call(pool, Some(*by), query).await
        }
        Step::Request { by, amount, key } => {
            let query = sqlx::query_scalar(
                "select public.request_disbursement($1, $2, 'School fees', null, $3, $4)",
            )
            .bind(UMOJA)
            .bind(*amount)
            .bind(key.clone())
            .bind(format!("disbursement:{amount}"));
            call(pool, Some(*by), query).await
        }
        Step::Decide { index, by, approve } => {
            let query = sqlx::query_scalar("select public.decide_disbursement($1, $2, null)")
                .bind(request_id(*index))
                .bind(if *approve { "approve" } else { "reject" });
            call(pool, Some(*by), query).await
        }
        Step::Cancel { index, by } => {
            let query = sqlx::query_scalar("select public.cancel_disbursement($1)")
                .bind(request_id(*index));
            call(pool, Some(*by), query).await
        }
        Step::MarkPaid { index } => {
            let query = sqlx::query_scalar("select public.mark_disbursement_paid($1, 'RCPT-0001')")
                .bind(request_id(*index));
            call(pool, Some(TREASURER), query).await
        }
        Step::FailPayout { index } => {
            let query = sqlx::query_scalar(
                "select internal.settle_disbursement($1, false, null, 'B2C: not paid', null)",
            )
            .bind(request_id(*index));
            call(pool, None, query).await
        }
        Step::Skip(_) => Ok(Value::Null),
    }
}

// The books ---------------------------------------------------------------------------------------

/// Everything a money movement can touch, across every chama.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Books {
    balances: Vec<(Uuid, i64)>,
    member_totals: Vec<(Uuid, Uuid, i64)>,
    /// (id, chama, kind, balance)
    accounts: Vec<(Uuid, Uuid, String, i64)>,
    /// journals per chama
    journals: Vec<(Uuid, i64)>,
    postings: i64,
    postings_sum: i64,
    /// (id, status)
    transactions: Vec<(Uuid, String)>,
    /// (id, status, approvals, rejections)
    requests: Vec<(Uuid, String, i32, i32)>,
    decisions: i64,
    idempotency_keys: i64,
    /// What goes with a money movement: notifications, outbox jobs, audit entries.
    side_effects: (i64, i64, i64),
}

impl Books {
    async fn read(pool: &PgPool) -> Self {
        let count = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(pool)
                .await
                .unwrap()
        };
        Self {
            balances: sqlx::query_as("select id, balance from public.chamas order by id")
                .fetch_all(pool)
                .await
                .unwrap(),
            member_totals: sqlx::query_as(
                "select chama_id, user_id, contributed_total
                   from public.chama_members order by 1, 2",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
            accounts: sqlx::query_as(
                "select id, chama_id, kind, balance from internal.ledger_accounts order by id",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
            journals: sqlx::query_as(
                "select chama_id, count(*) from internal.journals group by chama_id order by 1",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
            postings: count("select count(*) from internal.postings").await,
            postings_sum: count("select coalesce(sum(amount), 0)::bigint from internal.postings")
                .await,
            transactions: sqlx::query_as("select id, status from public.transactions order by id")
                .fetch_all(pool)
                .await
                .unwrap(),
            requests: sqlx::query_as(
                "select id, status, approvals_count, rejections_count
                   from public.disbursement_requests order by id",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
            decisions: count("select count(*) from public.disbursement_approvals").await,
            idempotency_keys: count("select count(*) from internal.idempotency_keys").await,
            side_effects: (
                count("select count(*) from public.notifications").await,
                count("select count(*) from internal.outbox").await,
                count("select count(*) from public.audit_logs").await,
            ),
        }
    }

    fn balance(&self, chama: Uuid) -> i64 {
        self.balances
            .iter()
            .find(|(id, _)| *id == chama)
            .map_or(0, |(_, balance)| *balance)
    }

    fn account(&self, chama: Uuid, kind: &str) -> i64 {
        self.accounts
            .iter()
            .filter(|(_, c, k, _)| *c == chama && k == kind)
            .map(|(_, _, _, balance)| balance)
            .sum()
    }

    fn totals(&self, chama: Uuid) -> BTreeMap<Uuid, i64> {
        self.member_totals
            .iter()
            .filter(|(c, _, _)| *c == chama)
            .map(|(_, user, total)| (*user, *total))
            .collect()
    }

    fn journals(&self, chama: Uuid) -> i64 {
        self.journals
            .iter()
            .find(|(c, _)| *c == chama)
            .map_or(0, |(_, n)| *n)
    }

    /// What differs from `other`, field by field.
    fn diff(&self, other: &Self) -> String {
        fn rows<T: fmt::Debug + PartialEq>(name: &str, a: &[T], b: &[T], out: &mut Vec<String>) {
            let gone: Vec<_> = a.iter().filter(|row| !b.contains(row)).collect();
            let new: Vec<_> = b.iter().filter(|row| !a.contains(row)).collect();
            if !gone.is_empty() || !new.is_empty() {
                out.push(format!("{name}: before {gone:?}, after {new:?}"));
            }
        }
        let mut out = Vec::new();
        rows("balances", &self.balances, &other.balances, &mut out);
        rows(
            "member totals",
            &self.member_totals,
            &other.member_totals,
            &mut out,
        );
        rows("accounts", &self.accounts, &other.accounts, &mut out);
        rows("journals", &self.journals, &other.journals, &mut out);
        rows(
            "transactions",
            &self.transactions,
            &other.transactions,
            &mut out,
        );
        rows("requests", &self.requests, &other.requests, &mut out);
        for (name, a, b) in [
            ("postings", self.postings, other.postings),
            ("sum of postings", self.postings_sum, other.postings_sum),
            ("decisions", self.decisions, other.decisions),
            (
                "idempotency keys",
                self.idempotency_keys,
                other.idempotency_keys,
            ),
        ] {
            if a != b {
                out.push(format!("{name}: {a} -> {b}"));
            }
        }
        if self.side_effects != other.side_effects {
            out.push(format!(
                "(notifications, outbox jobs, audit entries): {:?} -> {:?}",
                self.side_effects, other.side_effects
            ));
        }
        out.join("\n")
    }
}

// The properties ----------------------------------------------------------------------------------

/// A violated property, with what was seen.
fn violated(property: &str, detail: impl fmt::Display) -> String {
    format!("PROPERTY VIOLATED: {property}\n{detail}")
}

/// The properties that hold after every step.
fn check_books(model: &Model, start: &Books, books: &Books) -> Result<(), String> {
    let db = (
        books.balance(UMOJA),
        books.account(UMOJA, "cash"),
        books.account(UMOJA, "payouts_in_transit"),
        books.account(UMOJA, "disbursements"),
        books.journals(UMOJA),
    );
    let expected = (
        model.cash,
        model.cash,
        model.in_transit,
        model.paid_out,
        model.journals,
    );
    if db != expected {
        return Err(violated(
            "the books equal the model",
            format!(
                "(chamas.balance, cash account, in transit, paid out, journals): \
                 database {db:?}, model {expected:?}"
            ),
        ));
    }
    if books.totals(UMOJA) != model.totals {
        return Err(violated(
            "the books equal the model",
            format!(
                "members' contributed totals: database {:?}, model {:?}",
                books.totals(UMOJA),
                model.totals
            ),
        ));
    }

    let members_in: i64 = books.totals(UMOJA).values().sum();
    let held = books.balance(UMOJA)
        + books.account(UMOJA, "payouts_in_transit")
        + books.account(UMOJA, "disbursements");
    if members_in != held {
        return Err(violated(
            "money is conserved",
            format!(
                "the members have {members_in} cents in, but cash + in transit + paid out is {held}"
            ),
        ));
    }
    let others = |b: &Books| -> Vec<(Uuid, i64)> {
        b.balances
            .iter()
            .copied()
            .filter(|(id, _)| *id != UMOJA)
            .collect()
    };
    if others(books) != others(start) {
        return Err(violated(
            "money is conserved",
            format!(
                "other chamas moved: {:?} -> {:?}",
                others(start),
                others(books)
            ),
        ));
    }

    if let Some(negative) = books.balances.iter().find(|(_, balance)| *balance < 0) {
        return Err(violated(
            "the ledger balances",
            format!("a negative balance: {negative:?}"),
        ));
    }
    if model.cash < 0 || model.in_transit < 0 {
        return Err(violated(
            "the ledger balances",
            format!("the model went negative: {model:?}"),
        ));
    }
    if books.postings_sum != 0 {
        return Err(violated(
            "the ledger balances",
            format!("all postings sum to {}", books.postings_sum),
        ));
    }
    Ok(())
}

// The databases -----------------------------------------------------------------------------------

/// The seeded database every case's database is cloned from. Seeding hashes ten demo passwords
/// with bcrypt, most of a second; a clone takes a fraction of that, which matters for 24 cases
/// and more for shrinking a failure.
struct Seeded {
    db: TestDb,
}

impl Seeded {
    async fn new() -> Self {
        let db = TestDb::new().await;
        pesachama_store::seed_demo(&db.pool).await.unwrap();
        // A template may have no connections while it is cloned.
        db.pool.close().await;
        Self { db }
    }

    /// A database of its own for one case, a copy of the seeded one.
    async fn copy(&self) -> CaseDb {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Named like the test kit's, so that a copy left behind by a crash is swept as stale.
        let name = format!("test_{seconds}_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(pesachama_testkit::admin_url())
            .await
            .unwrap();
        sqlx::raw_sql(&format!(
            "create database {name} template {} strategy wal_log",
            self.db.name
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();
        let (base, _) = self.db.url.rsplit_once('/').unwrap();
        let pool = pesachama_store::connect(&format!("{base}/{name}"), 5)
            .await
            .unwrap();
        CaseDb { pool, name }
    }
}

struct CaseDb {
    pool: PgPool,
    name: String,
}

impl CaseDb {
    async fn remove(self) {
        self.pool.close().await;
        let mut admin = PgConnection::connect(pesachama_testkit::admin_url())
            .await
            .unwrap();
        sqlx::raw_sql(&format!(
            "drop database if exists {} with (force)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();
    }
}

// A case ------------------------------------------------------------------------------------------

/// One case: a fresh copy of the seeded database, the operations in order, the properties after
/// each, and the integrity report at the end.
async fn run_case(seeded: &Seeded, ops: &[Op]) -> Result<(), String> {
    let db = seeded.copy().await;
    let result = run_ops(&db.pool, ops).await;
    db.remove().await;
    result
}

async fn run_ops(pool: &PgPool, ops: &[Op]) -> Result<(), String> {
    let start = Books::read(pool).await;
    let mut model = Model::load(&start, pool).await;
    let mut books = start.clone();
    let mut log = Vec::new();
    let with_log = |log: &[String], message: String| {
        format!(
            "{message}\n\nthe operations run (the last one broke it):\n{}",
            log.join("\n")
        )
    };
    check_books(&model, &start, &books).map_err(|err| with_log(&log, err))?;

    for (n, op) in ops.iter().enumerate() {
        let step = model.resolve(op);
        let description = model.describe(&step);
        let expect = model.predict(&step);
        let outcome = execute(pool, &model, &step).await;
        let after = Books::read(pool).await;
        log.push(format!(
            "#{n:02} {description}\n      => {}",
            match &outcome {
                Ok(answer) if answer.is_null() => "nothing".to_owned(),
                Ok(answer) => format!(
                    "ok{}",
                    answer["status"]
                        .as_str()
                        .or(answer["request"]["status"].as_str())
                        .map(|status| format!(" ({status})"))
                        .unwrap_or_default()
                ),
                Err(refused) => format!("refused {}: {}", refused.code, refused.message),
            }
        ));
        match (&outcome, &expect) {
            (Err(refused), Expect::Refused(code)) if refused.code == *code => {}
            (Ok(_), expected) if !matches!(expected, Expect::Refused(_)) => {}
            _ => {
                return Err(with_log(
                    &log,
                    violated(
                        "outcome matches the model",
                        format!("the model expected {expect:?}"),
                    ),
                ));
            }
        }
        match &outcome {
            Err(_) => {
                if after != books {
                    return Err(with_log(
                        &log,
                        violated("a refused operation changes nothing", books.diff(&after)),
                    ));
                }
            }
            Ok(answer) => {
                model
                    .apply(&step, &expect, answer)
                    .map_err(|err| with_log(&log, violated("outcome matches the model", err)))?;
            }
        }
        check_books(&model, &start, &after).map_err(|err| with_log(&log, err))?;
        books = after;
    }

    let report = pesachama_store::integrity::report(pool).await.unwrap();
    let failed: Vec<_> = report.iter().filter(|check| !check.passed()).collect();
    if report.is_empty() || !failed.is_empty() {
        return Err(with_log(
            &log,
            violated(
                "integrity_report() has no violations",
                format!("{failed:#?}"),
            ),
        ));
    }
    if std::env::var_os("LEDGER_PROPERTIES_LOG").is_some() {
        eprintln!("a passing case:\n{}\n", log.join("\n"));
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(24)
}

#[test]
fn random_money_operations_keep_the_books_balanced() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seeded = runtime.block_on(Seeded::new());
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        // No regression files in the source tree; a failure prints its minimal sequence.
        failure_persistence: None,
        // Each case is a fresh database and tens of transactions (about half a second): shrinking
        // is bounded in time, to report well within nextest's 120 s limit.
        max_shrink_iters: 1_000,
        max_shrink_time: 45_000,
        ..Config::default()
    });
    let result = runner.run(&Sequences, |ops| {
        runtime
            .block_on(run_case(&seeded, &ops))
            .map_err(TestCaseError::fail)
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
