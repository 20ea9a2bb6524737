//! An upload on its way in: a temporary file that counts bytes against the limit and hashes
//! them for the ETag, and disappears unless it is committed.

use std::io;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the object is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A temporary file being written. Dropped before [`Spool::finish`], the file is removed.
#[derive(Debug)]
pub struct Spool {
    file: Option<tokio::fs::File>,
    guard: TempPath,
    size: u64,
    limit: u64,
    md5: Md5,
}

/// A complete upload: its temporary file, size and MD5 (the ETag S3 would give it).
#[derive(Debug)]
pub struct Spooled {
    pub(crate) guard: TempPath,
    pub size: u64,
    pub etag: String,
}

impl Spooled {
    pub fn path(&self) -> &Path {
        &self.guard.0
    }
}

/// Removes its file when dropped, unless [`TempPath::keep`] took it.
#[derive(Debug)]
pub(crate) struct TempPath(pub(crate) PathBuf, bool);

impl TempPath {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self(path, true)
    }

    /// The file is somewhere else now (renamed into place): do not remove it.
    pub(crate) fn keep(mut self) {
        self.1 = false;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl Spool {
    pub(crate) async fn create(dir: &Path, limit: u64) -> io::Result<Self> {
        crate::private::create_dir_all_async(dir).await?;
        let path = dir.join(format!("upload-{}", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::private::FILE_MODE)
            .open(&path)
            .await?;
        Ok(Self {
            file: Some(file),
            guard: TempPath::new(path),
            size: 0,
            limit,
            md5: Md5::new(),
        })
    }

    /// Appends a chunk; past the limit the upload is refused (and its file removed on drop).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(SpoolError::TooLarge { limit: self.limit });
        }
        self.md5.update(chunk);
        match self.file.as_mut() {
            Some(file) => Ok(file.write_all(chunk).await?),
            None => Err(io::Error::other("spool already finished").into()),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes the file to disk (so a crash after the commit cannot lose it) and closes it.
    pub async fn finish(mut self) -> io::Result<Spooled> {
        if let Some(mut file) = self.file.take() {
            file.flush().await?;
            file.sync_all().await?;
        }
        Ok(Spooled {
            guard: self.guard,
            size: self.size,
            etag: hex::encode(self.md5.finalize()),
        })
    }
}
