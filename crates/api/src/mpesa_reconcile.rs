//! Reconciliation: what Daraja never called back about. STK requests sent and unanswered for a
//! while are asked about (STK query) and settled on the answer; payouts with no result get a
//! transaction status query (its answer arrives as a callback). The report says what changed
//! and what is stuck.

use std::time::Duration;

use pesachama_mpesa::client::StkQueryOutcome;
use pesachama_store::mpesa as store;
use pesachama_store::{PgPool, StoreError};
use serde::Serialize;
use uuid::Uuid;

use crate::mpesa_worker::Mpesa;

#[derive(Debug, Default, Serialize)]
pub struct ReconcileReport {
    /// STK requests asked about.
    pub stk_queried: usize,
    /// Payment requests settled: (id, what they became).
    pub changed: Vec<(Uuid, String)>,
    /// Still waiting for the payer.
    pub still_pending: Vec<Uuid>,
    /// Payouts whose status was asked for.
    pub payouts_queried: Vec<Uuid>,
    /// Callbacks and payment requests held for review (a person must look).
    pub review_callbacks: i64,
    pub review_requests: i64,
    /// Daraja could not answer about these.
    pub errors: Vec<String>,
}

/// One pass over what has waited longer than `older_than`.
pub async fn reconcile_once(
    pool: &PgPool,
    mpesa: &Mpesa,
    older_than: Duration,
) -> Result<ReconcileReport, StoreError> {
    let mut report = ReconcileReport::default();
    for request in store::unanswered_requests(pool, older_than.as_secs_f64(), 200).await? {
        let Some(checkout) = &request.checkout_request_id else {
            continue;
        };
        report.stk_queried += 1;
        match mpesa.client.stk_query(checkout).await {
            Ok(StkQueryOutcome::Pending) => report.still_pending.push(request.id),
            Ok(StkQueryOutcome::Final {
                result_code,
                result_desc,
            }) => {
                let code = i32::try_from(result_code).unwrap_or(i32::MAX);
                let became = store::apply_stk_query(pool, request.id, code, &result_desc).await?;
                if became != "unchanged" {
                    tracing::info!(payment_request_id = %request.id, became, "reconciled by STK query");
                    report.changed.push((request.id, became));
                }
            }
            Err(err) => report
                .errors
                .push(format!("payment request {}: {err}", request.id)),
        }
    }
    if mpesa.pays_out() {
        for id in store::unsettled_payouts(pool, older_than.as_secs_f64(), 200).await? {
            pesachama_store::mpesa_b2c::enqueue_status(pool, id, 0.0, "reconciliation").await?;
            report.payouts_queried.push(id);
        }
    }
    (report.review_callbacks, report.review_requests) = store::review_counts(pool).await?;
    Ok(report)
}
