//! `pesachama admin grant|revoke <user>`: platform administrators, by email, phone or id.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{AdminArgs, AdminCommand, Global};
use crate::database::Database;
use crate::output;

pub async fn run(global: &Global, args: &AdminArgs) -> anyhow::Result<ExitCode> {
    let (who, admin) = match &args.command {
        AdminCommand::Grant { user } => (user, true),
        AdminCommand::Revoke { user } => (user, false),
    };
    let database = Database::open(global).await?;
    let result = async {
        let pool = pesachama_store::connect(&database.url, 1)
            .await
            .with_context(|| format!("cannot connect to {}", database.describe()))?;
        let found: Option<(uuid::Uuid, Option<String>)> = sqlx::query_as(
            "select id, coalesce(email, phone) from auth.users
              where deleted_at is null
                and (id::text = $1 or lower(email) = lower($1)
                     or phone = ltrim(regexp_replace($1, '^0', '254'), '+'))
              limit 1",
        )
        .bind(who.trim())
        .fetch_optional(&pool)
        .await?;
        let Some((id, name)) = found else {
            anyhow::bail!("no user has the email, phone or id {who:?}");
        };
        sqlx::query("select internal.set_platform_admin($1, $2, null)")
            .bind(id)
            .bind(admin)
            .execute(&pool)
            .await?;
        pool.close().await;
        anyhow::Ok((id, name))
    }
    .await;
    database.close().await;
    let (id, name) = result?;
    output::line(&format!(
        "{} {} ({id}); their next sign-in or token refresh carries it",
        if admin {
            "granted platform admin to"
        } else {
            "revoked platform admin from"
        },
        name.unwrap_or_default()
    ));
    Ok(ExitCode::SUCCESS)
}
