//! M-Pesa: payment requests on their way to Daraja, and the callback inbox
//! (`internal.mpesa_callbacks`). The rules (exactly once, review on mismatch) are in the
//! database functions of `20260102000100_mpesa_stk.sql`; these are their typed calls.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::StoreError;

/// A payment request, as the worker needs it to start the STK push.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRequest {
    pub id: Uuid,
    pub chama_id: Uuid,
    pub user_id: Uuid,
    pub phone: String,
    /// Cents.
    pub amount: i64,
    pub status: String,
    pub checkout_request_id: Option<String>,
    /// What the payer sees as the account: the chama's paybill account, or its name.
    pub account_reference: String,
    pub created_at: DateTime<Utc>,
}

const PAYMENT_REQUEST: &str = "select r.id, r.chama_id, r.user_id, r.phone::text as phone, r.amount,
        r.status, r.checkout_request_id,
        coalesce(c.paybill_account, left(regexp_replace(upper(c.name), '[^A-Z0-9]', '', 'g'), 12)) as account_reference,
        r.created_at
   from public.payment_requests r join public.chamas c on c.id = r.chama_id";

pub async fn payment_request(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<PaymentRequest>, StoreError> {
    Ok(
        sqlx::query_as(&format!("{PAYMENT_REQUEST} where r.id = $1"))
            .bind(id)
            .fetch_optional(executor)
            .await?,
    )
}

/// Requests sent to Daraja longer ago than `older_than_seconds` without a result.
pub async fn unanswered_requests(
    executor: impl PgExecutor<'_>,
    older_than_seconds: f64,
    limit: i64,
) -> Result<Vec<PaymentRequest>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "{PAYMENT_REQUEST} where r.status = 'sent' and r.updated_at <= now() - make_interval(secs => $1)
          order by r.created_at limit $2"
    ))
    .bind(older_than_seconds)
    .bind(limit)
    .fetch_all(executor)
    .await?)
}

/// Daraja accepted the push; answers false when the request was no longer queued.
pub async fn stk_push_sent(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    merchant_request_id: &str,
    checkout_request_id: &str,
) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar("select internal.stk_push_sent($1, $2, $3)")
            .bind(id)
            .bind(merchant_request_id)
            .bind(checkout_request_id)
            .fetch_one(executor)
            .await?,
    )
}

/// Marks that the worker is about to send the request's STK push (committed before the call);
/// `false` when an earlier attempt got this far: then it must not be pushed again.
pub async fn stk_push_starting(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar("select internal.stk_push_starting($1)")
        .bind(id)
        .fetch_one(executor)
        .await?)
}

/// The push certainly did not reach Daraja: a later attempt may send it.
pub async fn stk_push_not_sent(executor: impl PgExecutor<'_>, id: Uuid) -> Result<(), StoreError> {
    sqlx::query("select internal.stk_push_not_sent($1)")
        .bind(id)
        .execute(executor)
        .await?;
    Ok(())
}

/// The request failed (Daraja refused it, or M-Pesa said no); the member is told `reason`.
pub async fn fail_payment_request(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    code: Option<i32>,
    desc: &str,
    reason: &str,
) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar("select internal.fail_payment_request($1, $2, $3, $4)")
            .bind(id)
            .bind(code)
            .bind(desc)
            .bind(reason)
            .fetch_one(executor)
            .await?,
    )
}

/// The member-friendly sentence for a ResultCode.
pub async fn failure_reason(
    executor: impl PgExecutor<'_>,
    code: i32,
) -> Result<String, StoreError> {
    Ok(
        sqlx::query_scalar("select internal.mpesa_failure_reason($1)")
            .bind(code)
            .fetch_one(executor)
            .await?,
    )
}

/// Stores a callback raw. `None` when the same (kind, key) is stored already: a repeat.
pub async fn store_callback(
    executor: impl PgExecutor<'_>,
    kind: &str,
    key: &str,
    payload: &Value,
    source_ip: Option<String>,
    status: &str,
    error: Option<&str>,
) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("select internal.store_mpesa_callback($1, $2, $3, $4::inet, $5, $6)")
            .bind(kind)
            .bind(key)
            .bind(payload)
            .bind(source_ip)
            .bind(status)
            .bind(error)
            .fetch_one(executor)
            .await?,
    )
}

/// A callback to store with [`store_callbacks`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewCallback<'a> {
    pub kind: &'a str,
    pub key: &'a str,
    pub payload: &'a Value,
    pub source_ip: Option<&'a str>,
    pub status: &'a str,
}

