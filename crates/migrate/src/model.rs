//! The legacy rows as read by COPY: every field text or NULL, parsed by the transforms.

use crate::pgtext::Fields;

macro_rules! legacy_row {
    ($(#[$doc:meta])* $name:ident, $table:literal, { $($field:ident = $column:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default)]
        pub struct $name {
            $(pub $field: Option<String>,)*
        }

        impl $name {
            pub const TABLE: &'static str = $table;
            pub const COLUMNS: &'static [&'static str] = &[$($column),*];

            pub fn from_fields(fields: Fields) -> Self {
                let mut it = fields.into_iter();
                Self { $($field: it.next().flatten(),)* }
            }

            /// The select list for `COPY (select ...) TO STDOUT`.
            pub fn select_list() -> String {
                Self::COLUMNS.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
            }
        }
    };
}

legacy_row!(User, "users", {
    id = "id", email = "email", phone = "phone", password_hash = "password_hash",
    pin_hash = "pin_hash", first_name = "first_name", last_name = "last_name",
    id_number = "id_number", avatar_url = "avatar_url", language = "language",
    is_admin = "is_admin", email_verified = "email_verified", last_login_at = "last_login_at",
    created_at = "created_at", updated_at = "updated_at", deleted_at = "deleted_at",
});

legacy_row!(Device, "user_devices", {
    id = "id", user_id = "user_id", fcm_token = "fcm_token", platform = "platform",
    created_at = "created_at",
});

legacy_row!(Chama, "chamas", {
    id = "id", name = "name", description = "description", chama_type = "chama_type",
    registration_number = "registration_number", contribution_amount = "contribution_amount",
    contribution_frequency = "contribution_frequency", balance = "balance",
    paybill_account = "paybill_account", required_approvals = "required_approvals",
    created_by = "created_by", status = "status", created_at = "created_at",
    updated_at = "updated_at", deleted_at = "deleted_at",
});

legacy_row!(Member, "chama_members", {
    id = "id", chama_id = "chama_id", user_id = "user_id", role = "role", status = "status",
    joined_at = "joined_at",
});

legacy_row!(Transaction, "transactions", {
    id = "id", chama_id = "chama_id", user_id = "user_id", kind = "type", amount = "amount",
    status = "status", payment_method = "payment_method", reference = "reference",
    mpesa_receipt = "mpesa_receipt", phone = "phone", description = "description",
    metadata = "metadata", created_at = "created_at", updated_at = "updated_at",
});

legacy_row!(Disbursement, "disbursement_requests", {
    id = "id", chama_id = "chama_id", requested_by = "requested_by",
    recipient_phone = "recipient_phone", amount = "amount", reason = "reason", status = "status",
    approvals = "approvals", transaction_id = "transaction_id", created_at = "created_at",
    updated_at = "updated_at",
});

legacy_row!(Meeting, "meetings", {
    id = "id", chama_id = "chama_id", title = "title", agenda = "agenda",
    scheduled_for = "scheduled_for", duration_minutes = "duration_minutes", venue = "venue",
    meeting_type = "meeting_type", agora_channel = "agora_channel", minutes = "minutes",
    recording_url = "recording_url", attendees = "attendees", status = "status",
    created_by = "created_by", created_at = "created_at", updated_at = "updated_at",
});

legacy_row!(Notification, "notifications", {
    id = "id", user_id = "user_id", kind = "type", title = "title", body = "body", data = "data",
    is_read = "is_read", sent_via = "sent_via", created_at = "created_at",
});

legacy_row!(AuditLog, "audit_logs", {
    id = "id", user_id = "user_id", action = "action", entity_type = "entity_type",
    entity_id = "entity_id", changes = "changes", ip_address = "ip_address",
    user_agent = "user_agent", created_at = "created_at",
});

/// `t`/`f` as COPY prints booleans.
pub fn flag(value: &Option<String>) -> bool {
    value.as_deref() == Some("t")
}

/// The text of a field, or `""`.
pub fn text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}
