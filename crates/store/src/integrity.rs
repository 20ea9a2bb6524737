//! The data-integrity report: the founding plan's tests plus ledger, audit and RLS checks.
//!
//! The checks themselves are SQL (`internal.integrity_report()`), so an operator can run the
//! same report from Supabase's SQL editor; this module only fetches it.

use sqlx::PgExecutor;

use crate::StoreError;

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Check {
    #[sqlx(rename = "check_name")]
    pub name: String,
    pub description: String,
    pub violations: i64,
    /// Up to a few ids of offending rows.
    pub sample: Vec<String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.violations == 0
    }
}

pub async fn report(executor: impl PgExecutor<'_>) -> Result<Vec<Check>, StoreError> {
    sqlx::query_as::<_, Check>(
        "select check_name, description, violations, coalesce(sample, '{}') as sample
         from internal.integrity_report()",
    )
    .fetch_all(executor)
    .await
    .map_err(StoreError::from_missing_schema)
}
