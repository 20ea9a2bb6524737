//! The other tables: chamas, memberships, meetings and their registers, withdrawal requests and
//! their approvals, notifications, device tokens, the legacy audit trail.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::batch::Batch;
use crate::clean;
use crate::ids;
use crate::model::{
    self, AuditLog, Chama, Device, Disbursement, Meeting, Member, Notification, text,
};
use crate::pgtext::{self, some};
use crate::target::{self, Issue};

/// Created and updated in UTC, updated never before created.
fn stamps(
    table: &'static str,
    id: &str,
    created: &Option<String>,
    updated: &Option<String>,
    out: &mut Batch,
) -> Result<(String, String), String> {
    let created = clean::nairobi_to_utc(text(created))?;
    let (updated, fixed) =
        clean::updated_not_before_created(&created, &clean::nairobi_to_utc(text(updated))?);
    if fixed {
        out.issue(Issue::fixed(
            table,
            id,
            "updated_at before created_at: set to created_at",
        ));
    }
    Ok((created, updated))
}

fn utc_opt(value: &Option<String>) -> Result<Option<String>, String> {
    value.as_deref().map(clean::nairobi_to_utc).transpose()
}

/// A short, stable join code for a migrated chama (legacy had none).
fn join_code(chama: &str) -> String {
    ids::derived(&format!("join:{chama}")).simple().to_string()[..10].to_ascii_uppercase()
}

/// `chairless`: the active chamas no active membership of which moves (no members, or all
/// left): the target wants an active chairperson in every active chama, so such a chama is
/// carried as `suspended` (dormant), reported for review.
pub fn chama(row: &Chama, users: &HashSet<Uuid>, chairless: &HashSet<Uuid>, out: &mut Batch) {
    let table = Chama::TABLE;
    let id = text(&row.id).to_owned();
    if let Err(reason) = chama_inner(row, users, chairless, out) {
        out.issue(Issue::rejected(table, &id, reason));
    }
}

fn chama_inner(
    row: &Chama,
    users: &HashSet<Uuid>,
    chairless: &HashSet<Uuid>,
    out: &mut Batch,
) -> Result<(), String> {
    let table = Chama::TABLE;
    let id = text(&row.id).to_owned();
    let (created, updated) = stamps(table, &id, &row.created_at, &row.updated_at, out)?;
    let mut fix = |reason: &str| out.issue(Issue::fixed(table, &id, reason));
    let mut name = pesachama_domain::text::without_hidden(text(&row.name))
        .trim()
        .to_owned();
    if !(2..=150).contains(&name.chars().count()) {
        fix("name too short or long: replaced");
        name = format!("Chama {}", &id[..8]);
    }
    let kind = clean::chama_type(text(&row.chama_type)).unwrap_or_else(|| {
        fix("unknown chama type: savings");
        "savings"
    });
    if clean::chama_type(text(&row.chama_type)).is_some_and(|k| k != text(&row.chama_type)) {
        fix("chama type spelled differently: normalised");
    }
    let frequency = clean::frequency(text(&row.contribution_frequency)).unwrap_or_else(|| {
        fix("unknown contribution frequency: monthly");
        "monthly"
    });
    if clean::frequency(text(&row.contribution_frequency))
        .is_some_and(|f| f != text(&row.contribution_frequency))
    {
        fix("contribution frequency spelled differently: normalised");
    }
    let mut amount = clean::kes_to_cents(text(&row.contribution_amount))?;
    let amount_fixed = amount <= 0;
    if amount_fixed {
        amount = 100;
    }
    let mut status = clean::chama_status(text(&row.status)).unwrap_or_else(|| {
        fix("unknown status: active");
        "active"
    });
    let paybill = row.paybill_account.as_deref().and_then(|p| {
        let cleaned = p.trim().to_ascii_uppercase();
        let ok =
            (3..=12).contains(&cleaned.len()) && cleaned.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok {
            fix("paybill account malformed: dropped");
        }
        ok.then_some(cleaned)
    });
    let approvals: i64 = text(&row.required_approvals).parse().unwrap_or(2).max(1);
    let creator = row
        .created_by
        .as_deref()
        .and_then(|u| u.parse::<Uuid>().ok())
        .filter(|u| users.contains(u));
    if amount_fixed {
        out.issue(
            Issue::fixed(
                table,
                &id,
                "contribution amount not positive: set to KES 1.00 (review)",
            )
            .with_detail(format!(
                "contribution amount {:?} is not positive: KES 1.00 until the officials set it",
                text(&row.contribution_amount)
            )),
        );
    }
    if status == "active" && id.parse::<Uuid>().is_ok_and(|c| chairless.contains(&c)) {
        status = "suspended";
        out.issue(
            Issue::fixed(
                table,
                &id,
                "active chama without an active member to chair it: carried as suspended (dormant) (review)",
            )
            .with_detail(format!(
                "legacy status {:?}, no active membership: the target needs an active chairperson in every active chama, so it is suspended; reactivate it once a member joins and takes the chair",
                text(&row.status)
            )),
        );
    }
    let deleted = utc_opt(&row.deleted_at)?;
    out.push(
        target::CHAMAS,
        vec![
            some(&id),
            some(name),
            row.description.clone(),
            some(kind),
            row.registration_number.clone(),
            some(amount),
            some(frequency),
            some(0),
            paybill,
            some(join_code(&id)),
            some(approvals),
            some(status),
            creator.map(|u| u.to_string()),
            some(&id),
            some(&created),
            some(&updated),
            (status == "closed").then(|| updated.clone()),
            deleted,
        ],
    );
    Ok(())
}

