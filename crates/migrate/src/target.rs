//! The target tables the toolkit writes, their columns in COPY order, and the key `verify`
//! compares them by. One list, used by `copy` (where rows go), `verify` (what to compare) and
//! `status` (what to count).

/// A target table and the columns the migration fills.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Schema-qualified name, e.g. `public.users`.
    pub name: &'static str,
    pub columns: &'static [&'static str],
    /// An SQL expression giving each row a unique uuid, for key ranges in `verify`.
    pub key: &'static str,
}

macro_rules! table {
    ($ident:ident, $name:literal, $key:literal, [$($col:literal),* $(,)?]) => {
        pub const $ident: Table = Table { name: $name, key: $key, columns: &[$($col),*] };
    };
}

table!(
    AUTH_USERS,
    "auth.users",
    "id",
    [
        "instance_id",
        "id",
        "aud",
        "role",
        "email",
        "encrypted_password",
        "email_confirmed_at",
        "confirmation_token",
        "recovery_token",
        "email_change_token_new",
        "email_change",
        "last_sign_in_at",
        "raw_app_meta_data",
        "raw_user_meta_data",
        "is_super_admin",
        "created_at",
        "updated_at",
        "phone",
        "phone_confirmed_at",
        "is_sso_user",
        "deleted_at",
        "is_anonymous",
    ]
);
table!(
    AUTH_IDENTITIES,
    "auth.identities",
    "id",
    [
        "id",
        "provider_id",
        "user_id",
        "identity_data",
        "provider",
        "last_sign_in_at",
        "created_at",
        "updated_at",
    ]
);
table!(
    USERS,
    "public.users",
    "id",
    [
        "id",
        "email",
        "phone",
        "first_name",
        "last_name",
        "id_number",
        "avatar_url",
        "language",
        "legacy_id",
        "created_at",
        "updated_at",
        "deleted_at",
    ]
);
table!(
    USER_PINS,
    "internal.user_pins",
    "user_id",
    ["user_id", "pin_hash", "created_at", "updated_at"]
);
table!(
    CHAMAS,
    "public.chamas",
    "id",
    [
        "id",
        "name",
        "description",
        "chama_type",
        "registration_number",
        "contribution_amount",
        "contribution_frequency",
        "balance",
        "paybill_account",
        "join_code",
        "required_approvals",
        "status",
        "created_by",
        "legacy_id",
        "created_at",
        "updated_at",
        "closed_at",
        "deleted_at",
    ]
);
table!(
    MEMBERS,
    "public.chama_members",
    "id",
    [
        "id",
        "chama_id",
        "user_id",
        "role",
        "status",
        "contributed_total",
        "joined_at",
        "left_at",
        "created_at",
        "updated_at",
    ]
);
table!(
    ACCOUNTS,
    "internal.ledger_accounts",
    "id",
    ["id", "chama_id", "kind", "user_id", "balance", "created_at"]
);
table!(
    JOURNALS,
    "internal.journals",
    "id",
    [
        "id",
        "chama_id",
        "kind",
        "memo",
        "reverses_id",
        "created_by",
        "created_at"
    ]
);
table!(
    POSTINGS,
    "internal.postings",
    "md5(journal_id::text || '/' || account_id::text)::uuid",
    ["journal_id", "account_id", "amount",]
);
table!(
    TRANSACTIONS,
    "public.transactions",
    "id",
    [
        "id",
        "chama_id",
        "user_id",
        "type",
        "amount",
        "status",
        "payment_method",
        "reference",
        "mpesa_receipt",
        "phone",
        "description",
        "journal_id",
        "reverses_id",
        "reason",
        "metadata",
        "legacy_id",
        "created_at",
        "updated_at",
    ]
);
table!(
    DISBURSEMENTS,
    "public.disbursement_requests",
    "id",
    [
        "id",
        "chama_id",
        "requested_by",
        "recipient_phone",
        "amount",
        "reason",
        "status",
        "required_approvals",
        "approvals_count",
        "rejections_count",
        "transaction_id",
        "decided_at",
        "expires_at",
        "legacy_id",
        "created_at",
        "updated_at",
    ]
);
table!(
    APPROVALS,
    "public.disbursement_approvals",
    "id",
    [
        "id",
        "request_id",
        "chama_id",
        "approver_id",
        "decision",
        "comment",
        "created_at",
    ]
);
table!(
    MEETINGS,
    "public.meetings",
    "id",
    [
        "id",
        "chama_id",
        "title",
        "agenda",
        "scheduled_for",
        "duration_minutes",
        "venue",
        "meeting_type",
        "agora_channel",
        "minutes",
        "status",
        "created_by",
        "legacy_id",
        "created_at",
        "updated_at",
    ]
);
table!(
    ATTENDANCE,
    "public.meeting_attendance",
    "md5(meeting_id::text || '/' || user_id::text)::uuid",
    [
        "meeting_id",
        "chama_id",
        "user_id",
        "status",
        "created_at",
        "updated_at",
    ]
);
table!(
    NOTIFICATIONS,
    "public.notifications",
    "id",
    [
        "id",
        "user_id",
        "chama_id",
        "type",
        "title",
        "body",
        "data",
        "sent_via",
        "read_at",
        "legacy_id",
        "created_at",
    ]
);
table!(
    DEVICES,
    "public.device_tokens",
    "id",
    [
        "id",
        "user_id",
        "token",
        "platform",
        "created_at",
        "updated_at",
        "last_seen_at",
    ]
);
table!(
    LEGACY_AUDIT,
    "internal.legacy_audit_logs",
    "md5(id::text)::uuid",
    [
        "id",
        "actor_id",
        "action",
        "entity_type",
        "entity_id",
        "changes",
        "ip_address",
        "user_agent",
        "created_at",
    ]
);

