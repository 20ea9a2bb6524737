//! `serve`'s storage settings: where `/storage/v1` keeps object bytes.
//!
//! The local folder is the default (`<data dir>/storage`, or `STORAGE_DIR`). Setting
//! `STORAGE_S3_ENDPOINT` switches to an S3-compatible store; its bucket and keys are then
//! required, and uploads are still spooled in the local folder before they are sent.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use pesachama_api::storage_api::{DEFAULT_FILE_SIZE_LIMIT, StorageSettings};
use pesachama_storage::{FsStore, ObjectStore, S3Config, S3Store};

#[derive(Debug, Args)]
pub struct StorageArgs {
    /// Folder of stored objects (and of uploads in progress) [default: <data dir>/storage].
    #[arg(long, env = "STORAGE_DIR")]
    pub storage_dir: Option<PathBuf>,

    /// Largest upload in bytes, whatever a bucket allows.
    #[arg(long, env = "STORAGE_FILE_SIZE_LIMIT", default_value_t = DEFAULT_FILE_SIZE_LIMIT)]
    pub storage_file_size_limit: u64,

    /// S3-compatible endpoint (`https://s3.eu-west-1.amazonaws.com`, a MinIO URL, or a
    /// Supabase project's `https://<ref>.supabase.co/storage/v1/s3`); objects go there.
    #[arg(long, env = "STORAGE_S3_ENDPOINT")]
    pub storage_s3_endpoint: Option<String>,

    /// The S3 bucket holding every storage bucket's objects.
    #[arg(long, env = "STORAGE_S3_BUCKET")]
    pub storage_s3_bucket: Option<String>,

    /// The S3 region the requests are signed for.
    #[arg(long, env = "STORAGE_S3_REGION", default_value = "us-east-1")]
    pub storage_s3_region: String,

    #[arg(long, env = "STORAGE_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub storage_s3_access_key_id: Option<String>,

    #[arg(long, env = "STORAGE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub storage_s3_secret_access_key: Option<String>,
}

impl StorageArgs {
    pub fn settings(&self, data_dir: &std::path::Path) -> anyhow::Result<StorageSettings> {
        let dir = self
            .storage_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("storage"));
        let backend = match &self.storage_s3_endpoint {
            None => {
                let store = FsStore::new(&dir)
                    .with_context(|| format!("STORAGE_DIR: cannot create {}", dir.display()))?;
                tracing::info!(folder = %dir.display(), "storage objects on the local filesystem");
                ObjectStore::Fs(Arc::new(store))
            }
            Some(endpoint) => {
                let url = url::Url::parse(endpoint)
                    .ok()
                    .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
                    .with_context(|| {
                        format!("STORAGE_S3_ENDPOINT: {endpoint:?} is not an http(s) URL")
                    })?;
                let need = |value: &Option<String>, name: &str| {
                    value
                        .clone()
                        .filter(|v| !v.trim().is_empty())
                        .with_context(|| format!("{name} is required with STORAGE_S3_ENDPOINT"))
                };
                let config = S3Config {
                    endpoint: url.as_str().trim_end_matches('/').to_owned(),
                    bucket: need(&self.storage_s3_bucket, "STORAGE_S3_BUCKET")?,
                    region: self.storage_s3_region.clone(),
                    access_key_id: need(
                        &self.storage_s3_access_key_id,
                        "STORAGE_S3_ACCESS_KEY_ID",
                    )?,
                    secret_access_key: need(
                        &self.storage_s3_secret_access_key,
                        "STORAGE_S3_SECRET_ACCESS_KEY",
                    )?,
                    temp_dir: dir.join(".tmp"),
                };
                tracing::info!(endpoint, bucket = %config.bucket, "storage objects on S3");
                let store = S3Store::new(config)
                    .with_context(|| format!("STORAGE_DIR: cannot create {}", dir.display()))?;
                ObjectStore::S3(Arc::new(store))
            }
        };
        Ok(StorageSettings {
            backend,
            file_size_limit: self.storage_file_size_limit,
        })
    }
}
