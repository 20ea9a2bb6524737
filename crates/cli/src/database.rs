//! Which database a command uses: `DATABASE_URL` when set, else the embedded cluster of the data
//! folder, started for the command and stopped after it (unless another process runs it).

use anyhow::Context as _;
use pesachama_pgcluster::{Cluster, Options};

use crate::cli::Global;

/// The database of the embedded cluster.
pub const EMBEDDED_DATABASE: &str = "pesachama";

#[derive(Debug)]
pub struct Database {
    pub url: String,
    cluster: Option<Cluster>,
}

impl Database {
    pub async fn open(global: &Global) -> anyhow::Result<Self> {
        if let Some(url) = &global.database_url {
            return Ok(Self {
                url: url.clone(),
                cluster: None,
            });
        }
        let options = Options::new(&global.data_dir);
        let cluster = tokio::task::spawn_blocking(move || Cluster::ensure_running(&options))
            .await?
            .with_context(|| format!("embedded PostgreSQL in {}", global.data_dir.display()))?;
        let database = Self {
            url: cluster.url(EMBEDDED_DATABASE),
            cluster: Some(cluster),
        };
        if let Some(cluster) = &database.cluster
            && let Err(err) =
                pesachama_store::ensure_database(&cluster.url("postgres"), EMBEDDED_DATABASE).await
        {
            database.close().await;
            return Err(err).context("creating the embedded database");
        }
        Ok(database)
    }

    /// A description for logs, without the password.
    /// Whether this is the embedded cluster (as opposed to `DATABASE_URL`).
    pub fn is_embedded(&self) -> bool {
        self.cluster.is_some()
    }

    pub fn describe(&self) -> String {
        match &self.cluster {
            Some(cluster) => format!(
                "embedded PostgreSQL on 127.0.0.1:{} ({})",
                cluster.port(),
                cluster.data_dir().display()
            ),
            None => redact(&self.url),
        }
    }

    /// Stops the embedded cluster if this command started it.
    pub async fn close(self) {
        if let Some(cluster) = self.cluster {
            match tokio::task::spawn_blocking(move || cluster.stop()).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "stopping the embedded PostgreSQL failed")
                }
                Err(err) => {
                    tracing::error!(error = %err, "stopping the embedded PostgreSQL failed")
                }
            }
        }
    }
}

/// The URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable url>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords_from_urls() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