/// The memberships of one chama (all of them at once: the one-chairperson rule is per chama).
/// `chama_active` is `None` when the chama does not exist (hard-deleted in legacy).
pub fn members(chama_active: Option<bool>, rows: &[Member], out: &mut Batch) {
    let table = Member::TABLE;
    let Some(active) = chama_active else {
        for row in rows {
            out.issue(Issue::rejected(
                table,
                text(&row.id),
                "chama does not exist (hard-deleted in legacy)",
            ));
        }
        return;
    };
    struct M {
        id: String,
        chama: String,
        user: String,
        role: &'static str,
        status: &'static str,
        joined: String,
    }
    let mut ms = Vec::new();
    for row in rows {
        let id = text(&row.id).to_owned();
        let joined = match clean::nairobi_to_utc(text(&row.joined_at)) {
            Ok(j) => j,
            Err(reason) => {
                out.issue(Issue::rejected(table, &id, reason));
                continue;
            }
        };
        let role = clean::member_role(text(&row.role)).unwrap_or_else(|| {
            out.issue(Issue::fixed(table, &id, "unknown role: member"));
            "member"
        });
        let status = clean::member_status(text(&row.status)).unwrap_or_else(|| {
            out.issue(Issue::fixed(
                table,
                &id,
                "unknown membership status: active",
            ));
            "active"
        });
        ms.push(M {
            id,
            chama: text(&row.chama_id).to_owned(),
            user: text(&row.user_id).to_owned(),
            role,
            status,
            joined,
        });
    }
    ms.sort_by(|a, b| (&a.joined, &a.id).cmp(&(&b.joined, &b.id)));
    let holds = |m: &M| matches!(m.status, "active" | "suspended");
    let mut chair_seen = false;
    for m in ms
        .iter_mut()
        .filter(|m| m.role == "chairperson" && holds(m))
    {
        if chair_seen {
            m.role = "member";
            out.issue(Issue::fixed(
                table,
                &m.id,
                "second chairperson: made a member",
            ));
        }
        chair_seen = true;
    }
    if active
        && !ms
            .iter()
            .any(|m| m.role == "chairperson" && m.status == "active")
    {
        let pick = ms
            .iter()
            .position(|m| m.status == "active" && m.role != "member")
            .or_else(|| ms.iter().position(|m| m.status == "active"));
        if let Some(i) = pick {
            // A suspended chairperson also holds the chair: hand it to an active member.
            for m in ms.iter_mut().filter(|m| m.role == "chairperson") {
                m.role = "member";
            }
            ms[i].role = "chairperson";
            out.issue(Issue::fixed(
                table,
                &ms[i].id,
                "active chama without an active chairperson: made chairperson",
            ));
        }
    }
    for m in ms {
        let legacy: i64 = m.id.parse().unwrap_or_default();
        out.push(
            target::MEMBERS,
            vec![
                some(ids::legacy("chama_members", legacy)),
                some(m.chama),
                some(m.user),
                some(m.role),
                some(m.status),
                some(0),
                some(&m.joined),
                None,
                some(&m.joined),
                some(&m.joined),
            ],
        );
    }
}

