//! Objects as files under one folder: `<root>/<key>`, uploads spooled in `<root>/.tmp` (the
//! same filesystem, so moving a finished upload into place is an atomic rename).
//!
//! Private objects (a chama's documents, meeting recordings) are no business of other accounts
//! on the machine: folders are made 0700 and files 0600, the root included.

use std::io;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use crate::spool::TempPath;
use crate::{BackendError, Download, Spooled};

/// Size of the reads that feed a download.
const CHUNK: usize = 256 * 1024;

#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
    temp: PathBuf,
}

impl FsStore {
    /// Uses (and creates) `root`.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let temp = root.join(".tmp");
        crate::private::create_dir_all(&temp)?;
        crate::private::restrict(&root)?;
        Ok(Self { root, temp })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn temp_dir(&self) -> &Path {
        &self.temp
    }

    /// Keys are built by [`crate::object_key`] from checked bucket ids and UUIDs; this refuses
    /// anything else anyway, so no key can reach outside the root.
    fn path_of(&self, key: &str) -> Result<PathBuf, BackendError> {
        let safe = !key.is_empty()
            && key
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".." && !s.starts_with('.'))
            && !key.contains(['\\', '\0']);
        if safe {
            Ok(self.root.join(key))
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidInput, format!("unsafe key {key:?}")).into())
        }
    }

    pub(crate) async fn commit(&self, spooled: Spooled, key: &str) -> Result<(), BackendError> {
        let target = self.path_of(key)?;
        if let Some(parent) = target.parent() {
            crate::private::create_dir_all_async(parent).await?;
        }
        tokio::fs::rename(spooled.path(), &target).await?;
        spooled.guard.keep();
        Ok(())
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Download, BackendError> {
        let path = self.path_of(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(BackendError::NotFound);
            }
            Err(err) => return Err(err.into()),
        };
        let length = file.metadata().await?.len();
        let body = futures_util::stream::try_unfold(file, |mut file| async move {
            let mut buffer = BytesMut::with_capacity(CHUNK);
            let read = file.read_buf(&mut buffer).await?;
            Ok::<_, io::Error>((read > 0).then(|| (buffer.freeze(), file)))
        });
        Ok(Download {
            length,
            body: Box::pin(body),
        })
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), BackendError> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err.into()),
        }
        // The object's own folder is empty once its last version is gone; a folder still in
        // use simply refuses to be removed.
        if let Some(parent) = path.parent() {
            let _ = tokio::fs::remove_dir(parent).await;
        }
        Ok(())
    }

    /// Copies through a temporary file, so the target appears whole or not at all.
    pub(crate) async fn copy(&self, from: &str, to: &str) -> Result<(), BackendError> {
        let source = self.path_of(from)?;
        let target = self.path_of(to)?;
        let temp = TempPath::new(
            self.temp
                .join(format!("copy-{}", uuid::Uuid::new_v4().simple())),
        );
        match tokio::fs::copy(&source, &temp.0).await {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(BackendError::NotFound);
            }
            Err(err) => return Err(err.into()),
        }
        tokio::fs::File::open(&temp.0).await?.sync_all().await?;
        if let Some(parent) = target.parent() {
            crate::private::create_dir_all_async(parent).await?;
        }
        tokio::fs::rename(&temp.0, &target).await?;
        temp.keep();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

    use crate::{BackendError, ObjectStore, SpoolError};

    use super::FsStore;

    async fn read_all(store: &ObjectStore, key: &str) -> Vec<u8> {
        let download = store.get(key).await.unwrap();
        let chunks: Vec<_> = download.body.try_collect().await.unwrap();
        chunks.concat()
    }

    fn files_under(dir: &std::path::Path) -> usize {
        walk(dir).len()
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
        found
    }

    #[tokio::test]
    async fn a_committed_spool_reads_back_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::Fs(std::sync::Arc::new(FsStore::new(dir.path()).unwrap()));
        let mut spool = store.spool(1024).await.unwrap();
        spool.write(b"hello ").await.unwrap();
        spool.write(b"world").await.unwrap();
        let spooled = spool.finish().await.unwrap();
        assert_eq!(spooled.size, 11);
        assert_eq!(spooled.etag, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        store.commit(spooled, "b/ab/abc/v1").await.unwrap();
        assert_eq!(read_all(&store, "b/ab/abc/v1").await, b"hello world");
        assert_eq!(files_under(&dir.path().join(".tmp")), 0);

        store.copy("b/ab/abc/v1", "b/cd/cde/v1").await.unwrap();
        assert_eq!(read_all(&store, "b/cd/cde/v1").await, b"hello world");
        store.delete("b/ab/abc/v1").await.unwrap();
        store.delete("b/ab/abc/v1").await.unwrap();
        assert!(matches!(
            store.get("b/ab/abc/v1").await,
            Err(BackendError::NotFound)
        ));
        assert_eq!(files_under(dir.path()), 1);
    }

    #[tokio::test]
    async fn objects_and_their_folders_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("storage");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = ObjectStore::Fs(std::sync::Arc::new(FsStore::new(&root).unwrap()));
        let mut spool = store.spool(1024).await.unwrap();
        spool.write(b"minutes").await.unwrap();
        store
            .commit(spool.finish().await.unwrap(), "documents/ab/abc/v1")
            .await
            .unwrap();
        store
            .copy("documents/ab/abc/v1", "documents/cd/cde/v1")
            .await
            .unwrap();
        let mode =
            |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        for folder in ["documents", "documents/ab", "documents/ab/abc", ".tmp"] {
            assert_eq!(mode(&root.join(folder)), 0o700, "{folder}");
        }
        for file in ["documents/ab/abc/v1", "documents/cd/cde/v1"] {
            assert_eq!(mode(&root.join(file)), 0o600, "{file}");
        }
    }

    #[tokio::test]
    async fn an_oversized_or_abandoned_spool_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::Fs(std::sync::Arc::new(FsStore::new(dir.path()).unwrap()));
        let mut spool = store.spool(4).await.unwrap();
        spool.write(b"abc").await.unwrap();
        assert!(matches!(
            spool.write(b"de").await,
            Err(SpoolError::TooLarge { limit: 4 })
        ));
        drop(spool);
        let abandoned = store.spool(4).await.unwrap();
        drop(abandoned);
        assert_eq!(files_under(dir.path()), 0);
    }

    #[tokio::test]
    async fn keys_that_leave_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::Fs(std::sync::Arc::new(FsStore::new(dir.path()).unwrap()));
        for key in ["../x", "/etc/passwd", "a//b", ".tmp/x", "a/../b", ""] {
            assert!(
                matches!(store.get(key).await, Err(BackendError::Io(_))),
                "{key:?}"
            );
        }
    }
}
