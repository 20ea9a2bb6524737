//! `migrate generate-legacy`: a legacy database of realistic shape, every known quirk of the
//! legacy README at the chosen rate, the same bytes for the same seed, loaded with COPY.
//!
//! `--scale 1` is production as the README gives it (about 40,000 users, 3,000 chamas,
//! 2.5 million transactions, 3 million notifications and 3 million audit rows).

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::pgtext::{Fields, encode_row, some};

/// The passwords of generated users: user `i` has `PASSWORDS[i % 4]`.
pub const PASSWORDS: [&str; 4] = [
    "legacy-pass-0",
    "legacy-pass-1",
    "legacy-pass-2",
    "legacy-pass-3",
];
/// The PINs of generated users: user `i` has `PINS[i % 4]`.
pub const PINS: [&str; 4] = ["1234", "4321", "2580", "1357"];

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub scale: f64,
    pub quirk_rate: f64,
    pub seed: u64,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Generated {
    pub users: u64,
    pub chamas: u64,
    pub transactions: u64,
    pub notifications: u64,
    pub audit_logs: u64,
}

const FIRST: &[&str] = &[
    "Wanjiku", "Otieno", "Akinyi", "Kamau", "Njeri", "Mwangi", "Chebet", "Kiprop", "Atieno",
    "Mutua", "Wairimu", "Omondi",
];
const LAST: &[&str] = &[
    "Kamau",
    "Odhiambo",
    "Wambui",
    "Kariuki",
    "Onyango",
    "Cheruiyot",
    "Mutiso",
    "Njoroge",
    "Achieng",
    "Kilonzo",
];
const FREQUENCIES: &[&str] = &[
    "monthly",
    "Monthly",
    "MONTHLY",
    "weekly",
    "Weekly ",
    "bi-weekly",
    "Bi Weekly",
    "fortnightly",
];
const TYPES: &[&str] = &[
    "savings",
    "Savings",
    "merry-go-round",
    "Merry Go Round",
    "investment",
    "table-banking",
    "Table Banking",
];

struct Gen {
    rng: StdRng,
    rate: f64,
}

impl Gen {
    fn quirk(&mut self) -> bool {
        self.rng.random_bool(self.rate.clamp(0.0, 1.0))
    }
    fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.random_range(0..items.len())]
    }
    /// A Nairobi-local timestamp `days` after 2019-01-01.
    fn at(&mut self, from_day: i64, to_day: i64) -> (i64, String) {
        let day = self.rng.random_range(from_day..to_day.max(from_day + 1));
        let seconds = day * 86_400 + self.rng.random_range(6 * 3600..22 * 3600);
        (seconds, stamp(seconds))
    }
}

