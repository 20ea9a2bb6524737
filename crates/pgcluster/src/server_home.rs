//! The server home: the folder, owned by the server's user, that holds `data/` and the log.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Binaries, Error, PASSWORD_FILE, RunAs, SUPERUSER};

const CLUSTER_FILE: &str = "cluster.json";

/// What the state folder remembers about its cluster.
#[derive(Debug, Serialize, Deserialize)]
struct ClusterFile {
    server_home: PathBuf,
}

#[derive(Debug, Clone)]
pub(crate) struct ServerHome {
    path: PathBuf,
}

impl ServerHome {
    /// The server home recorded in `state_dir`, if any.
    pub(crate) fn open(state_dir: &Path) -> Result<Option<Self>, Error> {
        let file = state_dir.join(CLUSTER_FILE);
        let text = match fs::read_to_string(&file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::io(format!("reading {}", file.display()), source)),
        };
        let parsed: ClusterFile = serde_json::from_str(&text)
            .map_err(|err| Error::Unexpected(format!("{} is damaged: {err}", file.display())))?;
        Ok(Some(Self {
            path: parsed.server_home,
        }))
    }

    /// The recorded server home, or a new one: inside the state folder when the server's user
    /// can work there, else a folder of its own under the system temp dir.
    pub(crate) fn open_or_create(state_dir: &Path, run_as: &RunAs) -> Result<Self, Error> {
        if let Some(home) = Self::open(state_dir)? {
            if !home.path.is_dir() {
                tracing::warn!(
                    path = %home.path.display(),
                    "the server home has disappeared (a cleaned temp folder?); creating a new, empty cluster"
                );
                make_private_dir(&home.path, run_as)?;
            }
            return Ok(home);
        }

        let inside = state_dir.join("server");
        make_private_dir(&inside, run_as)?;
        let path = if run_as.can_use_dir(&inside) {
            inside
        } else {
            let _ = fs::remove_dir(&inside);
            let digest = Sha256::digest(state_dir.as_os_str().as_encoded_bytes());
            let fallback =
                std::env::temp_dir().join(format!("pesachama-{}", &hex::encode(digest)[..16]));
            tracing::info!(
                state_dir = %state_dir.display(),
                server_home = %fallback.display(),
                "{} cannot reach the state folder; keeping the server's files in the temp folder",
                run_as.describe()
            );
            make_private_dir(&fallback, run_as)?;
            if !run_as.can_use_dir(&fallback) {
                return Err(Error::Unreachable {
                    path: fallback,
                    user: run_as.describe(),
                });
            }
            fallback
        };

        let record = serde_json::to_string_pretty(&ClusterFile {
            server_home: path.clone(),
        })
        .map_err(|err| Error::Unexpected(err.to_string()))?;
        let file = state_dir.join(CLUSTER_FILE);
        fs::write(&file, record)
            .map_err(|source| Error::io(format!("writing {}", file.display()), source))?;
        Ok(Self { path })
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.path.join("data")
    }

    pub(crate) fn log_file(&self) -> PathBuf {
        self.path.join("postgres.log")
    }

    /// Runs `initdb` unless the data folder exists; returns the superuser password.
    ///
    /// initdb writes into `data.partial` and the folder is renamed only once it succeeded, so a
    /// crash or a failed initdb never leaves a half-created cluster behind.
    pub(crate) fn ensure_initialised(
        &self,
        state_dir: &Path,
        binaries: &Binaries,
        run_as: &RunAs,
    ) -> Result<String, Error> {
        let data = self.data_dir();
        if data.join("PG_VERSION").is_file() {
            let found = fs::read_to_string(data.join("PG_VERSION"))
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok());
            if let Some(found) = found
                && found != binaries.major()
            {
                return Err(Error::VersionMismatch {
                    data: data.clone(),
                    data_major: found,
                    binaries_major: binaries.major(),
                });
            }
            return crate::read_password(state_dir);
        }

        let partial = self.path.join("data.partial");
        if partial.exists() {
            fs::remove_dir_all(&partial)
                .map_err(|source| Error::io(format!("removing {}", partial.display()), source))?;
        }
        let password = crate::random_hex(24);
        crate::write_secret(&state_dir.join(PASSWORD_FILE), &password)?;

        // initdb reads the password from a file the server's user can read.
        let pwfile = self.path.join("initdb.pw");
        fs::write(&pwfile, &password)
            .map_err(|source| Error::io(format!("writing {}", pwfile.display()), source))?;
        chown_to(&pwfile, run_as)?;
        tracing::info!(data = %data.display(), runs_as = %run_as.describe(), "creating the embedded PostgreSQL cluster");
        let mut initdb = run_as.command(&binaries.initdb());
        initdb
            .arg("-D")
            .arg(&partial)
            .args([
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        let result = crate::run_checked(initdb, "initdb", &self.log_file());
        let _ = fs::remove_file(&pwfile);
        result?;

        // Loopback TCP only: no socket folder to share between users, nothing listening outside.
        let conf = partial.join("postgresql.conf");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|source| Error::io(format!("opening {}", conf.display()), source))?;
        writeln!(
            file,
            "\n# written by pesachama\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
        )
        .map_err(|source| Error::io(format!("writing {}", conf.display()), source))?;
        fs::rename(&partial, &data)
            .map_err(|source| Error::io(format!("renaming {}", partial.display()), source))?;
        Ok(password)
    }
}

/// Creates `dir` (mode 0700) owned by the server's user.
fn make_private_dir(dir: &Path, run_as: &RunAs) -> Result<(), Error> {
    fs::create_dir_all(dir)
        .map_err(|source| Error::io(format!("creating {}", dir.display()), source))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|source| Error::io(format!("setting the mode of {}", dir.display()), source))?;
    chown_to(dir, run_as)
}

fn chown_to(path: &Path, run_as: &RunAs) -> Result<(), Error> {
    if run_as.uid().is_none() {
        return Ok(());
    }
    std::os::unix::fs::chown(
        path,
        run_as.uid().map(|u| u.as_raw()),
        run_as.gid().map(|g| g.as_raw()),
    )
    .map_err(|source| {
        Error::io(
            format!("giving {} to the server's user", path.display()),
            source,
        )
    })
}
