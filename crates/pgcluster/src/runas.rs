//! Who the cluster runs as.
//!
//! PostgreSQL refuses to start as root. When we are root we run every server command as an
//! unprivileged system user (`postgres` by default, `PESACHAMA_PG_USER` to choose), creating it
//! if the machine has none. Anyone else runs the cluster as themselves.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Uid, User, geteuid};

use crate::Error;

#[derive(Debug, Clone)]
pub enum RunAs {
    /// Not root: the cluster is ours.
    CurrentUser,
    /// Root: the cluster belongs to this unprivileged account.
    System { name: String, uid: Uid, gid: Gid },
}

impl RunAs {
    pub fn resolve() -> Result<Self, Error> {
        if !geteuid().is_root() {
            return Ok(Self::CurrentUser);
        }
        let name = std::env::var("PESACHAMA_PG_USER").unwrap_or_else(|_| "postgres".to_owned());
        let user = match lookup(&name)? {
            Some(user) => user,
            None => {
                create_system_user(&name)?;
                lookup(&name)?.ok_or_else(|| Error::NoClusterUser {
                    name: name.clone(),
                    reason: "useradd reported success but the user is not there".to_owned(),
                })?
            }
        };
        if user.uid.is_root() {
            return Err(Error::NoClusterUser {
                name,
                reason: "it has uid 0, and PostgreSQL refuses to run as root".to_owned(),
            });
        }
        Ok(Self::System {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
        })
    }

    /// A command that runs as the cluster's user.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        if let Self::System { uid, gid, .. } = self {
            // std drops supplementary groups (setgroups(0)) when root sets a uid.
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
    }

    pub fn uid(&self) -> Option<Uid> {
        match self {
            Self::CurrentUser => None,
            Self::System { uid, .. } => Some(*uid),
        }
    }

    pub fn gid(&self) -> Option<Gid> {
        match self {
            Self::CurrentUser => None,
            Self::System { gid, .. } => Some(*gid),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::CurrentUser => "the current user".to_owned(),
            Self::System { name, .. } => format!("system user {name}"),
        }
    }

    /// Whether the cluster's user can enter `dir` and create files in it. Asked of the system
    /// itself (by running `test` as that user), so ACLs and every parent folder count.
    pub fn can_use_dir(&self, dir: &Path) -> bool {
        if matches!(self, Self::CurrentUser) {
            return true;
        }
        let status = self
            .command(Path::new("test"))
            .arg("-x")
            .arg(dir)
            .arg("-a")
            .arg("-w")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        matches!(status, Ok(status) if status.success())
    }
}

fn lookup(name: &str) -> Result<Option<User>, Error> {
    User::from_name(name).map_err(|errno| Error::NoClusterUser {
        name: name.to_owned(),
        reason: format!("looking it up failed: {errno}"),
    })
}

fn create_system_user(name: &str) -> Result<(), Error> {
    tracing::info!(
        user = name,
        "creating an unprivileged system user to run PostgreSQL"
    );
    let output = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::NoClusterUser {
            name: name.to_owned(),
            reason: format!("it does not exist and useradd could not run ({source})"),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::NoClusterUser {
            name: name.to_owned(),
            reason: format!(
                "it does not exist and useradd failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}
