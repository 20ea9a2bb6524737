//! Payouts by M-Pesa B2C (`20260102000200_mpesa_b2c.sql`): the calls the worker and the
//! callback applier make, each one statement.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::StoreError;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Payout {
    pub id: Uuid,
    pub chama_id: Uuid,
    pub recipient_phone: String,
    /// Cents.
    pub amount: i64,
    pub status: String,
    pub reason: String,
    pub originator_conversation_id: Option<String>,
    pub conversation_id: Option<String>,
}

pub async fn payout(executor: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Payout>, StoreError> {
    Ok(sqlx::query_as(
        "select id, chama_id, recipient_phone::text as recipient_phone, amount, status, reason,
                originator_conversation_id, conversation_id
           from public.disbursement_requests where id = $1",
    )
    .bind(id)
    .fetch_optional(executor)
    .await?)
}

/// Marks the payout `processing` with our OriginatorConversationID before Daraja is called;
/// `None` when it was started (or settled) already: then it must not be paid again.
pub async fn starting(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("select internal.b2c_payout_starting($1)")
            .bind(id)
            .fetch_one(executor)
            .await?,
    )
}

pub async fn accepted(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    conversation_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("select internal.b2c_payout_accepted($1, $2)")
        .bind(id)
        .bind(conversation_id)
        .execute(executor)
        .await?;
    Ok(())
}

/// Daraja refused the payment outright: the money goes back to the chama.
pub async fn refused(executor: impl PgExecutor<'_>, id: Uuid, why: &str) -> Result<(), StoreError> {
    sqlx::query("select internal.settle_disbursement($1, false, null, $2, null)")
        .bind(id)
        .bind(why)
        .execute(executor)
        .await?;
    Ok(())
}

/// Asks the worker to query the payout's status after `delay_seconds`.
pub async fn enqueue_status(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    delay_seconds: f64,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query("select internal.enqueue_b2c_status($1, make_interval(secs => $2), $3)")
        .bind(id)
        .bind(delay_seconds)
        .bind(reason)
        .execute(executor)
        .await?;
    Ok(())
}

/// Daraja accepted a status query about the payout; `query_id` is the OriginatorConversationID
/// of its answer.
pub async fn status_query_sent(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    query_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("select internal.b2c_status_query_sent($1, $2)")
        .bind(id)
        .bind(query_id)
        .execute(executor)
        .await?;
    Ok(())
}

/// A B2C result, queue timeout or status result, parsed.
#[derive(Debug, Clone)]
pub struct B2cOutcome<'a> {
    pub originator_conversation_id: &'a str,
    pub conversation_id: &'a str,
    pub result_code: i32,
    pub result_desc: &'a str,
    pub receipt: Option<&'a str>,
    /// Cents.
    pub amount: Option<i64>,
}

/// Applies a stored B2C callback in one transaction; answers its new status.
pub async fn apply(
    executor: impl PgExecutor<'_>,
    callback_id: i64,
    outcome: &B2cOutcome<'_>,
) -> Result<String, StoreError> {
    Ok(
        sqlx::query_scalar("select internal.apply_b2c_callback($1, $2, $3, $4, $5, $6, $7)")
            .bind(callback_id)
            .bind(outcome.originator_conversation_id)
            .bind(outcome.conversation_id)
            .bind(outcome.result_code)
            .bind(outcome.result_desc)
            .bind(outcome.receipt)
            .bind(outcome.amount)
            .fetch_one(executor)
            .await?,
    )
}