fn stamp(seconds: i64) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(2019, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    (base + chrono::Duration::seconds(seconds))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn kes(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// Buffers rows per table and sends them with COPY.
struct Loader {
    tables: Vec<(&'static str, &'static str, String)>,
}

impl Loader {
    fn new() -> Self {
        Self { tables: Vec::new() }
    }
    fn push(&mut self, table: &'static str, columns: &'static str, row: Fields) {
        let i = match self.tables.iter().position(|(t, _, _)| *t == table) {
            Some(i) => i,
            None => {
                self.tables.push((table, columns, String::new()));
                self.tables.len() - 1
            }
        };
        encode_row(&mut self.tables[i].2, &row);
    }
    async fn flush(&mut self, conn: &mut PgConnection) -> anyhow::Result<()> {
        for (table, columns, buffer) in &mut self.tables {
            if buffer.is_empty() {
                continue;
            }
            let mut copy = conn
                .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
                .await?;
            copy.send(std::mem::take(buffer).into_bytes())
                .await
                .with_context(|| format!("loading legacy {table}"))?;
            copy.finish()
                .await
                .with_context(|| format!("loading legacy {table}"))?;
        }
        Ok(())
    }
    fn size(&self) -> usize {
        self.tables.iter().map(|(_, _, b)| b.len()).sum()
    }
}

/// A generated legacy transaction: id, time, member index, kind, cents, status, receipt.
type Row<'a> = (i64, i64, usize, &'a str, i64, &'a str, Option<String>);

struct LegacyUser {
    id: Uuid,
    phone: String,
    live: bool,
}

/// A number typed one of the ways people type it.
fn spell(g: &mut Gen, subscriber: &str) -> String {
    match g.rng.random_range(0..6) {
        0 => format!("+254{subscriber}"),
        1 => format!("254{subscriber}"),
        2 => subscriber.to_owned(),
        3 => format!(
            "0{} {} {}",
            &subscriber[..3],
            &subscriber[3..6],
            &subscriber[6..]
        ),
        4 => format!(
            "0{}-{}-{}",
            &subscriber[..3],
            &subscriber[3..6],
            &subscriber[6..]
        ),
        _ => format!("0{subscriber}"),
    }
}

pub async fn run(conn: &mut PgConnection, options: &GenerateOptions) -> anyhow::Result<Generated> {
    let present: bool = sqlx::query_scalar("select to_regclass('public.users') is not null")
        .fetch_one(&mut *conn)
        .await?;
    if present {
        anyhow::bail!(
            "the database already has a users table: generate-legacy fills an empty database"
        );
    }
    sqlx::raw_sql(crate::LEGACY_SCHEMA)
        .execute(&mut *conn)
        .await
        .context("creating the legacy schema")?;
    let mut g = Gen {
        rng: StdRng::seed_from_u64(options.seed),
        rate: options.quirk_rate,
    };
    let scale = options.scale.max(0.0);
    let n_chamas = ((3000.0 * scale).round() as usize).max(2);
    let n_users = ((40_000.0 * scale).round() as usize).max(n_chamas * 10);
    let tx_per_chama = ((2_500_000.0 * scale) as usize / n_chamas).max(20);
    let notes_per_chama = ((3_000_000.0 * scale) as usize / n_chamas).max(10);
    let audit_total = ((3_000_000.0 * scale) as usize).max(20);
    let mut out = Generated::default();

    let hash = |g: &mut Gen, secret: &str| -> anyhow::Result<String> {
        let salt: [u8; 16] = g.rng.random();
        Ok(bcrypt::hash_with_salt(secret, 10, salt)?.format_for_version(bcrypt::Version::TwoB))
    };
    let mut password_hashes = Vec::new();
    let mut pin_hashes = Vec::new();
    for (p, pin) in PASSWORDS.iter().zip(PINS) {
        password_hashes.push(hash(&mut g, p)?);
        pin_hashes.push(hash(&mut g, pin)?);
    }

    let mut load = Loader::new();
    const USER_COLS: &str = "id, email, phone, password_hash, pin_hash, first_name, last_name, id_number, avatar_url, language, is_admin, email_verified, last_login_at, created_at, updated_at, deleted_at";
    let mut users: Vec<LegacyUser> = Vec::with_capacity(n_users);
    let mut emails: Vec<String> = Vec::new();
    for i in 0..n_users {
        let id = g.uuid();
        let subscriber = if i % 10 == 9 {
            format!("1{:08}", 10_000_000 + i)
        } else {
            format!("7{:08}", 10_000_000 + i)
        };
        let ussd_only = i % 10 == 3;
        let (first, last) = (g.pick(FIRST), g.pick(LAST));
        let mut email = (!ussd_only).then(|| {
            format!(
                "{}.{}{i}@example.co.ke",
                first.to_lowercase(),
                last.to_lowercase()
            )
        });
        if let Some(e) = &mut email {
            if g.rng.random_bool(0.3) {
                *e = format!("{}{}", e[..1].to_uppercase(), &e[1..]);
            }
            if g.quirk() {
                *e = g.pick(&["jane@", "none", "n/a", "N/A"]).to_owned();
            } else if g.quirk() && !emails.is_empty() {
                *e = emails[g.rng.random_range(0..emails.len())].to_uppercase();
            } else {
                emails.push(e.clone());
            }
        }
        let (created_s, created) = g.at(0, 1800);
        let updated = if g.quirk() {
            stamp(created_s - 3600 * 5)
        } else {
            stamp(created_s + g.rng.random_range(0..86_400 * 30))
        };
        let deleted = g
            .rng
            .random_bool(0.03)
            .then(|| stamp(created_s + 86_400 * 200));
        let phone = if g.quirk() {
            spell(&mut g, &subscriber)
        } else {
            format!("0{subscriber}")
        };
        let login = g
            .rng
            .random_bool(0.8)
            .then(|| stamp(created_s + g.rng.random_range(0..86_400 * 300)));
        load.push(
            "users",
            USER_COLS,
            vec![
                some(id),
                email.clone(),
                some(&phone),
                (!ussd_only).then(|| password_hashes[i % 4].clone()),
                (ussd_only || g.rng.random_bool(0.5)).then(|| pin_hashes[i % 4].clone()),
                some(first),
                some(last),
                some(format!("{}", 20_000_000 + i)),
                g.rng
                    .random_bool(0.2)
                    .then(|| format!("https://s3.amazonaws.com/pesachama-v1/avatars/{id}.jpg")),
                some(if g.rng.random_bool(0.2) { "sw" } else { "en" }),
                some(if i == 0 { "t" } else { "f" }),
                some(if g.rng.random_bool(0.7) { "t" } else { "f" }),
                login,
                some(&created),
                some(updated),
                deleted.clone(),
            ],
        );
        users.push(LegacyUser {
            id,
            phone: subscriber.clone(),
            live: deleted.is_none(),
        });
        // The same person under another spelling of the number, usually soft-deleted.
        if g.quirk() {
            let dup = g.uuid();
            let spelled = spell(&mut g, &subscriber);
            let soft = g.rng.random_bool(0.8) || spelled == phone;
            load.push(
                "users",
                USER_COLS,
                vec![
                    some(dup),
                    None,
                    some(&spelled),
                    Some(password_hashes[i % 4].clone()),
                    None,
                    some(first),
                    some(last),
                    None,
                    None,
                    some("en"),
                    some("f"),
                    some("f"),
                    None,
                    some(&created),
                    some(&created),
                    soft.then(|| stamp(created_s + 86_400)),
                ],
            );
            users.push(LegacyUser {
                id: dup,
                phone: subscriber,
                live: !soft,
            });
        }
    }
    out.users = users.len() as u64;
    load.flush(conn).await?;

    // Devices and sessions.
    let mut device_id = 0i64;
    let mut last_token = String::new();
    for (i, user) in users.iter().enumerate() {
        if i % 5 == 4 {
            continue;
        }
        device_id += 1;
        let token = if g.quirk() && !last_token.is_empty() {
            last_token.clone()
        } else {
            format!("fcm:{}:{}", user.id.simple(), g.rng.random::<u32>())
        };
        last_token = token.clone();
        let (_, at) = g.at(400, 1900);
        load.push(
            "user_devices",
            "id, user_id, fcm_token, platform, created_at",
            vec![
                some(device_id),
                some(user.id),
                some(token),
                some(g.pick(&["android", "Android", "ios", "iOS"])),
                some(at),
            ],
        );
        let (_, at) = g.at(1700, 1900);
        load.push(
            "user_sessions",
            "id, user_id, refresh_token_hash, user_agent, expires_at, created_at",
            vec![
                some(device_id),
                some(user.id),
                some(format!("{:064x}", g.rng.random::<u128>())),
                some("okhttp/4.9"),
                some(&at),
                some(&at),
            ],
        );
    }
    load.flush(conn).await?;

    let live: Vec<usize> = (0..users.len()).filter(|&i| users[i].live).collect();
    let (mut tx_id, mut note_id, mut member_id) = (0i64, 0i64, 0i64);
    let mut receipt = 0u64;
    for c in 0..n_chamas {
        let chama = g.uuid();
        let (created_s, created) = g.at(0, 700);
        let amount = g.rng.random_range(5..50) * 10_000;
        let size = g.rng.random_range(8..16usize).min(live.len());
        let mut members: Vec<usize> = Vec::with_capacity(size);
        while members.len() < size {
            let u = live[g.rng.random_range(0..live.len())];
            if !members.contains(&u) {
                members.push(u);
            }
        }
        for (k, &u) in members.iter().enumerate() {
            member_id += 1;
            let role = match k {
                0 => g.pick(&["chairperson", "Chairperson"]),
                1 => "treasurer",
                2 => "secretary",
                _ => "member",
            };
            let status = if k > 3 && g.rng.random_bool(0.1) {
                "left"
            } else {
                "active"
            };
            load.push(
                "chama_members",
                "id, chama_id, user_id, role, status, joined_at",
                vec![
                    some(member_id),
                    some(chama),
                    some(users[u].id),
                    some(role),
                    some(status),
                    some(stamp(created_s + k as i64 * 3600)),
                ],
            );
        }
        if g.quirk() {
            // A membership of a chama that was hard-deleted.
            member_id += 1;
            let ghost = g.uuid();
            load.push(
                "chama_members",
                "id, chama_id, user_id, role, status, joined_at",
                vec![
                    some(member_id),
                    some(ghost),
                    some(users[members[0]].id),
                    some("member"),
                    some("active"),
                    some(&created),
                ],
            );
        }
        // History, in time order; legacy's balance as the app kept it (read-then-write).
        let mut balance = 0i64;
        let mut history: Vec<Row<'_>> = Vec::new();
        let mut t = created_s + 86_400;
        for _ in 0..tx_per_chama {
            t += g.rng.random_range(600..86_400);
            let who = members[g.rng.random_range(0..members.len())];
            let roll = g.rng.random_range(0..100);
            let (kind, cents) = match roll {
                0..=84 => ("contribution", amount),
                85..=88 => ("fine", 5_000),
                89..=91 => ("interest", g.rng.random_range(1..500) * 100),
                92..=94 => ("fee", 3_300),
                _ => ("disbursement", amount * 3),
            };
            let cents = if g.quirk() && g.rng.random_bool(0.2) {
                0
            } else {
                cents
            };
            let status = match g.rng.random_range(0..100) {
                0..=2 => "pending",
                3..=6 => "failed",
                _ => "completed",
            };
            tx_id += 1;
            let mpesa = kind == "contribution" && g.rng.random_bool(0.6);
            let this_receipt = mpesa.then(|| {
                receipt += 1;
                format!("Q{receipt:09X}")
            });
            history.push((tx_id, t, who, kind, cents, status, this_receipt.clone()));
            if status == "completed" {
                balance += if matches!(kind, "contribution" | "fine" | "interest") {
                    cents
                } else {
                    -cents
                };
            }
            if mpesa && status == "completed" && g.quirk() {
                // A second M-Pesa callback for the same payment.
                tx_id += 1;
                history.push((tx_id, t + 2, who, kind, cents, status, this_receipt));
                balance += cents;
            }
            if kind == "contribution" && status == "completed" && cents > 0 && g.quirk() {
                tx_id += 1;
                let refund_at = t + 3600;
                let early = refund_at < 730 * 86_400;
                history.push((
                    tx_id,
                    refund_at,
                    who,
                    if early { "refund-negative" } else { "reversal" },
                    cents,
                    "completed",
                    None,
                ));
                balance -= cents;
            }
        }
        if g.quirk() {
            balance += g.rng.random_range(-50_000..50_000);
        }
        load.push("chamas", "id, name, description, chama_type, registration_number, contribution_amount, contribution_frequency, balance, paybill_account, required_approvals, created_by, status, created_at, updated_at, deleted_at", vec![
            some(chama), some(format!("{} {} Chama {c}", g.pick(FIRST), g.pick(&["Savings", "Women Group", "Investment", "Self Help"]))), some("A chama"),
            some(g.pick(TYPES)), None, some(kes(amount)), some(g.pick(FREQUENCIES)), some(kes(balance)), some(format!("PC{c:05}")),
            some(2), some(users[members[0]].id), some("active"), some(&created), some(&created), None,
        ]);
        out.chamas += 1;
        let mut reversed_originals = std::collections::HashSet::new();
        for (idx, (id, at, who, kind, cents, status, rcpt)) in history.iter().enumerate() {
            let user = &users[*who];
            let (kind_text, amount_text, status_text) = match *kind {
                "refund-negative" => ("contribution".to_owned(), kes(-cents), (*status).to_owned()),
                other => {
                    let k = if g.quirk() {
                        other.to_uppercase()
                    } else {
                        other.to_owned()
                    };
                    (k, kes(*cents), (*status).to_owned())
                }
            };
            let mut status_text = if g.quirk() {
                status_text.to_uppercase()
            } else {
                status_text
            };
            if *kind != "reversal" && history.get(idx + 1).is_some_and(|n| n.3 == "reversal") {
                status_text = "reversed".into();
                reversed_originals.insert(*id);
            }
            let reference = format!("ws_CO_{id:08}");
            // A reversal names what it reverses; a second callback for one payment carries
            // the same checkout id (CheckoutRequestID) as the first.
            let double_callback =
                rcpt.is_some() && idx > 0 && history.get(idx - 1).is_some_and(|p| p.6 == *rcpt);
            let reference = if *kind == "reversal" || double_callback {
                format!("ws_CO_{:08}", id - 1)
            } else {
                reference
            };
            let updated = if g.quirk() {
                stamp(at - 7200)
            } else {
                stamp(at + 60)
            };
            let metadata = rcpt.as_ref().map(|r| {
                json!({ "MpesaReceiptNumber": r, "PhoneNumber": format!("254{}", user.phone) })
                    .to_string()
            });
            load.push("transactions", "id, chama_id, user_id, type, amount, status, payment_method, reference, mpesa_receipt, phone, description, metadata, created_at, updated_at", vec![
                some(id), some(chama), some(user.id), some(kind_text), some(amount_text), some(status_text),
                some(if rcpt.is_some() { "mpesa" } else { g.pick(&["cash", "bank", "Cash"]) }), some(reference), rcpt.clone(),
                some(spell(&mut g, &user.phone)), some(format!("{kind} {id}")), metadata, some(stamp(*at)), some(updated),
            ]);
            out.transactions += 1;
        }
        // Withdrawal requests, meetings, notifications.
        for _ in 0..3 {
            let request = g.uuid();
            let (s, at) = g.at(800, 1900);
            let requester = users[members[g.rng.random_range(0..members.len())]].id;
            let mut approvals = vec![
                json!({ "user_id": users[members[0]].id, "approved": true, "comment": "ok", "at": stamp(s + 3600).replace(' ', "T") }),
                json!({ "user_id": users[members[1]].id, "approved": g.rng.random_bool(0.8), "at": stamp(s + 7200).replace(' ', "T") }),
            ];
            if g.quirk() {
                approvals.push(approvals[0].clone());
            }
            load.push("disbursement_requests", "id, chama_id, requested_by, recipient_phone, amount, reason, status, approvals, transaction_id, created_at, updated_at", vec![
                some(request), some(chama), some(requester), some(spell(&mut g, &users[members[2]].phone)), some(kes(amount * 2)),
                some(g.pick(&["school fees", "medical emergency", "business stock", ""])), some(g.pick(&["pending", "approved", "rejected", "disbursed", "Disbursed"])),
                some(serde_json::Value::Array(approvals)), None, some(&at), some(stamp(s + 7200)),
            ]);
        }
        for m in 0..4 {
            let (_, at) = g.at(700, 1900);
            let mut attendees: Vec<String> = members
                .iter()
                .take(5)
                .map(|&u| users[u].id.to_string())
                .collect();
            if g.quirk() {
                attendees.push(g.uuid().to_string());
            }
            load.push("meetings", "id, chama_id, title, agenda, scheduled_for, duration_minutes, venue, meeting_type, minutes, recording_url, attendees, status, created_by, created_at, updated_at", vec![
                some(g.uuid()), some(chama), some(format!("Monthly meeting {m}")), some("Contributions; loans"), some(&at), some(90), some("Community hall"),
                some(g.pick(&["physical", "Virtual", "physical"])), None, g.rng.random_bool(0.2).then(|| "https://s3.amazonaws.com/rec.mp4".to_owned()),
                some(format!("{{{}}}", attendees.join(","))), some(g.pick(&["held", "scheduled", "Cancelled"])), some(users[members[0]].id), some(&at), some(&at),
            ]);
        }
        for _ in 0..notes_per_chama {
            note_id += 1;
            let who = users[members[g.rng.random_range(0..members.len())]].id;
            let (_, at) = g.at(700, 1900);
            let linked = history[g.rng.random_range(0..history.len())].0;
            load.push(
                "notifications",
                "id, user_id, type, title, body, data, is_read, sent_via, created_at",
                vec![
                    some(note_id),
                    some(who),
                    some(g.pick(&[
                        "transaction",
                        "Transaction",
                        "meeting",
                        "approval",
                        "system",
                    ])),
                    some("Contribution received"),
                    some("Your contribution was received"),
                    some(json!({ "transaction_id": linked, "chama_id": chama }).to_string()),
                    some(if g.rng.random_bool(0.6) { "t" } else { "f" }),
                    some("{push,sms}"),
                    some(at),
                ],
            );
            out.notifications += 1;
        }
        if load.size() > 16 << 20 {
            load.flush(conn).await?;
        }
    }
    load.flush(conn).await?;
    for i in 0..audit_total {
        let (_, at) = g.at(0, 1900);
        let actor = users[g.rng.random_range(0..users.len())].id;
        load.push("audit_logs", "id, user_id, action, entity_type, entity_id, changes, ip_address, user_agent, created_at", vec![
            some(i + 1), some(actor), some(g.pick(&["login", "transaction.update", "chama.create", "member.add"])), some("transaction"),
            some(i * 7), some(json!({ "before": {"status": "pending"}, "after": {"status": "completed"} })), some("196.201.214.10"), some("okhttp/4.9"), some(at),
        ]);
        out.audit_logs += 1;
        if load.size() > 16 << 20 {
            load.flush(conn).await?;
        }
    }
    for (i, _) in (0..((200.0 * scale.max(0.01)) as usize).max(5)).enumerate() {
        let (_, at) = g.at(1800, 1900);
        load.push("ussd_sessions", "id, session_id, phone_number, service_code, current_menu, status, created_at, last_activity_at", vec![
            some(i + 1), some(format!("ATUid_{i}")), some(format!("+2547{:08}", i)), some("*384*123#"), some("main"), some("timeout"), some(&at), some(&at),
        ]);
    }
    load.flush(conn).await?;
    sqlx::raw_sql(
        "select setval(pg_get_serial_sequence('transactions', 'id'), greatest((select max(id) from transactions), 1));
         select setval(pg_get_serial_sequence('notifications', 'id'), greatest((select max(id) from notifications), 1));
         select setval(pg_get_serial_sequence('audit_logs', 'id'), greatest((select max(id) from audit_logs), 1));
         select setval(pg_get_serial_sequence('chama_members', 'id'), greatest((select max(id) from chama_members), 1));
         select setval(pg_get_serial_sequence('user_devices', 'id'), greatest((select max(id) from user_devices), 1));
         select setval(pg_get_serial_sequence('user_sessions', 'id'), greatest((select max(id) from user_sessions), 1));
         select setval(pg_get_serial_sequence('ussd_sessions', 'id'), greatest((select max(id) from ussd_sessions), 1));
         analyze;",
    )
    .execute(&mut *conn)
    .await?;
    Ok(out)
}
