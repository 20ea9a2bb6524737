//! Users: contacts cleaned and de-duplicated across all users, credentials carried over.
//!
//! A legacy user becomes four things: `auth.users` (the login: email, phone without `+` as
//! GoTrue keeps it, the legacy bcrypt hash as `encrypted_password`, which both PesaChama's
//! login and Supabase Auth verify), `auth.identities` (one per email or phone login, as GoTrue
//! writes them), the profile `public.users` (same id), and the PIN in `internal.user_pins`.
//! Legacy sessions are not carried over: members sign in again with their old password.

use std::collections::HashMap;

use pesachama_domain::Phone;
use serde_json::json;
use uuid::Uuid;

use crate::batch::Batch;
use crate::clean::{self, EmailOutcome};
use crate::model::{self, User, text};
use crate::pgtext::some;
use crate::target::{self, Issue};

/// GoTrue's instance id for single-tenant projects.
const INSTANCE: &str = "00000000-0000-0000-0000-000000000000";

/// A user's email and phone after cleaning and de-duplication, and what was changed.
#[derive(Debug, Clone, Default)]
pub struct Contact {
    pub email: Option<String>,
    pub phone: Option<Phone>,
    pub fixes: Vec<ContactFix>,
}

/// One change to a user's contact: why (the report groups by it) and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactFix {
    pub reason: String,
    pub detail: Option<String>,
}

impl Contact {
    fn fix(&mut self, reason: &str, detail: Option<String>) {
        self.fixes.push(ContactFix {
            reason: reason.to_owned(),
            detail,
        });
    }
}

/// Who keeps a contact shared by several live users: the one who signed in last, then the
/// newest account, then the smallest id (so every run decides the same way).
fn keeper_rank(user: &User) -> (std::cmp::Reverse<String>, std::cmp::Reverse<String>, String) {
    (
        std::cmp::Reverse(text(&user.last_login_at).to_owned()),
        std::cmp::Reverse(text(&user.created_at).to_owned()),
        text(&user.id).to_owned(),
    )
}

/// How a user signed in last, for a person deciding who a contact belongs to.
fn last_sign_in(user: &User) -> &str {
    user.last_login_at.as_deref().unwrap_or("never")
}

/// Cleans every user's email and phone and resolves the duplicates cleaning reveals: two live
/// users whose numbers are one number once in E.164 (or whose emails differ only in case)
/// cannot both keep it, so the keeper keeps it and the other loses it (reported for review,
/// with the spellings and who kept it).
pub fn resolve_contacts(users: &[User]) -> HashMap<String, Contact> {
    let mut contacts: HashMap<String, Contact> = HashMap::with_capacity(users.len());
    let mut live_phones: HashMap<String, Vec<&User>> = HashMap::new();
    let mut live_emails: HashMap<String, Vec<&User>> = HashMap::new();
    let mut deleted_phones: HashMap<String, Vec<&User>> = HashMap::new();
    for user in users {
        let id = text(&user.id).to_owned();
        let mut contact = Contact::default();
        match clean::email(user.email.as_deref()) {
            EmailOutcome::None => {}
            EmailOutcome::Valid(email) => contact.email = Some(email),
            EmailOutcome::Invalid(typed) => contact.fix(
                "invalid email dropped (review)",
                Some(format!("email {typed:?} is not an address: not carried")),
            ),
        }
        match clean::phone(text(&user.phone)) {
            Some(phone) => {
                if phone.as_e164() != text(&user.phone) {
                    contact.fix("phone rewritten to E.164", None);
                }
                contact.phone = Some(phone)
            }
            None => contact.fix(
                "phone is not a Kenyan mobile number: dropped (review)",
                Some(format!(
                    "phone {:?} is not a Kenyan mobile number: not carried (no sign-in by phone)",
                    text(&user.phone)
                )),
            ),
        }
        let live = user.deleted_at.is_none();
        if let Some(phone) = &contact.phone {
            let by_phone = if live {
                &mut live_phones
            } else {
                &mut deleted_phones
            };
            by_phone
                .entry(phone.as_e164().to_owned())
                .or_default()
                .push(user);
        }
        if let (true, Some(email)) = (live, &contact.email) {
            live_emails.entry(email.clone()).or_default().push(user);
        }
        contacts.insert(id, contact);
    }
    for (phone, mut group) in live_phones {
        if let Some(deleted) = deleted_phones.get(&phone) {
            let others = deleted
                .iter()
                .map(|d| format!("{} (typed {:?})", text(&d.id), text(&d.phone)))
                .collect::<Vec<_>>()
                .join(", ");
            for user in &group {
                if let Some(c) = contacts.get_mut(text(&user.id)) {
                    c.fix(
                        "same number as a soft-deleted user (duplicate spelling) (review)",
                        Some(format!(
                            "phone {:?} is {phone}, also on soft-deleted user {others}: kept here, the deleted user gets no login",
                            text(&user.phone)
                        )),
                    );
                }
            }
        }
        if group.len() < 2 {
            continue;
        }
        group.sort_by_key(|u| keeper_rank(u));
        let keeper = group[0];
        for loser in &group[1..] {
            if let Some(c) = contacts.get_mut(text(&loser.id)) {
                c.phone = None;
                c.fix(
                    "phone shared with another live user once in E.164: cleared (review)",
                    Some(format!(
                        "phone {:?} is {phone}, which live user {} (typed {:?}, last sign-in {}) keeps; this user (last sign-in {}) has no phone now",
                        text(&loser.phone),
                        text(&keeper.id),
                        text(&keeper.phone),
                        last_sign_in(keeper),
                        last_sign_in(loser),
                    )),
                );
            }
        }
    }
    for (email, mut group) in live_emails {
        if group.len() < 2 {
            continue;
        }
        group.sort_by_key(|u| keeper_rank(u));
        let keeper = group[0];
        for loser in &group[1..] {
            if let Some(c) = contacts.get_mut(text(&loser.id)) {
                c.email = None;
                c.fix(
                    "email shared with another live user (case differs): cleared (review)",
                    Some(format!(
                        "email {:?} is {email}, which live user {} (typed {:?}, last sign-in {}) keeps; this user (last sign-in {}) has no email now",
                        text(&loser.email),
                        text(&keeper.id),
                        text(&keeper.email),
                        last_sign_in(keeper),
                        last_sign_in(loser),
                    )),
                );
            }
        }
    }
    contacts
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) && hash.len() == 60
}