pub fn meeting(row: &Meeting, users: &HashSet<Uuid>, out: &mut Batch) {
    if let Err(reason) = meeting_inner(row, users, out) {
        out.issue(Issue::rejected(Meeting::TABLE, text(&row.id), reason));
    }
}

fn meeting_inner(row: &Meeting, users: &HashSet<Uuid>, out: &mut Batch) -> Result<(), String> {
    let table = Meeting::TABLE;
    let id = text(&row.id).to_owned();
    let (created, updated) = stamps(table, &id, &row.created_at, &row.updated_at, out)?;
    let scheduled = clean::nairobi_to_utc(text(&row.scheduled_for))?;
    let mut title = text(&row.title).trim().to_owned();
    if !(2..=200).contains(&title.chars().count()) {
        out.issue(Issue::fixed(table, &id, "title too short: replaced"));
        title = "Meeting".into();
    }
    let duration = text(&row.duration_minutes)
        .parse::<i64>()
        .ok()
        .filter(|d| (1..=1440).contains(d))
        .unwrap_or(60);
    let kind = clean::meeting_type(text(&row.meeting_type)).unwrap_or("physical");
    let status = clean::meeting_status(text(&row.status)).unwrap_or_else(|| {
        out.issue(Issue::fixed(
            table,
            &id,
            "unknown meeting status: scheduled",
        ));
        "scheduled"
    });
    if row.recording_url.is_some() {
        out.issue(Issue::fixed(
            table,
            &id,
            "recording URL not carried (old S3 object; upload to storage)",
        ));
    }
    let creator = row
        .created_by
        .as_deref()
        .and_then(|u| u.parse::<Uuid>().ok())
        .filter(|u| users.contains(u));
    let chama = text(&row.chama_id).to_owned();
    out.push(
        target::MEETINGS,
        vec![
            some(&id),
            some(&chama),
            some(title),
            row.agenda.clone(),
            some(&scheduled),
            some(duration),
            row.venue.clone(),
            some(kind),
            row.agora_channel.clone(),
            row.minutes.clone(),
            some(status),
            creator.map(|u| u.to_string()),
            some(&id),
            some(&created),
            some(&updated),
        ],
    );
    let mut seen = HashSet::new();
    for attendee in pgtext::parse_simple_array(text(&row.attendees)) {
        match attendee.parse::<Uuid>() {
            Ok(user) if users.contains(&user) => {
                if seen.insert(user) {
                    out.push(
                        target::ATTENDANCE,
                        vec![
                            some(&id),
                            some(&chama),
                            some(user),
                            some("present"),
                            some(&created),
                            some(&updated),
                        ],
                    );
                }
            }
            _ => out.issue(Issue::fixed(
                table,
                &id,
                "attendee is not a known user (deleted): dropped",
            )),
        }
    }
    Ok(())
}

/// What a withdrawal request needs from the rest of legacy.
#[derive(Debug)]
pub struct DisbursementContext<'a> {
    pub users: &'a HashSet<Uuid>,
    /// `required_approvals` per chama.
    pub required: &'a HashMap<Uuid, i64>,
    /// Legacy transaction ids that moved (not rejected by the ledger step).
    pub moved_transactions: &'a HashSet<i64>,
}

pub fn disbursement(row: &Disbursement, cx: &DisbursementContext<'_>, out: &mut Batch) {
    if let Err(reason) = disbursement_inner(row, cx, out) {
        out.issue(Issue::rejected(Disbursement::TABLE, text(&row.id), reason));
    }
}

