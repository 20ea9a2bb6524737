//! What the delivery worker reads and writes about notifications and devices.

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::StoreError;

/// One notification bound for one device.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PushTarget {
    pub title: String,
    pub body: Option<String>,
    /// The notification's data with its id, type and chama added, for the app to route on.
    pub data: Value,
    pub token: String,
    pub platform: String,
}

/// The notification and the device of a `push` outbox message; `None` when either is gone
/// (the notification deleted, the device forgotten or moved to another account).
pub async fn push_target(
    executor: impl PgExecutor<'_>,
    notification_id: Uuid,
    device_id: Uuid,
) -> Result<Option<PushTarget>, StoreError> {
    Ok(sqlx::query_as(
        "select n.title, n.body,
                n.data || jsonb_strip_nulls(jsonb_build_object(
                  'notification_id', n.id, 'type', n.type, 'chama_id', n.chama_id)) as data,
                d.token, d.platform
           from public.notifications n
           join public.device_tokens d on d.id = $2 and d.user_id = n.user_id
          where n.id = $1",
    )
    .bind(notification_id)
    .bind(device_id)
    .fetch_optional(executor)
    .await?)
}

/// Forgets a device whose token the push service declared dead (unless it was registered
/// again with a new token meanwhile).
pub async fn forget_device(
    executor: impl PgExecutor<'_>,
    device_id: Uuid,
    token: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("delete from public.device_tokens where id = $1 and token = $2")
        .bind(device_id)
        .bind(token)
        .execute(executor)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Records that a notification went out on `channel` (`push`, `sms` or `email`).
pub async fn mark_sent(
    executor: impl PgExecutor<'_>,
    notification_id: Uuid,
    channel: &str,
) -> Result<(), StoreError> {
    sqlx::query("select internal.notification_sent($1, $2)")
        .bind(notification_id)
        .bind(channel)
        .execute(executor)
        .await?;
    Ok(())
}

/// Notifies the members of meetings starting within `hours`, once per meeting; answers how
/// many meetings were announced.
pub async fn send_meeting_reminders(
    executor: impl PgExecutor<'_>,
    hours: i32,
) -> Result<i32, StoreError> {
    Ok(
        sqlx::query_scalar("select internal.send_meeting_reminders(make_interval(hours => $1))")
            .bind(hours)
            .fetch_one(executor)
            .await?,
    )
}
