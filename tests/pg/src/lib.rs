//! A private PostgreSQL server for tests, started once per test process, with one fresh
//! database per test ([`database`]).
//!
//! The cluster lives in a temporary directory: `initdb` (as the unprivileged `postgres` user
//! through `runuser` when the tests run as root, as CI does; as the current user otherwise), then
//! `pg_ctl start -w` listening on 127.0.0.1 at a free port and on a Unix socket in that directory.
//! A watchdog process waits for the test process to exit, however it exits, then stops the server
//! (`pg_ctl stop -m fast`) and removes the directory: no server outlives the tests.
//!
//! The binaries are looked up under `/usr/lib/postgresql/*/bin` (the newest version). Without
//! them the test fails, saying how to install them: it is never skipped.
//!
//! The cluster is for throwaway data: `fsync` and `synchronous_commit` are off.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The running cluster of this process.
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `runuser -u postgres --` when running as root.
    as_postgres: bool,
    /// The server's options (`pg_ctl -o`), to start it again.
    opts: String,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The URL of a fresh, empty database named after `hint` on this process's private cluster
/// (started on first use). Panics with a one-line reason if PostgreSQL cannot be run.
pub fn database(hint: &str) -> String {
    let c = CLUSTER.get_or_init(|| Cluster::start().unwrap_or_else(|e| panic!("{e}")));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let clean: String = hint
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() {
                ch.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let name = format!("t{n}_{clean}");
    c.psql(&format!("CREATE DATABASE \"{name}\""))
        .unwrap_or_else(|e| panic!("{e}"));
    format!("postgres://postgres@127.0.0.1:{}/{name}", c.port)
}

/// The newest `<root>/<version>/bin` (Debian's root: `/usr/lib/postgresql`) holding `initdb`
/// and `pg_ctl`.
fn find_bin(root: &Path) -> Result<PathBuf, String> {
    let missing = || {
        format!(
            "PostgreSQL is not installed (no {}/*/bin/initdb): run `bash deploy/install-deps.sh test`",
            root.display()
        )
    };
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map_err(|_| missing())?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).ok_or_else(missing)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

impl Cluster {
    fn start() -> Result<Self, String> {
        let bin = find_bin(Path::new("/usr/lib/postgresql"))?;
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("tether-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut c = Cluster {
            bin,
            dir,
            port: 0,
            as_postgres,
            opts: String::new(),
        };
        // Cleanup first: whatever happens below, the directory (and a server, if one
        // started) goes when this process does.
        c.watchdog()?;
        if as_postgres {
            c.run(Command::new("chown").arg("postgres:postgres").arg(&c.dir))?;
        }
        let data = c.dir.join("data");
        c.run(
            c.tool("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8"])
                .args(["--locale=C.UTF-8", "--no-sync"]),
        )?;
        // A port taken meanwhile by someone else fails the start: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
                c.dir.display()
            );
            let started = Cluster { port, opts, ..c };
            match started.pg_ctl_start() {
                Ok(()) => return Ok(started),
                Err(e) => last = e,
            }
            c = Cluster {
                port: 0,
                opts: String::new(),
                ..started
            };
        }
        Err(format!(
            "{last}; server log: {}",
            std::fs::read_to_string(c.dir.join("log")).unwrap_or_default()
        ))
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        self.run(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("log"))
                .args(["-o", &self.opts, "-w", "-t", "30", "start"]),
        )
    }

    /// A PostgreSQL tool, run as `postgres` when we are root.
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, cmd: &mut Command) -> Result<(), String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn psql(&self, sql: &str) -> Result<(), String> {
        self.run(
            self.tool("psql")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(&self.dir)
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                ])
                .args(["-c", sql]),
        )
    }

    /// A process that outlives nothing: when this test process exits, it stops the server and
    /// removes the directory.
    fn watchdog(&self) -> Result<(), String> {
        let stop = format!(
            "{} {} -D {} -m fast -w stop",
            if self.as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            },
            self.bin.join("pg_ctl").display(),
            self.dir.join("data").display()
        );
        let script = format!(
            "tail --pid={} -f /dev/null; if [ -f {data}/postmaster.pid ]; then {stop} >/dev/null 2>&1; fi; rm -rf {dir}",
            std::process::id(),
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("cannot start the cluster's watchdog: {e}"))
    }
}

/// Stops this process's server (`pg_ctl stop -m fast`: clients are disconnected), as an outage
/// or a restart does. For a test binary of its own: every database of the process goes.
pub fn stop_server() -> Result<(), String> {
    let c = CLUSTER.get().ok_or("the cluster was not started")?;
    c.run(
        c.tool("pg_ctl")
            .arg("-D")
            .arg(c.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]),
    )
}

/// Starts this process's server again after [`stop_server`], on the same port and data.
pub fn start_server() -> Result<(), String> {
    CLUSTER
        .get()
        .ok_or("the cluster was not started")?
        .pg_ctl_start()
}

/// The cluster's directory, if it was started (for tests of this crate).
pub fn cluster_dir() -> Option<&'static Path> {
    CLUSTER.get().map(|c| c.dir.as_path())
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_databases_on_one_cluster() {
        let t = std::time::Instant::now();
        let a = super::database("a");
        let started = t.elapsed();
        let t = std::time::Instant::now();
        let b = super::database("b");
        eprintln!(
            "cluster started and first database in {started:?}; another database in {:?}",
            t.elapsed()
        );
        assert_ne!(a, b);
        assert!(a.starts_with("postgres://postgres@127.0.0.1:"));
        assert!(super::cluster_dir().unwrap().join("data").exists());
    }

    /// Without PostgreSQL the tests fail, saying in one line what to do.
    #[test]
    fn a_missing_postgresql_says_how_to_install_it() {
        let e = super::find_bin(std::path::Path::new("/nonexistent/postgresql")).unwrap_err();
        assert!(e.contains("deploy/install-deps.sh test"), "{e}");
        assert_eq!(e.lines().count(), 1);
    }
}
