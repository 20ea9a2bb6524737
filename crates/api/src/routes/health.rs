//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{AppState, error::ApiError};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the process is up and answering.
    pub status: &'static str,
    pub version: &'static str,
}

/// Liveness: answers as long as the process runs; touches nothing else.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`: the database answers and has every migration this build knows.
    pub status: &'static str,
    pub migrations_applied: usize,
}

/// Readiness: the database is reachable and its schema is current.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, body = Ready),
        (status = 503, description = "database unreachable or migrations pending", body = crate::error::ErrorBody)
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    let migrations = pesachama_store::migrations::status(&state.pool)
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "readiness: database check failed");
            ApiError::Unavailable("database unreachable".to_owned())
        })?;
    let pending = migrations
        .iter()
        .filter(|m| m.state == pesachama_store::migrations::State::Pending)
        .count();
    if pending > 0 {
        return Err(ApiError::Unavailable(format!(
            "{pending} migration(s) not applied yet; run `pesachama db migrate`"
        )));
    }
    Ok(Json(Ready {
        status: "ready",
        migrations_applied: migrations.len(),
    }))
}