fn disbursement_inner(
    row: &Disbursement,
    cx: &DisbursementContext<'_>,
    out: &mut Batch,
) -> Result<(), String> {
    let table = Disbursement::TABLE;
    let id = text(&row.id).to_owned();
    let (created, updated) = stamps(table, &id, &row.created_at, &row.updated_at, out)?;
    let amount = clean::kes_to_cents(text(&row.amount))?;
    if amount <= 0 {
        return Err("amount not positive".into());
    }
    let phone = clean::phone(text(&row.recipient_phone))
        .ok_or("recipient phone is not a Kenyan mobile number")?;
    let status = clean::disbursement_status(text(&row.status)).ok_or("unknown status")?;
    if text(&row.status).trim().eq_ignore_ascii_case("approved") {
        out.issue(Issue::fixed(
            table,
            &id,
            "approved but never paid out: expired (no money reserved)",
        ));
    }
    let chama: Uuid = text(&row.chama_id).parse().map_err(|_| "bad chama id")?;
    let mut reason = text(&row.reason).trim().to_owned();
    if reason.chars().count() < 3 {
        out.issue(Issue::fixed(table, &id, "no reason given: placeholder"));
        reason = "(no reason recorded in legacy)".into();
    }
    let reason: String = reason.chars().take(500).collect();
    let approvals: Vec<Value> = match serde_json::from_str::<Value>(text(&row.approvals)) {
        Ok(Value::Array(items)) => items,
        other => {
            out.issue(
                Issue::fixed(
                    table,
                    &id,
                    "approvals not a JSON array: none carried (review)",
                )
                .with_detail(format!(
                    "approvals {}: not a list of decisions",
                    match other {
                        Ok(value) => value.to_string(),
                        Err(_) => format!("{:?}", text(&row.approvals)),
                    }
                )),
            );
            Vec::new()
        }
    };
    let mut seen = HashSet::new();
    let (mut approved, mut rejected) = (0, 0);
    for approval in approvals {
        let Value::Object(approval) = approval else {
            out.issue(
                Issue::fixed(table, &id, "approval not a JSON object: dropped (review)")
                    .with_detail(format!("approval {approval}: not an object")),
            );
            continue;
        };
        let Some(user) = approval
            .get("user_id")
            .and_then(Value::as_str)
            .and_then(|u| u.trim().parse::<Uuid>().ok())
        else {
            out.issue(
                Issue::fixed(table, &id, "approval without an approver: dropped (review)")
                    .with_detail(format!(
                        "approval {}: \"user_id\" is not a user id",
                        Value::Object(approval.clone())
                    )),
            );
            continue;
        };
        if !cx.users.contains(&user) {
            out.issue(Issue::fixed(
                table,
                &id,
                "approval by an unknown user: dropped",
            ));
            continue;
        }
        let yes = match decision(approval.get("approved")) {
            Some((yes, as_bool)) => {
                if !as_bool {
                    out.issue(Issue::fixed(
                        table,
                        &id,
                        "approval decision written as text or a number: read as a decision",
                    ));
                }
                yes
            }
            None => {
                out.issue(
                    Issue::fixed(
                        table,
                        &id,
                        "approval decision unreadable: not carried, not counted (review)",
                    )
                    .with_detail(format!(
                        "approver {user}: \"approved\" is {}, neither a yes nor a no",
                        approval
                            .get("approved")
                            .map_or_else(|| "missing".to_owned(), Value::to_string)
                    )),
                );
                continue;
            }
        };
        if !seen.insert(user) {
            out.issue(Issue::fixed(
                table,
                &id,
                "same approver twice: first decision kept",
            ));
            continue;
        }
        if yes {
            approved += 1
        } else {
            rejected += 1
        }
        let at = match approval.get("at") {
            None | Some(Value::Null) => {
                out.issue(Issue::fixed(
                    table,
                    &id,
                    "approval without a time: the request's creation time",
                ));
                created.clone()
            }
            Some(value) => match value.as_str().and_then(approval_time) {
                Some(at) => at,
                None => {
                    out.issue(
                        Issue::fixed(
                            table,
                            &id,
                            "approval time unreadable: the request's creation time (review)",
                        )
                        .with_detail(format!(
                            "approver {user}: \"at\" is {value}, not a time; {created} used"
                        )),
                    );
                    created.clone()
                }
            },
        };
        let comment = match approval.get("comment") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => {
                out.issue(Issue::fixed(
                    table,
                    &id,
                    "approval comment not text: kept as its JSON",
                ));
                Some(other.to_string())
            }
        };
        out.push(
            target::APPROVALS,
            vec![
                some(ids::derived(&format!("approval:{id}:{user}"))),
                some(&id),
                some(chama),
                some(user),
                some(if yes { "approve" } else { "reject" }),
                comment,
                some(at),
            ],
        );
    }
    let transaction = row
        .transaction_id
        .as_deref()
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|t| {
            let moved = cx.moved_transactions.contains(&t);
            if !moved {
                out.issue(
                    Issue::fixed(
                        table,
                        &id,
                        "its transaction did not move: link dropped (review)",
                    )
                    .with_detail(format!(
                        "transaction_id {t} did not move (see the quarantine): the request no longer names its transaction"
                    )),
                );
            }
            moved.then(|| ids::legacy("transactions", t).to_string())
        });
    let expires = clean::nairobi_to_utc(text(&row.created_at))
        .ok()
        .and_then(|c| chrono::NaiveDateTime::parse_from_str(&c[..19], "%Y-%m-%d %H:%M:%S").ok())
        .map(|c| {
            format!(
                "{}+00",
                (c + chrono::Duration::days(14)).format("%Y-%m-%d %H:%M:%S%.6f")
            )
        })
        .ok_or("bad created_at")?;
    let required = cx.required.get(&chama).copied().unwrap_or(2).max(1);
    out.push(
        target::DISBURSEMENTS,
        vec![
            some(&id),
            some(chama),
            row.requested_by.clone(),
            some(phone.as_e164()),
            some(amount),
            some(reason),
            some(status),
            some(required),
            some(approved),
            some(rejected),
            transaction,
            (status != "pending").then(|| updated.clone()),
            some(expires),
            some(&id),
            some(&created),
            some(&updated),
        ],
    );
    Ok(())
}

