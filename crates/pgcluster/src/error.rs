use std::path::{Path, PathBuf};
use std::process::Output;

/// Everything that can go wrong with the embedded cluster, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found (searched {searched}). \
         Install them (Debian/Ubuntu: apt-get install postgresql), point PESACHAMA_PG_BIN at their folder, \
         or set DATABASE_URL to use an existing server"
    )]
    BinariesNotFound { searched: String },

    #[error("PostgreSQL {found} in {} is too old: PesaChama needs {needed} or newer", dir.display())]
    TooOld {
        dir: PathBuf,
        found: u32,
        needed: u32,
    },

    #[error(
        "cannot run PostgreSQL as user {name}: {reason} (set PESACHAMA_PG_USER to another unprivileged user)"
    )]
    NoClusterUser { name: String, reason: String },

    #[error("data folder {} belongs to uid {owner}, not to you (uid {me}); use --data-dir to choose another", path.display())]
    StateDirOwnedByOther { path: PathBuf, owner: u32, me: u32 },

    #[error("data folder {} is not a folder", .0.display())]
    NotADirectory(PathBuf),

    #[error("{user} cannot use {}; choose another --data-dir", path.display())]
    Unreachable { path: PathBuf, user: String },

    #[error(
        "the cluster in {} was made by PostgreSQL {data_major} but the binaries found are {binaries_major}; \
         set PESACHAMA_PG_BIN to PostgreSQL {data_major}'s bin folder or use another --data-dir",
        data.display()
    )]
    VersionMismatch {
        data: PathBuf,
        data_major: u32,
        binaries_major: u32,
    },

    #[error("{what} failed: {detail}")]
    CommandFailed {
        what: String,
        detail: String,
        log_tail: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Unexpected(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// A failed server command, described by its own last words and the server log's.
    pub(crate) fn command_failed(what: &str, output: &Output, log: &Path) -> Self {
        let log_tail = std::fs::read_to_string(log)
            .map(|text| last_lines(&text, 5))
            .unwrap_or_default();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut detail = last_lines(&stderr, 3);
        if detail.is_empty() {
            detail = format!("exit status {}", output.status);
        }
        if !log_tail.is_empty() {
            detail.push_str(&format!(
                " (server log {}: {})",
                log.display(),
                last_lines(&log_tail, 2)
            ));
        }
        Self::CommandFailed {
            what: what.to_owned(),
            detail,
            log_tail,
        }
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
