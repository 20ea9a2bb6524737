//! The outbox worker and the sweeper, as `serve` runs them inside and `worker` runs them alone.

use std::sync::Arc;

use anyhow::Context as _;
use pesachama_api::delivery::{LocalMailbox, Worker};
use pesachama_store::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::{DeliveryArgs, Global};
use crate::database::Database;

/// The worker for these settings; `None` when it would have no channel at all (messages then
/// wait in the outbox for a process that has one).
pub fn worker(
    global: &Global,
    database: &Database,
    args: &DeliveryArgs,
    pool: &PgPool,
) -> anyhow::Result<Option<Worker>> {
    let mut worker = Worker::new(pool.clone());
    worker.mailbox = args
        .mailbox
        .clone()
        .or_else(|| {
            database
                .is_embedded()
                .then(|| global.data_dir.join("mailbox.jsonl"))
        })
        .map(|path| LocalMailbox { path });
    worker.sms = args
        .at_username
        .as_ref()
        .zip(args.at_api_key.as_ref())
        .map(|(username, key)| {
            let base = args.at_base_url.clone().unwrap_or_else(|| {
                if username == "sandbox" {
                    pesachama_api::sms::SANDBOX_URL.to_owned()
                } else {
                    pesachama_api::sms::PRODUCTION_URL.to_owned()
                }
            });
            tracing::info!(base, username, "SMS go through Africa's Talking");
            pesachama_api::sms::AfricasTalking::new(
                base,
                username.clone(),
                key.clone(),
                args.at_sender_id.clone(),
            )
        });
    if let Some(path) = &args.fcm_service_account {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("FCM_SERVICE_ACCOUNT: cannot read {}", path.display()))?;
        let account = pesachama_api::push::ServiceAccount::from_json(&text)
            .map_err(|err| anyhow::anyhow!("FCM_SERVICE_ACCOUNT ({}): {err}", path.display()))?;
        let fcm = pesachama_api::push::Fcm::new(&args.fcm_base_url, account)
            .map_err(|err| anyhow::anyhow!("FCM_SERVICE_ACCOUNT: {err}"))?;
        tracing::info!(
            project = fcm.project_id(),
            "push notifications go through FCM"
        );
        worker.push = Some(Arc::new(fcm));
    }
    if let (Some(url), Some(from)) = (&args.smtp_url, &args.smtp_from) {
        worker.email =
            Some(pesachama_api::email::Smtp::new(url, from).map_err(anyhow::Error::msg)?);
        tracing::info!(from, "email goes through SMTP");
    }
    if let Some(mailbox) = &worker.mailbox {
        tracing::info!(mailbox = %mailbox.path.display(), "messages with no provider go to the local mailbox");
    }
    let has_channel = worker.mailbox.is_some()
        || worker.sms.is_some()
        || worker.push.is_some()
        || worker.email.is_some();
    Ok(has_channel.then_some(worker))
}

/// Starts the worker (when it has a channel) and the sweeper; both stop when `stopped` turns
/// true.
pub fn spawn(
    worker: Option<Worker>,
    pool: &PgPool,
    stopped: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let mut tasks = vec![tokio::spawn(pesachama_api::delivery::run_sweeper(
        pool.clone(),
        until_stopped(),
    ))];
    if let Some(worker) = worker {
        tasks.push(tokio::spawn(worker.run(until_stopped())));
    }
    tasks
}