/// The target rows of one user, given their resolved contact.
pub fn transform(user: &User, contact: &Contact, out: &mut Batch) {
    let id = text(&user.id).to_owned();
    let table = User::TABLE;
    let times = (|| -> Result<_, String> {
        let created = clean::nairobi_to_utc(text(&user.created_at))?;
        let (updated, fixed) = clean::updated_not_before_created(
            &created,
            &clean::nairobi_to_utc(text(&user.updated_at))?,
        );
        let last_login = user
            .last_login_at
            .as_deref()
            .map(clean::nairobi_to_utc)
            .transpose()?;
        let deleted = user
            .deleted_at
            .as_deref()
            .map(clean::nairobi_to_utc)
            .transpose()?;
        Ok((created, updated, fixed, last_login, deleted))
    })();
    let (created, updated, clock_fixed, last_login, deleted) = match times {
        Ok(times) => times,
        Err(reason) => return out.issue(Issue::rejected(table, &id, reason)),
    };
    if clock_fixed {
        out.issue(Issue::fixed(
            table,
            &id,
            "updated_at before created_at: set to created_at",
        ));
    }
    for fix in &contact.fixes {
        let issue = Issue::fixed(table, &id, fix.reason.clone());
        out.issue(match &fix.detail {
            Some(detail) => issue.with_detail(detail.clone()),
            None => issue,
        });
    }
    let live = deleted.is_none();
    // Deleted users keep their profile but no login: their email and phone may belong to the
    // live account of the same person now, and auth.users has no partial unique index.
    let auth_email = contact.email.clone().filter(|_| live);
    let auth_phone = contact
        .phone
        .as_ref()
        .filter(|_| live)
        .map(|p| p.msisdn().to_owned());
    let password = user.password_hash.as_deref().filter(|h| is_bcrypt(h));
    if user.password_hash.is_some() && password.is_none() {
        out.issue(Issue::fixed(
            table,
            &id,
            "password hash is not bcrypt: not carried (password reset needed)",
        ));
    }
    let mut providers = Vec::new();
    if auth_email.is_some() {
        providers.push("email");
    }
    if auth_phone.is_some() {
        providers.push("phone");
    }
    let mut app_meta = json!({
        "provider": providers.first().copied().unwrap_or("email"),
        "providers": providers,
    });
    if model::flag(&user.is_admin) {
        app_meta["platform_role"] = json!("admin");
    }
    let first = clean::name(user.first_name.as_deref());
    let last = clean::name(user.last_name.as_deref());
    let user_meta = json!({ "first_name": first, "last_name": last, "legacy": true });
    let email_confirmed = auth_email
        .as_ref()
        .filter(|_| model::flag(&user.email_verified))
        .map(|_| created.clone());
    out.push(
        target::AUTH_USERS,
        vec![
            some(INSTANCE),
            some(&id),
            some("authenticated"),
            some("authenticated"),
            auth_email.clone(),
            password.map(str::to_owned),
            email_confirmed,
            some(""),
            some(""),
            some(""),
            some(""),
            last_login.clone(),
            some(app_meta),
            some(user_meta),
            None,
            some(&created),
            some(&updated),
            auth_phone.clone(),
            auth_phone.as_ref().map(|_| created.clone()),
            some("f"),
            deleted.clone(),
            some("f"),
        ],
    );
    if let Some(email) = &auth_email {
        let data = json!({ "sub": id, "email": email, "email_verified": email_confirmed_flag(user), "phone_verified": false });
        identity(out, &id, "email", data, &created, &updated, &last_login);
    }
    if let Some(phone) = &auth_phone {
        let data =
            json!({ "sub": id, "phone": phone, "email_verified": false, "phone_verified": true });
        identity(out, &id, "phone", data, &created, &updated, &last_login);
    }
    let id_number = user.id_number.as_deref().and_then(|n| {
        let cleaned = clean::id_number(n);
        if cleaned.is_none() {
            out.issue(Issue::fixed(
                table,
                &id,
                "national ID number malformed: dropped",
            ));
        }
        cleaned
    });
    out.push(
        target::USERS,
        vec![
            some(&id),
            contact.email.clone(),
            contact.phone.as_ref().map(|p| p.as_e164().to_owned()),
            first,
            last,
            id_number,
            user.avatar_url.clone(),
            some(clean::language(text(&user.language))),
            some(&id),
            some(&created),
            some(&updated),
            deleted,
        ],
    );
    match user.pin_hash.as_deref() {
        Some(hash) if is_bcrypt(hash) => out.push(
            target::USER_PINS,
            vec![some(&id), some(hash), some(&created), some(&updated)],
        ),
        Some(_) => out.issue(Issue::fixed(
            table,
            &id,
            "PIN hash is not bcrypt: not carried (PIN reset needed)",
        )),
        None => {}
    }
}

