//! A private PostgreSQL cluster for PesaChama's embedded default and its test suite.
//!
//! The cluster is described by a *state folder* (`.pesachama/` by default) owned by whoever runs
//! `pesachama`. It holds the superuser password and a small `cluster.json` saying where the
//! server's own files live (the *server home*: `data/` and `postgres.log`). The server home is
//! inside the state folder when the server's user can reach it there; when we are root and the
//! state folder sits below a folder the unprivileged server user cannot enter (a checkout under
//! `/root`, say), the server home goes to a folder of its own under the system temp dir.
//!
//! A cluster is started at most once per state folder (a file lock guards creation and start).
//! Whoever starts it owns it and stops it; a process that finds it already running by a live
//! owner uses it and leaves it running. An owner that died (killed, crashed) is replaced by the
//! next process that attaches, so a cluster is never orphaned for good.

mod binaries;
mod error;
mod runas;
mod server_home;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use binaries::{Binaries, MIN_MAJOR};
pub use error::Error;
pub use runas::RunAs;
use server_home::ServerHome;

/// The superuser the cluster is initialised with.
pub const SUPERUSER: &str = "postgres";

/// How much the server may trade durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is flushed: the embedded default keeps real data.
    Durable,
    /// `fsync=off`: for throwaway test clusters only, where speed matters and a crash loses
    /// nothing of value.
    Throwaway,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    pub durability: Durability,
    pub max_connections: u32,
}

impl Options {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            durability: Durability::Durable,
            max_connections: 100,
        }
    }
}

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    state_dir: PathBuf,
    home: ServerHome,
    binaries: Binaries,
    run_as: RunAs,
    password: String,
    port: u16,
    owned: bool,
}

impl Cluster {
    /// Creates the cluster if needed and starts it if it is not running. The returned cluster is
    /// owned (and so stopped by [`Cluster::stop`]) unless a live process already owned it.
    pub fn ensure_running(options: &Options) -> Result<Self, Error> {
        // Everything that can be checked without writing is checked first, so a machine
        // without PostgreSQL is told so before any folder is made.
        let binaries = Binaries::locate()?;
        let run_as = RunAs::resolve()?;
        let state_dir = prepare_state_dir(&options.state_dir)?;
        let _lock = lock_state_dir(&state_dir)?;
        let home = ServerHome::open_or_create(&state_dir, &run_as)?;
        let password = home.ensure_initialised(&state_dir, &binaries, &run_as)?;

        if let Some(port) = running_port(&home, &binaries, &run_as)? {
            let owned = adopt_if_orphaned(&state_dir)?;
            tracing::debug!(port, owned, "found the cluster running");
            return Ok(Self {
                state_dir,
                home,
                binaries,
                run_as,
                password,
                port,
                owned,
            });
        }

        let port = start(&home, &binaries, &run_as, options)?;
        write_owner(&state_dir)?;
        tracing::info!(port, data = %home.data_dir().display(), "started the embedded PostgreSQL");
        Ok(Self {
            state_dir,
            home,
            binaries,
            run_as,
            password,
            port,
            owned: true,
        })
    }

    /// The cluster of `state_dir` if it is running now; never starts or creates anything.
    pub fn attach_running(state_dir: &Path) -> Result<Option<Self>, Error> {
        let state_dir = absolute(state_dir)?;
        let Some(home) = ServerHome::open(&state_dir)? else {
            return Ok(None);
        };
        let binaries = Binaries::locate()?;
        let run_as = RunAs::resolve()?;
        let Some(port) = running_port(&home, &binaries, &run_as)? else {
            return Ok(None);
        };
        let password = read_password(&state_dir)?;
        Ok(Some(Self {
            state_dir,
            home,
            binaries,
            run_as,
            password,
            port,
            owned: false,
        }))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this process started the cluster (or took over from a dead owner).
    pub fn is_owned(&self) -> bool {
        self.owned
    }

    pub fn data_dir(&self) -> PathBuf {
        self.home.data_dir()
    }

    /// A connection URL for `database` as the cluster's superuser.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// Stops the cluster if this process owns it; otherwise leaves it to its owner.
    pub fn stop(self) -> Result<(), Error> {
        if !self.owned {
            return Ok(());
        }
        self.stop_now()
    }

    /// Stops the cluster whoever owns it.
    pub fn stop_now(self) -> Result<(), Error> {
        let output = self
            .run_as
            .command(&self.binaries.pg_ctl())
            .arg("stop")
            .arg("-D")
            .arg(self.home.data_dir())
            .args(["-m", "fast", "-w", "-t", "60", "-s"])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| Error::io("running pg_ctl stop", source))?;
        if !output.status.success() {
            return Err(Error::command_failed(
                "pg_ctl stop",
                &output,
                &self.home.log_file(),
            ));
        }
        let _ = fs::remove_file(self.state_dir.join(OWNER_FILE));
        tracing::info!("stopped the embedded PostgreSQL");
        Ok(())
    }
}

const OWNER_FILE: &str = "cluster.owner";
const PASSWORD_FILE: &str = "pg_password";
const LOCK_FILE: &str = "cluster.lock";

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path)
        .map_err(|source| Error::io(format!("resolving {}", path.display()), source))
}