/// A legacy approval's `approved`: a boolean, or the same written as text or a number
/// (`"true"`, `"FALSE"`, `"yes"`, `1`). The second value says whether it was a boolean.
/// Anything else is no decision (`None`), never a default.
pub fn decision(value: Option<&Value>) -> Option<(bool, bool)> {
    match value? {
        Value::Bool(yes) => Some((*yes, true)),
        Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "approved" | "approve" => Some((true, false)),
            "false" | "f" | "no" | "n" | "0" | "rejected" | "reject" => Some((false, false)),
            _ => None,
        },
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some((true, false)),
            Some(0) => Some((false, false)),
            _ => None,
        },
        _ => None,
    }
}

/// A legacy approval's `at`: Nairobi local time without a zone (as the app wrote it), or a
/// time with its offset (RFC 3339), in UTC.
fn approval_time(at: &str) -> Option<String> {
    if let Ok(utc) = clean::nairobi_to_utc(at) {
        return Some(utc);
    }
    let zoned = chrono::DateTime::parse_from_rfc3339(at.trim()).ok()?;
    Some(format!(
        "{}+00",
        zoned.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f")
    ))
}

/// Legacy ids inside notification data that name bigint rows, and the table they name.
pub const LEGACY_REFERENCES: &[(&str, &str)] = &[
    ("transaction_id", "transactions"),
    ("member_id", "chama_members"),
    ("notification_id", "notifications"),
];

/// The legacy rows named inside notification data that do not move, and why (read per batch
/// from legacy by [`crate::pipeline::references_of`]).
#[derive(Debug, Default, Clone)]
pub struct References {
    pub unmoved: HashMap<(&'static str, i64), String>,
    /// The chamas that exist (a `chama_id` inside data is linked only to one of them).
    pub chamas: HashSet<Uuid>,
}

/// A reference inside data that could not be rewritten to a migrated row: why, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dangling {
    pub reason: &'static str,
    pub detail: String,
}