fn email_confirmed_flag(user: &User) -> bool {
    model::flag(&user.email_verified)
}

fn identity(
    out: &mut Batch,
    user: &str,
    provider: &str,
    data: serde_json::Value,
    created: &str,
    updated: &str,
    last_login: &Option<String>,
) {
    let id = crate::ids::derived(&format!("identity:{provider}:{user}"));
    out.push(
        target::AUTH_IDENTITIES,
        vec![
            some(id),
            some(user),
            some(user),
            some(data),
            some(provider),
            last_login.clone(),
            some(created),
            some(updated),
        ],
    );
}

/// The set of user ids (text) that exist in legacy, for references that have no foreign key.
pub fn ids(users: &[User]) -> std::collections::HashSet<Uuid> {
    users
        .iter()
        .filter_map(|u| u.id.as_deref().and_then(|id| id.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u128, phone: &str, email: Option<&str>, deleted: bool, login: &str) -> User {
        User {
            id: Some(Uuid::from_u128(id).to_string()),
            phone: Some(phone.into()),
            email: email.map(Into::into),
            created_at: Some("2020-01-01 10:00:00".into()),
            updated_at: Some("2020-01-01 10:00:00".into()),
            last_login_at: Some(login.into()),
            deleted_at: deleted.then(|| "2022-01-01 00:00:00".to_owned()),
            password_hash: Some(format!("$2b$10${}", "a".repeat(53))),
            ..User::default()
        }
    }

    #[test]
    fn two_spellings_of_one_number_keep_one_live_owner() {
        let users = vec![
            user(1, "0712345678", None, false, "2024-01-01 00:00:00"),
            user(2, "+254 712 345 678", None, false, "2024-06-01 00:00:00"),
            user(3, "712345678", None, true, "2019-01-01 00:00:00"),
        ];
        let contacts = resolve_contacts(&users);
        let c = |n: u128| &contacts[&Uuid::from_u128(n).to_string()];
        assert_eq!(
            c(2).phone.as_ref().unwrap().as_e164(),
            "+254712345678",
            "last sign-in keeps it"
        );
        assert!(c(1).phone.is_none());
        let shared = c(1)
            .fixes
            .iter()
            .find(|f| f.reason.contains("shared"))
            .unwrap();
        let detail = shared.detail.as_deref().unwrap();
        assert!(
            detail.contains(&Uuid::from_u128(2).to_string()) && detail.contains("0712345678"),
            "names who kept it and the spelling: {detail}"
        );
        assert_eq!(
            c(3).phone.as_ref().unwrap().as_e164(),
            "+254712345678",
            "deleted rows keep theirs"
        );
    }

    #[test]
    fn a_trunk_zero_after_the_country_code_reveals_the_duplicate_it_hides() {
        let users = vec![
            user(1, "+254 0712 999 001", None, false, "2023-01-01 00:00:00"),
            user(2, "0712999001", None, false, "2024-01-01 00:00:00"),
            user(3, "+2540712999002", None, false, "2024-01-01 00:00:00"),
        ];
        let contacts = resolve_contacts(&users);
        let c = |n: u128| &contacts[&Uuid::from_u128(n).to_string()];
        assert_eq!(c(2).phone.as_ref().unwrap().as_e164(), "+254712999001");
        assert!(c(1).phone.is_none(), "one number, one live owner");
        let fix = c(1)
            .fixes
            .iter()
            .find(|f| f.reason.ends_with("(review)") && f.reason.contains("shared"))
            .unwrap();
        assert!(
            fix.detail.as_deref().unwrap().contains("+254 0712 999 001"),
            "{fix:?}"
        );
        assert_eq!(c(3).phone.as_ref().unwrap().as_e164(), "+254712999002");
    }

    #[test]
    fn emails_differing_in_case_keep_one_live_owner_and_junk_goes() {
        let users = vec![
            user(
                1,
                "0712000001",
                Some("Jane@Example.com"),
                false,
                "2024-01-01 00:00:00",
            ),
            user(
                2,
                "0712000002",
                Some("jane@example.com"),
                false,
                "2023-01-01 00:00:00",
            ),
            user(3, "0712000003", Some("n/a"), false, "2023-01-01 00:00:00"),
        ];
        let contacts = resolve_contacts(&users);
        let c = |n: u128| &contacts[&Uuid::from_u128(n).to_string()];
        assert_eq!(c(1).email.as_deref(), Some("jane@example.com"));
        assert_eq!(c(2).email, None);
        assert_eq!(c(3).email, None);
        assert!(c(3).fixes.iter().any(|f| f.reason.contains("invalid email")
            && f.detail.as_deref().is_some_and(|d| d.contains("n/a"))));
    }

    #[test]
    fn credentials_move_and_deleted_users_get_no_login() {
        let mut live = user(
            1,
            "0712000001",
            Some("a@example.com"),
            false,
            "2024-01-01 00:00:00",
        );
        live.pin_hash = Some(format!("$2b$10${}", "b".repeat(53)));
        let deleted = user(
            2,
            "0712000002",
            Some("b@example.com"),
            true,
            "2024-01-01 00:00:00",
        );
        let contacts = resolve_contacts(&[live.clone(), deleted.clone()]);
        let mut out = Batch::default();
        transform(&live, &contacts[text(&live.id)], &mut out);
        transform(&deleted, &contacts[text(&deleted.id)], &mut out);
        let auth = out.rows_of(&target::AUTH_USERS);
        assert_eq!(
            auth[0][5], live.password_hash,
            "the bcrypt hash is the password"
        );
        assert_eq!(
            auth[0][17].as_deref(),
            Some("254712000001"),
            "GoTrue's phone form"
        );
        assert_eq!(auth[1][4], None, "a deleted user has no login email");
        assert_eq!(
            out.rows_of(&target::AUTH_IDENTITIES).len(),
            2,
            "email and phone identities of the live user"
        );
        assert_eq!(out.rows_of(&target::USER_PINS)[0][1], live.pin_hash);
        let profiles = out.rows_of(&target::USERS);
        assert_eq!(
            profiles[1][1].as_deref(),
            Some("b@example.com"),
            "the profile keeps it"
        );
        assert_eq!(
            profiles[0][9].as_deref(),
            Some("2020-01-01 07:00:00.000000+00"),
            "UTC"
        );
    }
}