/// Creates the state folder (mode 0711: others may pass through to the server home, not list)
/// and refuses one that belongs to another user.
fn prepare_state_dir(requested: &Path) -> Result<PathBuf, Error> {
    let dir = absolute(requested)?;
    match fs::metadata(&dir) {
        Ok(meta) if !meta.is_dir() => return Err(Error::NotADirectory(dir)),
        Ok(meta) => {
            use std::os::unix::fs::MetadataExt;
            let me = nix::unistd::geteuid();
            if !me.is_root() && meta.uid() != me.as_raw() {
                return Err(Error::StateDirOwnedByOther {
                    path: dir,
                    owner: meta.uid(),
                    me: me.as_raw(),
                });
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(&dir)
                .map_err(|source| Error::io(format!("creating {}", dir.display()), source))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o711)).map_err(|source| {
                Error::io(format!("setting the mode of {}", dir.display()), source)
            })?;
        }
        Err(source) => return Err(Error::io(format!("reading {}", dir.display()), source)),
    }
    Ok(dir)
}

fn lock_state_dir(state_dir: &Path) -> Result<File, Error> {
    let path = state_dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| Error::io(format!("opening {}", path.display()), source))?;
    file.lock()
        .map_err(|source| Error::io(format!("locking {}", path.display()), source))?;
    Ok(file)
}

/// Writes a secret file readable by its owner only, atomically (write, then rename).
fn write_secret(path: &Path, contents: &str) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|source| Error::io(format!("writing {}", tmp.display()), source))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::io(format!("writing {}", tmp.display()), source))?;
    fs::rename(&tmp, path)
        .map_err(|source| Error::io(format!("writing {}", path.display()), source))
}

fn read_password(state_dir: &Path) -> Result<String, Error> {
    let path = state_dir.join(PASSWORD_FILE);
    fs::read_to_string(&path)
        .map(|text| text.trim().to_owned())
        .map_err(|source| {
            Error::io(
                format!("reading the cluster password {}", path.display()),
                source,
            )
        })
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// The port of the running server, or `None` when it is not running.
fn running_port(
    home: &ServerHome,
    binaries: &Binaries,
    run_as: &RunAs,
) -> Result<Option<u16>, Error> {
    if !home.data_dir().join("PG_VERSION").is_file() {
        return Ok(None);
    }
    let status = run_as
        .command(&binaries.pg_ctl())
        .arg("status")
        .arg("-D")
        .arg(home.data_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| Error::io("running pg_ctl status", source))?;
    if !status.success() {
        return Ok(None);
    }
    // postmaster.pid: line 1 pid, 2 data folder, 3 start time, 4 port.
    let pid_file = home.data_dir().join("postmaster.pid");
    let text = fs::read_to_string(&pid_file)
        .map_err(|source| Error::io(format!("reading {}", pid_file.display()), source))?;
    let port = text
        .lines()
        .nth(3)
        .and_then(|line| line.trim().parse::<u16>().ok())
        .ok_or_else(|| Error::Unexpected(format!("no port in {}", pid_file.display())))?;
    Ok(Some(port))
}

fn free_loopback_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|source| Error::io("finding a free loopback port", source))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|source| Error::io("finding a free loopback port", source))
}

fn start(
    home: &ServerHome,
    binaries: &Binaries,
    run_as: &RunAs,
    options: &Options,
) -> Result<u16, Error> {
    // Another program may take the port between our probe and the server's bind; try again then.
    let mut last_error = None;
    for _ in 0..3 {
        let port = free_loopback_port()?;
        let mut server_options =
            format!("-p {port} -c max_connections={}", options.max_connections);
        if options.durability == Durability::Throwaway {
            server_options
                .push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
            // A backend still authenticating cannot accept the ProcSignalBarrier that DROP
            // DATABASE waits for. A test process blocked in its database's drop cannot finish
            // a handshake its pool had started, so every drop on the server then waited for
            // authentication_timeout: 60 s by default, observed as eight tests at once taking
            // 60 s each. Over loopback a handshake takes milliseconds.
            server_options.push_str(" -c authentication_timeout=5s");
        }
        let output = run_as
            .command(&binaries.pg_ctl())
            .arg("start")
            .arg("-D")
            .arg(home.data_dir())
            .arg("-l")
            .arg(home.log_file())
            .args(["-w", "-t", "60", "-s", "-o", &server_options])
            .stdin(Stdio::null())
            // Own process group: a Ctrl-C in the terminal reaches us, not the server, so we
            // decide when and how it stops.
            .process_group(0)
            .output()
            .map_err(|source| Error::io("running pg_ctl start", source))?;
        if output.status.success() {
            return Ok(port);
        }
        let error = Error::command_failed("pg_ctl start", &output, &home.log_file());
        let port_taken = matches!(&error, Error::CommandFailed { log_tail, .. } if log_tail.contains("could not bind"));
        if !port_taken {
            return Err(error);
        }
        last_error = Some(error);
    }
    Err(last_error.unwrap_or_else(|| Error::Unexpected("the server did not start".to_owned())))
}

fn write_owner(state_dir: &Path) -> Result<(), Error> {
    let path = state_dir.join(OWNER_FILE);
    fs::write(&path, std::process::id().to_string())
        .map_err(|source| Error::io(format!("writing {}", path.display()), source))
}

/// Takes over a running cluster whose owner process is gone; returns whether we now own it.
fn adopt_if_orphaned(state_dir: &Path) -> Result<bool, Error> {
    let owner = fs::read_to_string(state_dir.join(OWNER_FILE))
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    let alive = owner.is_some_and(|pid| {
        pid as u32 != std::process::id()
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
    });
    if alive {
        return Ok(false);
    }
    write_owner(state_dir)?;
    Ok(true)
}

/// Runs `program` as the cluster user and fails with its output when it fails.
fn run_checked(mut command: Command, what: &str, log: &Path) -> Result<(), Error> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::io(format!("running {what}"), source))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::command_failed(what, &output, log))
    }
}
