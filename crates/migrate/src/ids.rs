//! Legacy ids to target ids, deterministically.
//!
//! Legacy rows keyed by `bigserial`/`serial` get a UUIDv5 from a fixed namespace and the text
//! `<table>:<id>`, so every run (copy, a resumed copy, verify, a re-run next week) agrees on
//! every id without storing a mapping table, and references to legacy ids (inside
//! `notifications.data`, `disbursement_requests.transaction_id`) are rewritten by the same
//! function. Legacy rows that already have a UUID keep it: the member's `auth.users` id is their
//! legacy user id, so nothing that names a user needs rewriting.

use uuid::Uuid;

/// The namespace of every id this toolkit derives (a random v4 fixed once, never to change:
/// changing it would give a re-run different ids from the first run).
pub const NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_6a4f_0b8e_4d1c_9a3b_7f2e_61d0_c4a9);

/// The target id of legacy row `id` of `table` (for example `("transactions", 123)`).
pub fn legacy(table: &str, id: i64) -> Uuid {
    derived(&format!("{table}:{id}"))
}

/// A target id for something the migration creates (an opening balance, a ledger account, an
/// identity), named by a stable text.
pub fn derived(name: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// The ledger account of a chama, of a kind, or of a member's equity.
pub fn account(chama: Uuid, kind: &str, user: Option<Uuid>) -> Uuid {
    match user {
        Some(user) => derived(&format!("account:{chama}:{kind}:{user}")),
        None => derived(&format!("account:{chama}:{kind}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_legacy_id_always_maps_to_the_same_uuid() {
        let a = legacy("transactions", 42);
        assert_eq!(a, legacy("transactions", 42));
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, legacy("transactions", 43));
        assert_ne!(
            a,
            legacy("notifications", 42),
            "tables have separate id spaces"
        );
    }

    #[test]
    fn accounts_differ_by_kind_and_member() {
        let chama = Uuid::from_u128(1);
        let user = Uuid::from_u128(2);
        assert_ne!(account(chama, "cash", None), account(chama, "fees", None));
        assert_ne!(
            account(chama, "member_equity", Some(user)),
            account(chama, "member_equity", Some(Uuid::from_u128(3)))
        );
        assert_eq!(account(chama, "cash", None), account(chama, "cash", None));
    }
}