/// Stores callbacks raw with one statement: for each, in order, its id, or `None` for a repeat
/// (its (kind, key) stored already, or by an earlier callback of the same call).
pub async fn store_callbacks(
    executor: impl PgExecutor<'_>,
    callbacks: &[NewCallback<'_>],
) -> Result<Vec<Option<i64>>, StoreError> {
    let stored: Vec<(i64, String, String)> = sqlx::query_as(
        "insert into internal.mpesa_callbacks (kind, idempotency_key, payload, source_ip, status)
         select c.kind, c.key, c.payload, c.source_ip::inet, c.status
           from jsonb_to_recordset($1) as c(kind text, key text, payload jsonb, source_ip text, status text)
         on conflict on constraint mpesa_callbacks_idempotency_key do nothing
         returning id, kind, idempotency_key",
    )
    .bind(sqlx::types::Json(callbacks))
    .fetch_all(executor)
    .await?;
    let mut ids: std::collections::HashMap<(String, String), i64> = stored
        .into_iter()
        .map(|(id, kind, key)| ((kind, key), id))
        .collect();
    // The first callback with a key is the one stored; later ones are its repeats.
    Ok(callbacks
        .iter()
        .map(|c| ids.remove(&(c.kind.to_owned(), c.key.to_owned())))
        .collect())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredCallback {
    pub id: i64,
    pub kind: String,
    pub idempotency_key: String,
    pub payload: Value,
    pub status: String,
    pub received_at: DateTime<Utc>,
}

/// Callbacks still `received` (not applied) after `older_than_seconds`, oldest first, except
/// those in `skip` (held by an applier that will apply them): so a backlog that applier holds
/// does not hide the callbacks behind it.
pub async fn pending_callbacks(
    executor: impl PgExecutor<'_>,
    older_than_seconds: f64,
    limit: i32,
    skip: &[i64],
) -> Result<Vec<StoredCallback>, StoreError> {
    Ok(sqlx::query_as(
        "select id, kind, idempotency_key, payload, status, received_at
           from internal.pending_mpesa_callbacks(make_interval(secs => $1), $2, $3)",
    )
    .bind(older_than_seconds)
    .bind(limit)
    .bind(skip)
    .fetch_all(executor)
    .await?)
}

/// STK callbacks still `received` with ids up to `up_to`, oldest first, at most `limit`,
/// except those in `skip`: what a server left in the inbox when its queue was full.
pub async fn spilled_stk_callbacks(
    executor: impl PgExecutor<'_>,
    up_to: i64,
    limit: i32,
    skip: &[i64],
) -> Result<Vec<StoredCallback>, StoreError> {
    Ok(sqlx::query_as(
        "select id, kind, idempotency_key, payload, status, received_at
           from internal.spilled_stk_callbacks($1, $2, $3)",
    )
    .bind(up_to)
    .bind(limit)
    .bind(skip)
    .fetch_all(executor)
    .await?)
}

pub async fn callback(
    executor: impl PgExecutor<'_>,
    id: i64,
) -> Result<Option<StoredCallback>, StoreError> {
    Ok(sqlx::query_as(
        "select id, kind, idempotency_key, payload, status, received_at
           from internal.mpesa_callbacks where id = $1",
    )
    .bind(id)
    .fetch_optional(executor)
    .await?)
}

/// A stored callback that could not be read: held for review.
pub async fn hold_callback(
    executor: impl PgExecutor<'_>,
    id: i64,
    error: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "update internal.mpesa_callbacks set status = 'review', error = left($2, 2000), applied_at = now()
          where id = $1 and status = 'received'",
    )
    .bind(id)
    .bind(error)
    .execute(executor)
    .await?;
    Ok(())
}

/// An STK result, parsed.
#[derive(Debug, Clone)]
pub struct StkResult<'a> {
    pub checkout_request_id: &'a str,
    pub result_code: i32,
    pub result_desc: &'a str,
    /// Cents; on success only.
    pub amount: Option<i64>,
    pub receipt: Option<&'a str>,
    /// E.164.
    pub phone: Option<&'a str>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// Applies a stored STK callback in one transaction; answers its new status (`applied`,
/// `review`, `ignored`, or `received` when its request is not known yet and `grace_seconds`
/// have not passed since it arrived).
pub async fn apply_stk(
    executor: impl PgExecutor<'_>,
    callback_id: i64,
    result: &StkResult<'_>,
    grace_seconds: f64,
) -> Result<String, StoreError> {
    Ok(sqlx::query_scalar(
        "select internal.apply_stk_callback($1, $2, $3, $4, $5, $6, $7, $8, make_interval(secs => $9))",
    )
    .bind(callback_id)
    .bind(result.checkout_request_id)
    .bind(result.result_code)
    .bind(result.result_desc)
    .bind(result.amount)
    .bind(result.receipt)
    .bind(result.phone)
    .bind(result.paid_at)
    .bind(grace_seconds)
    .fetch_one(executor)
    .await?)
}

/// Applies stored STK callbacks `(id, result)` in one transaction, as far as one statement per
/// table can: answers each callback's status after it, in the order given. `None` is a
/// callback the batch left alone (anything but a success matching its waiting request), for
/// [`apply_stk`] to decide.
pub async fn apply_stk_batch(
    executor: impl PgExecutor<'_>,
    callbacks: &[(i64, &StkResult<'_>)],
) -> Result<Vec<Option<String>>, StoreError> {
    let batch: Vec<Value> = callbacks
        .iter()
        .map(|(id, result)| {
            serde_json::json!({
                "id": id,
                "checkout_request_id": result.checkout_request_id,
                "result_code": result.result_code,
                "result_desc": result.result_desc,
                "amount": result.amount,
                "receipt": result.receipt,
                "phone": result.phone,
                "paid_at": result.paid_at,
            })
        })
        .collect();
    let sqlx::types::Json(answers): sqlx::types::Json<Vec<BatchAnswer>> =
        sqlx::query_scalar("select internal.apply_stk_callbacks($1)")
            .bind(sqlx::types::Json(&batch))
            .fetch_one(executor)
            .await?;
    let mut statuses = std::collections::HashMap::with_capacity(answers.len());
    for answer in answers {
        statuses.insert(answer.id, answer.status);
    }
    callbacks
        .iter()
        .map(|(id, _)| {
            statuses.get(id).cloned().ok_or_else(|| {
                StoreError::Database(sqlx::Error::Protocol(format!(
                    "the STK batch did not answer for callback {id}"
                )))
            })
        })
        .collect()
}

#[derive(Debug, serde::Deserialize)]
struct BatchAnswer {
    id: i64,
    status: Option<String>,
}

/// The chama of each payment request named by these CheckoutRequestIDs (unknown ones are absent).
pub async fn chamas_of_checkouts(
    executor: impl PgExecutor<'_>,
    checkout_request_ids: &[&str],
) -> Result<std::collections::HashMap<String, Uuid>, StoreError> {
    let rows: Vec<(String, Uuid)> = sqlx::query_as(
        "select checkout_request_id, chama_id from public.payment_requests
          where checkout_request_id = any($1)",
    )
    .bind(checkout_request_ids)
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().collect())
}

/// C2B validation: an active chama has this account number.
pub async fn c2b_account_known(
    executor: impl PgExecutor<'_>,
    bill_ref: &str,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar("select internal.c2b_account_known($1)")
        .bind(bill_ref)
        .fetch_one(executor)
        .await?)
}

/// Applies a stored C2B confirmation; answers its new status (`applied` or `review`).
pub async fn apply_c2b(
    executor: impl PgExecutor<'_>,
    callback_id: i64,
    trans_id: &str,
    amount: i64,
    bill_ref: &str,
    phone: Option<&str>,
    paid_at: Option<DateTime<Utc>>,
) -> Result<String, StoreError> {
    Ok(
        sqlx::query_scalar("select internal.apply_c2b_confirmation($1, $2, $3, $4, $5, $6)")
            .bind(callback_id)
            .bind(trans_id)
            .bind(amount)
            .bind(bill_ref)
            .bind(phone)
            .bind(paid_at)
            .fetch_one(executor)
            .await?,
    )
}

/// Settles a request on the word of an STK query: `completed`, `failed`, `review` or
/// `unchanged`.
pub async fn apply_stk_query(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    result_code: i32,
    result_desc: &str,
) -> Result<String, StoreError> {
    Ok(
        sqlx::query_scalar("select internal.apply_stk_query($1, $2, $3)")
            .bind(id)
            .bind(result_code)
            .bind(result_desc)
            .fetch_one(executor)
            .await?,
    )
}

/// Payouts `processing` for longer than `older_than_seconds`.
pub async fn unsettled_payouts(
    executor: impl PgExecutor<'_>,
    older_than_seconds: f64,
    limit: i32,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(
        sqlx::query_scalar("select internal.unsettled_payouts(make_interval(secs => $1), $2)")
            .bind(older_than_seconds)
            .bind(limit)
            .fetch_all(executor)
            .await?,
    )
}

/// What waits for a person: callbacks and payment requests held for review.
pub async fn review_counts(executor: impl PgExecutor<'_>) -> Result<(i64, i64), StoreError> {
    Ok(sqlx::query_as(
        "select (select count(*) from internal.mpesa_callbacks where status = 'review'),
                (select count(*) from public.payment_requests where status = 'review')",
    )
    .fetch_one(executor)
    .await?)
}
