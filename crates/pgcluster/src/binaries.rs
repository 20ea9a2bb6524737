//! Finding the PostgreSQL server binaries on this machine.
//!
//! Debian and Ubuntu install them under `/usr/lib/postgresql/<major>/bin` and put only the
//! client tools on `PATH`; other systems put everything on `PATH`. We look, in order, at
//! `PESACHAMA_PG_BIN`, `PATH`, and the Debian layout, and take the first folder holding both
//! `initdb` and `pg_ctl`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// The oldest server we support: the schema uses `UNIQUE NULLS NOT DISTINCT` (PostgreSQL 15).
pub const MIN_MAJOR: u32 = 15;

/// A folder holding `initdb` and `pg_ctl`, and the major version they belong to.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
    major: u32,
}

impl Binaries {
    /// Locates the server binaries, or says where it looked and how to install them.
    pub fn locate() -> Result<Self, Error> {
        let mut searched = Vec::new();
        let candidates = candidate_dirs(&mut searched);
        for dir in candidates {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                let major = major_version(&dir.join("pg_ctl"))?;
                if major < MIN_MAJOR {
                    return Err(Error::TooOld {
                        dir,
                        found: major,
                        needed: MIN_MAJOR,
                    });
                }
                return Ok(Self { dir, major });
            }
        }
        Err(Error::BinariesNotFound {
            searched: searched.join(", "),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn major(&self) -> u32 {
        self.major
    }

    pub fn initdb(&self) -> PathBuf {
        self.dir.join("initdb")
    }

    pub fn pg_ctl(&self) -> PathBuf {
        self.dir.join("pg_ctl")
    }
}

fn candidate_dirs(searched: &mut Vec<String>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(explicit) = std::env::var_os("PESACHAMA_PG_BIN") {
        // An explicit choice is the only candidate: silently falling back would hide a typo.
        searched.push(format!(
            "PESACHAMA_PG_BIN={}",
            Path::new(&explicit).display()
        ));
        dirs.push(PathBuf::from(explicit));
        return dirs;
    }
    searched.push("PATH".to_owned());
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                // /usr/local/bin/initdb is often a link into the real bin folder, where pg_ctl
                // and postgres live too.
                let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
                if let Some(parent) = real.parent() {
                    dirs.push(parent.to_path_buf());
                }
                dirs.push(dir);
            }
        }
    }
    searched.push("/usr/lib/postgresql/*/bin".to_owned());
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versioned.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
    dirs
}

/// Reads the major version from `pg_ctl --version` ("pg_ctl (PostgreSQL) 15.18 (Debian ...)").
fn major_version(pg_ctl: &Path) -> Result<u32, Error> {
    let output = Command::new(pg_ctl)
        .arg("--version")
        .output()
        .map_err(|source| Error::io(format!("running {} --version", pg_ctl.display()), source))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_major(&text)
        .ok_or_else(|| Error::Unexpected(format!("cannot read a version from {text:?}")))
}

fn parse_major(version_line: &str) -> Option<u32> {
    let after = version_line.split(')').nth(1)?.trim();
    let number = after.split_whitespace().next()?;
    number.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_major;

    #[test]
    fn reads_major_versions_of_the_shapes_pg_ctl_prints() {
        assert_eq!(
            parse_major("pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("pg_ctl (PostgreSQL) 17.2\n"), Some(17));
        assert_eq!(parse_major("pg_ctl (PostgreSQL) 16beta1\n"), None);
        assert_eq!(parse_major("garbage"), None);
    }
}
