//! Where the bytes of storage objects live.
//!
//! The database (`storage.objects`, under RLS) decides who may see or change an object; this
//! crate only keeps bytes under keys. Every upload is first spooled to a temporary file
//! ([`Spool`]): that is where the size limit is enforced and the ETag computed, and it means a
//! refused or interrupted upload never leaves anything under a real key. [`ObjectStore::commit`]
//! then moves the finished file into place (a rename on the filesystem, a `PUT` on S3).
//!
//! Keys name an object version, not an object name (see [`object_key`]): renaming an object is
//! a database update only, replacing one writes a new version beside the old one, so a crash
//! between the byte write and the database commit leaves at worst an unreferenced file, never
//! a row pointing at the wrong bytes.

pub mod fs;
pub mod path;
mod private;
pub mod s3;
pub mod sigv4;
mod spool;

use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use uuid::Uuid;

pub use fs::FsStore;
pub use path::{BucketId, ObjectName, PathError};
pub use s3::{S3Config, S3Store};
pub use spool::{Spool, SpoolError, Spooled};

/// The bytes of a download, read as they are sent.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// An object's bytes, ready to stream.
pub struct Download {
    pub length: u64,
    pub body: ByteStream,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("no bytes are stored under this key")]
    NotFound,
    #[error("storage I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("the S3 endpoint answered {status}: {body}")]
    S3 { status: u16, body: String },
    #[error("the S3 endpoint could not be reached: {0}")]
    Http(#[from] reqwest::Error),
}

/// The key of one version of an object: `<bucket>/<2 hex>/<object id>/<version>`. The fan-out
/// keeps a folder from holding every object of a bucket; ids and versions are UUIDs, so a key
/// never depends on what a client named its file.
pub fn object_key(bucket: &BucketId, object_id: Uuid, version: Uuid) -> String {
    let id = object_id.simple().to_string();
    format!("{bucket}/{}/{id}/{}", &id[..2], version.simple())
}

/// The configured backend. An enum rather than a trait object: two backends, known at build
/// time, and async methods without boxing every future.
#[derive(Debug, Clone)]
pub enum ObjectStore {
    Fs(std::sync::Arc<FsStore>),
    S3(std::sync::Arc<S3Store>),
}

impl ObjectStore {
    /// A new spool for an upload of at most `limit` bytes, in the backend's temporary folder.
    pub async fn spool(&self, limit: u64) -> io::Result<Spool> {
        Spool::create(self.temp_dir(), limit).await
    }

    fn temp_dir(&self) -> &std::path::Path {
        match self {
            Self::Fs(store) => store.temp_dir(),
            Self::S3(store) => store.temp_dir(),
        }
    }

    /// Stores a finished spool under `key`, all or nothing.
    pub async fn commit(&self, spooled: Spooled, key: &str) -> Result<(), BackendError> {
        match self {
            Self::Fs(store) => store.commit(spooled, key).await,
            Self::S3(store) => store.commit(spooled, key).await,
        }
    }

    pub async fn get(&self, key: &str) -> Result<Download, BackendError> {
        match self {
            Self::Fs(store) => store.get(key).await,
            Self::S3(store) => store.get(key).await,
        }
    }

    /// Removes the bytes under `key`; removing what is not there is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), BackendError> {
        match self {
            Self::Fs(store) => store.delete(key).await,
            Self::S3(store) => store.delete(key).await,
        }
    }

    pub async fn copy(&self, from: &str, to: &str) -> Result<(), BackendError> {
        match self {
            Self::Fs(store) => store.copy(from, to).await,
            Self::S3(store) => store.copy(from, to).await,
        }
    }

    /// Deletes, logging instead of failing: for bytes no row points at any more.
    pub async fn delete_quietly(&self, key: &str) {
        if let Err(err) = self.delete(key).await {
            tracing::warn!(key, error = %err, "could not delete unreferenced object bytes");
        }
    }
}