/// Every table the migration writes, in load order.
pub const ALL: &[Table] = &[
    AUTH_USERS,
    AUTH_IDENTITIES,
    USERS,
    USER_PINS,
    CHAMAS,
    MEMBERS,
    MEETINGS,
    ATTENDANCE,
    DEVICES,
    ACCOUNTS,
    JOURNALS,
    POSTINGS,
    TRANSACTIONS,
    DISBURSEMENTS,
    APPROVALS,
    NOTIFICATIONS,
    LEGACY_AUDIT,
];

/// Where a run writes: the target tables themselves (`copy`) or a private copy of each in a
/// scratch schema (`verify`, which rebuilds the expected rows to compare them).
#[derive(Debug, Clone)]
pub enum Sink {
    Target,
    Scratch(String),
}

impl Sink {
    /// The table name to write for `table`.
    pub fn table(&self, table: &Table) -> String {
        match self {
            Sink::Target => table.name.to_owned(),
            Sink::Scratch(schema) => format!("{schema}.{}", table.name.replace('.', "__")),
        }
    }
}

/// What happened to a legacy row on its way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    /// The legacy table.
    pub table: &'static str,
    pub legacy_id: String,
    pub severity: Severity,
    /// A short, stable reason (reports group by it).
    pub reason: String,
    /// What changed in this row, for a person to review (kept per row for the fixes whose
    /// reason ends in "(review)", in `pesachama_migrate.fixed_rows` and the reports).
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Moved, after a change the reason describes.
    Fixed,
    /// Not moved: the reason says why (kept in the quarantine table).
    Rejected,
    /// Deliberately not moved (legacy sessions, expired USSD sessions).
    Skipped,
}

impl Issue {
    pub fn fixed(table: &'static str, id: impl ToString, reason: impl Into<String>) -> Self {
        Self {
            table,
            legacy_id: id.to_string(),
            severity: Severity::Fixed,
            reason: reason.into(),
            detail: None,
        }
    }
    pub fn rejected(table: &'static str, id: impl ToString, reason: impl Into<String>) -> Self {
        Self {
            table,
            legacy_id: id.to_string(),
            severity: Severity::Rejected,
            reason: reason.into(),
            detail: None,
        }
    }

    /// This issue, saying what changed in the row.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// A fix a person must be able to review row by row (the reason ends in "(review)").
    pub fn for_review(&self) -> bool {
        self.severity == Severity::Fixed && self.reason.ends_with("(review)")
    }
}