/// The legacy ids inside `data` at any depth, by the table they name (for [`References`]).
pub fn legacy_references(data: &Value, found: &mut Vec<(&'static str, i64)>) {
    if let Value::Object(map) = data {
        for (key, table) in LEGACY_REFERENCES {
            if let Some(legacy) = map.get(*key).and_then(legacy_id) {
                found.push((table, legacy));
            }
        }
        for value in map.values() {
            legacy_references(value, found);
        }
    }
}

fn legacy_id(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// Rewrites references to legacy bigint ids inside notification data to the target's uuids,
/// keeping the legacy value beside it as `legacy_<key>`. A reference to a row that did not
/// move (quarantined, or not in legacy at all) becomes `null`, its legacy value kept, and is
/// answered as dangling; so is a value that is no id. Answers how many were rewritten.
pub fn rewrite_references(
    data: &mut Value,
    refs: &References,
    dangling: &mut Vec<Dangling>,
) -> usize {
    let mut rewritten = 0;
    if let Value::Object(map) = data {
        for (key, table) in LEGACY_REFERENCES {
            let Some(value) = map.get(*key) else {
                continue;
            };
            if value.is_null() {
                continue;
            }
            let Some(legacy) = legacy_id(value) else {
                dangling.push(Dangling {
                    reason: "legacy reference inside data is no id: kept as it was (review)",
                    detail: format!("{key} is {value}, not a legacy id of {table}"),
                });
                continue;
            };
            map.insert(format!("legacy_{key}"), json!(legacy));
            match refs.unmoved.get(&(*table, legacy)) {
                Some(why) => {
                    map.insert((*key).to_owned(), Value::Null);
                    dangling.push(Dangling {
                        reason: "data names a row that did not move: reference set to null, legacy id kept (review)",
                        detail: format!(
                            "{key} {legacy}: {table} row {legacy} did not move ({why}); legacy_{key} keeps {legacy}"
                        ),
                    });
                }
                None => {
                    map.insert((*key).to_owned(), json!(ids::legacy(table, legacy)));
                    rewritten += 1;
                }
            }
        }
        for (key, value) in map.iter_mut() {
            if value.is_object() && !key.starts_with("legacy_") {
                rewritten += rewrite_references(value, refs, dangling);
            }
        }
    }
    rewritten
}

pub fn notification(row: &Notification, refs: &References, out: &mut Batch) {
    let table = Notification::TABLE;
    let legacy = text(&row.id).to_owned();
    let created = match clean::nairobi_to_utc(text(&row.created_at)) {
        Ok(c) => c,
        Err(reason) => return out.issue(Issue::rejected(table, &legacy, reason)),
    };
    let kind = clean::notification_type(text(&row.kind)).unwrap_or_else(|| {
        out.issue(Issue::fixed(
            table,
            &legacy,
            "unknown notification type: system",
        ));
        "system"
    });
    let mut title: String = text(&row.title).trim().chars().take(200).collect();
    if title.is_empty() {
        title = "Notification".into();
    }
    let mut data = match row.data.as_deref().map(serde_json::from_str::<Value>) {
        None => json!({}),
        Some(Ok(Value::Object(map))) => Value::Object(map),
        Some(Ok(other)) => json!({ "legacy": other }),
        Some(Err(_)) => json!({ "legacy_text": text(&row.data) }),
    };
    let mut dangling = Vec::new();
    if rewrite_references(&mut data, refs, &mut dangling) > 0 {
        out.issue(Issue::fixed(
            table,
            &legacy,
            "legacy ids inside data rewritten to uuids",
        ));
    }
    for d in dangling {
        out.issue(Issue::fixed(table, &legacy, d.reason).with_detail(d.detail));
    }
    let named_chama = data.get("chama_id").filter(|c| !c.is_null());
    let chama = named_chama
        .and_then(Value::as_str)
        .and_then(|c| c.trim().parse::<Uuid>().ok())
        .filter(|c| refs.chamas.contains(c));
    if let (Some(value), None) = (named_chama, chama) {
        out.issue(
            Issue::fixed(
                table,
                &legacy,
                "data names a chama that does not exist: not linked to a chama (review)",
            )
            .with_detail(format!(
                "chama_id {value} is no chama of legacy: the notification is linked to none"
            )),
        );
    }
    let channels: Vec<String> = pgtext::parse_simple_array(text(&row.sent_via))
        .into_iter()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| matches!(c.as_str(), "push" | "sms" | "email"))
        .collect();
    let id: i64 = legacy.parse().unwrap_or_default();
    out.push(
        target::NOTIFICATIONS,
        vec![
            some(ids::legacy("notifications", id)),
            row.user_id.clone(),
            chama.map(|c| c.to_string()),
            some(kind),
            some(title),
            row.body.clone(),
            some(data),
            some(pgtext::text_array(&channels)),
            model::flag(&row.is_read).then(|| created.clone()),
            some(&legacy),
            some(&created),
        ],
    );
}

/// `superseded`: legacy device rows whose token a later row registered again.
pub fn device(row: &Device, superseded: &HashSet<i64>, out: &mut Batch) {
    let table = Device::TABLE;
    let legacy = text(&row.id).to_owned();
    let id: i64 = legacy.parse().unwrap_or_default();
    if superseded.contains(&id) {
        return out.issue(Issue::rejected(
            table,
            &legacy,
            "token registered again by a later row: the later one moves",
        ));
    }
    let token = text(&row.fcm_token).trim().to_owned();
    if !(10..=4096).contains(&token.chars().count()) {
        return out.issue(Issue::rejected(
            table,
            &legacy,
            "not an FCM token (too short)",
        ));
    }
    let Some(platform) = clean::platform(text(&row.platform)) else {
        return out.issue(Issue::rejected(table, &legacy, "unknown platform"));
    };
    let created = match clean::nairobi_to_utc(text(&row.created_at)) {
        Ok(c) => c,
        Err(reason) => return out.issue(Issue::rejected(table, &legacy, reason)),
    };
    out.push(
        target::DEVICES,
        vec![
            some(ids::legacy("user_devices", id)),
            row.user_id.clone(),
            some(token),
            some(platform),
            some(&created),
            some(&created),
            some(&created),
        ],
    );
}

pub fn audit(row: &AuditLog, out: &mut Batch) {
    let created = match clean::nairobi_to_utc(text(&row.created_at)) {
        Ok(c) => c,
        Err(reason) => return out.issue(Issue::rejected(AuditLog::TABLE, text(&row.id), reason)),
    };
    out.push(
        target::LEGACY_AUDIT,
        vec![
            row.id.clone(),
            row.user_id.clone(),
            row.action.clone(),
            row.entity_type.clone(),
            row.entity_id.clone(),
            row.changes.clone(),
            row.ip_address.clone(),
            row.user_agent.clone(),
            some(created),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigint_references_in_json_become_uuids_and_keep_the_legacy_value() {
        let mut data =
            json!({ "transaction_id": 123, "chama_id": "x", "nested": { "member_id": "7" } });
        let mut dangling = Vec::new();
        assert_eq!(
            rewrite_references(&mut data, &References::default(), &mut dangling),
            2
        );
        assert!(dangling.is_empty());
        assert_eq!(
            data["transaction_id"],
            json!(ids::legacy("transactions", 123))
        );
        assert_eq!(data["legacy_transaction_id"], json!(123));
        assert_eq!(
            data["nested"]["member_id"],
            json!(ids::legacy("chama_members", 7))
        );
    }

    #[test]
    fn references_to_rows_that_did_not_move_are_nulled_and_reported_every_one() {
        let refs = References {
            unmoved: [
                (("transactions", 5), "amount 0 moves no money".to_owned()),
                (("chama_members", 9), "chama does not exist".to_owned()),
            ]
            .into(),
            chamas: HashSet::new(),
        };
        let mut data = json!({
            "transaction_id": 5,
            "nested": { "member_id": 9, "transaction_id": 6 },
            "notification_id": "abc",
        });
        let mut dangling = Vec::new();
        assert_eq!(rewrite_references(&mut data, &refs, &mut dangling), 1);
        assert_eq!(data["transaction_id"], Value::Null);
        assert_eq!(data["legacy_transaction_id"], json!(5));
        assert_eq!(data["nested"]["member_id"], Value::Null);
        assert_eq!(
            data["nested"]["transaction_id"],
            json!(ids::legacy("transactions", 6))
        );
        assert_eq!(data["notification_id"], json!("abc"), "kept as it was");
        assert_eq!(dangling.len(), 3, "{dangling:#?}");
        assert!(dangling.iter().any(|d| {
            d.detail
                .contains("transactions row 5 did not move (amount 0")
        }));
        assert!(
            dangling
                .iter()
                .any(|d| d.detail.contains("chama_members row 9"))
        );
        assert!(dangling.iter().any(|d| d.reason.contains("no id")));
    }

    #[test]
    fn approval_decisions_written_as_text_are_read_and_unreadable_ones_are_not_guessed() {
        assert_eq!(decision(Some(&json!(true))), Some((true, true)));
        assert_eq!(decision(Some(&json!("true"))), Some((true, false)));
        assert_eq!(decision(Some(&json!(" FALSE "))), Some((false, false)));
        assert_eq!(decision(Some(&json!("yes"))), Some((true, false)));
        assert_eq!(decision(Some(&json!(0))), Some((false, false)));
        assert_eq!(decision(Some(&json!("maybe"))), None);
        assert_eq!(decision(Some(&json!(null))), None);
        assert_eq!(decision(None), None);
        assert_eq!(
            approval_time("2023-04-01T10:00:00").as_deref(),
            Some("2023-04-01 07:00:00.000000+00"),
            "Nairobi local, as the app wrote it"
        );
        assert_eq!(
            approval_time("2023-04-01T10:00:00Z").as_deref(),
            Some("2023-04-01 10:00:00.000000+00"),
            "a time with its zone is read as such"
        );
        assert_eq!(approval_time("last tuesday"), None);
    }

    fn member(id: i64, user: u128, role: &str, status: &str) -> Member {
        Member {
            id: Some(id.to_string()),
            chama_id: Some(Uuid::from_u128(50).to_string()),
            user_id: Some(Uuid::from_u128(user).to_string()),
            role: Some(role.into()),
            status: Some(status.into()),
            joined_at: Some(format!("2020-01-0{id} 10:00:00")),
        }
    }

    #[test]
    fn orphaned_members_are_rejected_and_chairs_made_exactly_one() {
        let mut out = Batch::default();
        members(None, &[member(1, 1, "member", "active")], &mut out);
        assert_eq!(out.issues[0].severity, crate::target::Severity::Rejected);
        let mut out = Batch::default();
        members(
            Some(true),
            &[
                member(1, 1, "Chairperson", "active"),
                member(2, 2, "chairman", "ACTIVE"),
            ],
            &mut out,
        );
        let roles: Vec<_> = out
            .rows_of(&target::MEMBERS)
            .iter()
            .map(|m| m[3].clone().unwrap())
            .collect();
        assert_eq!(roles, ["chairperson", "member"]);
        let mut out = Batch::default();
        members(
            Some(true),
            &[
                member(1, 1, "member", "active"),
                member(2, 2, "treasurer", "active"),
            ],
            &mut out,
        );
        let roles: Vec<_> = out
            .rows_of(&target::MEMBERS)
            .iter()
            .map(|m| m[3].clone().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["member", "chairperson"],
            "an official takes the empty chair"
        );
    }

    #[test]
    fn approvals_become_rows_once_per_approver_and_attendees_of_deleted_users_go() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let users: HashSet<Uuid> = [a, b].into();
        let chama = Uuid::from_u128(50);
        let required: HashMap<Uuid, i64> = [(chama, 2)].into();
        let moved = HashSet::new();
        let cx = DisbursementContext {
            users: &users,
            required: &required,
            moved_transactions: &moved,
        };
        let row = Disbursement {
            id: Some(Uuid::from_u128(70).to_string()),
            chama_id: Some(chama.to_string()),
            requested_by: Some(b.to_string()),
            recipient_phone: Some("0712 000 001".into()),
            amount: Some("2500.00".into()),
            reason: Some("school fees".into()),
            status: Some("Disbursed".into()),
            approvals: Some(
                json!([
                    {"user_id": a, "approved": true, "at": "2023-04-01T10:00:00"},
                    {"user_id": a, "approved": true},
                    {"user_id": Uuid::from_u128(3), "approved": false},
                    {"user_id": b, "approved": "true"},
                ])
                .to_string(),
            ),
            created_at: Some("2023-04-01 09:00:00".into()),
            updated_at: Some("2023-04-01 11:00:00".into()),
            ..Disbursement::default()
        };
        let mut out = Batch::default();
        disbursement(&row, &cx, &mut out);
        let decisions: Vec<_> = out
            .rows_of(&target::APPROVALS)
            .iter()
            .map(|a| a[4].clone().unwrap())
            .collect();
        assert_eq!(decisions, ["approve", "approve"], "\"true\" is a yes");
        let request = &out.rows_of(&target::DISBURSEMENTS)[0];
        assert_eq!(request[6].as_deref(), Some("completed"));
        assert_eq!(request[8].as_deref(), Some("2"));
        assert_eq!(request[9].as_deref(), Some("0"));
        assert_eq!(request[3].as_deref(), Some("+254712000001"));

        let meeting_row = Meeting {
            id: Some(Uuid::from_u128(80).to_string()),
            chama_id: Some(chama.to_string()),
            title: Some("AGM".into()),
            scheduled_for: Some("2023-05-01 14:00:00".into()),
            attendees: Some(format!("{{{a},{},{a}}}", Uuid::from_u128(99))),
            status: Some("Held".into()),
            created_at: Some("2023-04-01 09:00:00".into()),
            updated_at: Some("2023-04-01 09:00:00".into()),
            ..Meeting::default()
        };
        let mut out = Batch::default();
        meeting(&meeting_row, &users, &mut out);
        assert_eq!(out.rows_of(&target::ATTENDANCE).len(), 1);
        assert!(out.issues.iter().any(|i| i.reason.contains("deleted")));
    }
}
