//! Helpers for the end-to-end tests: start real relays, agents and technician commands (the
//! built binaries) on 127.0.0.1 in temporary directories, and tear them down on drop.
//!
//! The binaries are built once (`cargo build --workspace --bins`, done by `tests/run.sh`) and
//! found next to the test executable, so the tests never rebuild the world.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tether_net::local::LocalClient;
use tether_protocol::consent::{LocalEvent, LocalRequest};

pub mod hostile;
pub mod wayland;
pub mod wine;

/// The id of the viewer's window (`Tether: …`) on `x`, once it is mapped (within 60 s).
pub fn viewer_window(x: &Xvfb) -> String {
    let mut id = String::new();
    wait_until(Duration::from_secs(60), || {
        let out = x.run(
            "xdotool",
            &["search", "--onlyvisible", "--name", "Tether: "],
        );
        id = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        !id.is_empty()
    })
    .expect("the viewer window never appeared");
    id
}

/// Path of a workspace binary in the same target directory as the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (tests/run.sh does)",
        path.display()
    );
    path
}

/// Log filter for spawned relays and agents: quiet unless `TETHER_TEST_LOG` asks for more.
pub fn log_filter() -> String {
    std::env::var("TETHER_TEST_LOG").unwrap_or_else(|_| "warn".into())
}

/// Runs a command to completion and returns its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "command failed ({}): {}",
        o.status,
        stderr(&o)
    );
    stdout(&o)
}

/// Polls `cond` until it holds or `timeout` passes; returns how long it took.
///
/// Used where the event is observable only by asking (a device list): the loop asks, it does
/// not sleep in place of an event.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills a child on drop.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    /// SIGKILL: the process vanishes without saying goodbye (like a crash or power loss).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit and returns its output (stdout/stderr if piped).
    pub fn output(mut self) -> Output {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_end(&mut o, &mut stdout);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_end(&mut e, &mut stderr);
        }
        let status = self.child.wait().expect("wait for child");
        Output {
            status,
            stdout,
            stderr,
        }
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait for child")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The store the tests' relays use, from `TETHER_TEST_STORE`: unset or `sqlite`, the SQLite file
/// in each relay's data directory; `postgres`, a fresh database per relay on the test process's
/// private PostgreSQL server (`tether_pg`).
fn test_store() -> Option<String> {
    match std::env::var("TETHER_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => None,
        Ok("postgres") => Some(tether_pg::database("relay")),
        Ok(other) => panic!("TETHER_TEST_STORE={other:?}: expected sqlite or postgres"),
    }
}

/// A relay with its own data directory (and so its own CA), and its own store.
pub struct Relay {
    pub dir: TempDir,
    /// `--store` (a PostgreSQL URL) when `TETHER_TEST_STORE=postgres`; else the default.
    pub store: Option<String>,
    pub addr: Option<SocketAddr>,
    pub proc: Option<Proc>,
    hello_timeout: String,
    /// Send the relay's log here, at this `RUST_LOG` level, instead of the test's stderr.
    pub log: Option<(PathBuf, String)>,
    /// More arguments for `serve`.
    pub serve_args: Vec<String>,
}

impl Relay {
    /// `tether-relay init` in a fresh temporary directory.
    pub fn init() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = test_store();
        ok(run(relay_command(store.as_deref())
            .args(["init", "--name", "localhost", "--data"])
            .arg(dir.path().join("data"))));
        if store.is_some() {
            // The relay is on the database, not on a file beside its keys.
            assert!(!dir.path().join("data/tether.db").exists());
        }
        Relay {
            dir,
            store,
            addr: None,
            proc: None,
            hello_timeout: "10s".into(),
            log: None,
            serve_args: Vec::new(),
        }
    }

    /// The first relay of a cluster: id `id`, on the PostgreSQL database `store` (whatever
    /// `TETHER_TEST_STORE` says), telling the others its real port.
    pub fn init_cluster(store: &str, id: &str) -> Self {
        Self::init_cluster_with(store, &["--id", id])
    }

    /// Another relay of `first`'s organisation on the same store (`init --join`).
    pub fn join(first: &Relay, id: &str) -> Self {
        let store = first.store.clone().expect("a cluster relay has a store");
        let data = first.data();
        let data = data.to_str().expect("utf-8 path");
        Self::init_cluster_with(&store, &["--join", data, "--id", id])
    }

    fn init_cluster_with(store: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        ok(run(relay_command(Some(store))
            .arg("init")
            .args(args)
            .arg("--data")
            .arg(dir.path().join("data"))));
        Relay {
            dir,
            store: Some(store.to_string()),
            addr: None,
            proc: None,
            hello_timeout: "10s".into(),
            log: None,
            serve_args: vec!["--public-addr".into(), "127.0.0.1:0".into()],
        }
    }

    /// Ends the relay with SIGKILL: no goodbyes, nothing cleaned up (a crash, a power cut).
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `tether-relay`, on this relay's store (its `--data` is the caller's to add).
    pub fn cli(&self) -> Command {
        relay_command(self.store.as_deref())
    }

    /// The store for an in-process relay (`ServeOptions::store`): this relay's.
    pub fn store_url(&self) -> Option<tether_relay::store::StoreUrl> {
        self.store
            .as_deref()
            .map(|u| u.parse().expect("test store URL"))
    }

    pub fn with_hello_timeout(mut self, t: &str) -> Self {
        self.hello_timeout = t.into();
        self
    }

    /// Initializes and starts a relay on an ephemeral loopback port.
    pub fn start() -> Self {
        let mut r = Self::init();
        r.serve("127.0.0.1:0".parse().expect("addr"));
        r
    }

    /// Starts `serve` and waits for its "listening on" line.
    pub fn serve(&mut self, listen: SocketAddr) {
        let mut cmd = self.cli();
        cmd.args(["serve", "--hello-timeout", &self.hello_timeout, "--listen"])
            .arg(listen.to_string())
            .arg("--data")
            .arg(self.data())
            .args(&self.serve_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        match &self.log {
            Some((path, filter)) => {
                let f = std::fs::File::create(path).expect("relay log file");
                cmd.env("RUST_LOG", filter).stderr(f);
            }
            None => {
                cmd.env("RUST_LOG", log_filter()).stderr(Stdio::inherit());
            }
        }
        let mut child = cmd.spawn().expect("spawn relay");
        let stdout = child.stdout.take().expect("relay stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("tether-relay listening on ") {
                    let _ = tx.send(a.trim().to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("relay did not report its address");
        self.addr = Some(addr.parse().expect("relay address"));
        self.proc = Some(Proc { child });
    }

    /// Graceful stop (SIGTERM); the data directory stays.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let status = p.terminate();
            assert!(status.success(), "relay exited with {status}");
        }
    }

    /// Stops and starts again on the same address.
    pub fn restart(&mut self) {
        let addr = self.addr.expect("relay was started");
        self.stop();
        self.serve(addr);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("relay was started")
    }

    fn token(&self, extra: &[&str]) -> String {
        let out = ok(run(self
            .cli()
            .arg("token")
            .arg("--data")
            .arg(self.data())
            .args(["--relay", &self.addr().to_string()])
            .args(extra)));
        out.trim().to_string()
    }

    pub fn agent_token(&self) -> String {
        self.token(&["--agent"])
    }

    pub fn agent_token_with(&self, extra: &[&str]) -> String {
        let mut args = vec!["--agent"];
        args.extend_from_slice(extra);
        self.token(&args)
    }

    /// A token for a technician who is then granted every device group (a technician without
    /// grants sees no device), as most tests want.
    pub fn tech_token(&self, name: &str, role: &str) -> String {
        let token = self.tech_token_with(name, role, &[]);
        self.grant(&["--technician", name, "--all-groups"]);
        token
    }

    /// A technician token with extra arguments (e.g. `--replace`), and no grant.
    pub fn tech_token_with(&self, name: &str, role: &str, extra: &[&str]) -> String {
        let mut args = vec!["--technician", name, "--role", role];
        args.extend_from_slice(extra);
        self.token(&args)
    }

    /// `tether-relay grant ARGS…` on this relay's data directory; returns its output.
    pub fn grant(&self, args: &[&str]) -> String {
        ok(run(self
            .cli()
            .arg("grant")
            .arg("--data")
            .arg(self.data())
            .args(args)))
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.data().join("ca.pem")
    }
}

/// `tether-relay` on the store `store` names (`TETHER_RELAY_STORE`), or the data directory's.
pub fn relay_command(store: Option<&str>) -> Command {
    let mut cmd = Command::new(bin("tether-relay"));
    match store {
        Some(url) => cmd.env("TETHER_RELAY_STORE", url),
        None => cmd.env_remove("TETHER_RELAY_STORE"),
    };
    cmd
}

/// An enrolled agent (its state directory) and, when running, its process.
pub struct Agent {
    pub dir: TempDir,
    pub proc: Option<Proc>,
    pub id: String,
    /// Send the agent's log here, at this `RUST_LOG` level, instead of the test's stderr.
    pub log: Option<(PathBuf, String)>,
    /// More environment for `run` (a Wayland session's variables).
    pub env: Vec<(String, String)>,
}

impl Agent {
    pub fn enroll(token: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = ok(run(Command::new(bin("tether-agent"))
            .args(["enroll", "--token", token, "--state"])
            .arg(dir.path().join("state"))));
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("enrolled as device "))
            .and_then(|l| l.split_whitespace().next())
            .expect("device id in enroll output")
            .to_string();
        Agent {
            dir,
            proc: None,
            id,
            log: None,
            env: Vec::new(),
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts `tether-agent run` with extra arguments (e.g. `--inventory-root`).
    pub fn start_with(&mut self, extra: &[&str]) {
        self.start_full(extra, None);
    }

    /// Starts the agent on an X display (for screen sessions).
    pub fn start_on_display(&mut self, display: &str) {
        self.start_full(&[], Some(display));
    }

    /// Starts `tether-agent run` with extra arguments, on an X display or none.
    pub fn start_full(&mut self, extra: &[&str], display: Option<&str>) {
        let mut cmd = Command::new(bin("tether-agent"));
        match display {
            Some(d) => cmd.env("DISPLAY", d),
            None => cmd.env_remove("DISPLAY"),
        };
        cmd.env_remove("WAYLAND_DISPLAY");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let socket = self.socket();
        if let Some(parent) = socket.parent() {
            std::fs::create_dir_all(parent).expect("mkdir ipc");
        }
        match &self.log {
            Some((path, filter)) => {
                let f = std::fs::File::create(path).expect("agent log file");
                cmd.env("RUST_LOG", filter).stderr(f);
            }
            None => {
                cmd.env("RUST_LOG", log_filter()).stderr(Stdio::inherit());
            }
        }
        let child = cmd
            .arg("run")
            .arg("--state")
            .arg(self.state())
            .arg("--socket")
            .arg(&socket)
            .args(extra)
            .args(session_user(extra))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn agent");
        self.proc = Some(Proc { child });
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// The agent's local consent socket (what the tray app and `tether-agent approve` use).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("ipc").join("agent.sock")
    }

    /// Subscribes to the agent's local socket like the tray app does, waiting until the agent
    /// serves it.
    pub fn subscribe(&self) -> LocalClient {
        subscribe(&self.socket())
    }

    /// A stand-in for the user that approves every request (for tests about what happens
    /// inside a session). Stops when dropped.
    pub fn auto_approve(&self) -> Approver {
        auto_approve(&self.socket())
    }

    /// `tether-agent ARGS… --socket <this agent's socket>`; returns the output.
    pub fn local(&self, args: &[&str]) -> std::process::Output {
        run(Command::new(bin("tether-agent"))
            .args(args)
            .arg("--socket")
            .arg(self.socket()))
    }

    /// SIGHUP: collect the inventory again now.
    pub fn refresh_inventory(&self) {
        let pid = self.proc.as_ref().expect("agent running").child.id();
        let ok = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP");
        assert!(ok.success());
    }
}

/// The account the test agents' sessions run as (unless a test names a desktop or session user
/// itself): sessions never run as root unless granted root, and the agent in these tests has
/// no X display to take a desktop user from.
pub const SESSION_USER: &str = "nobody";
/// Its uid.
pub const SESSION_UID: u32 = 65534;

fn session_user(extra: &[&str]) -> Vec<&'static str> {
    if extra
        .iter()
        .any(|a| *a == "--session-user" || *a == "--desktop-user")
    {
        vec![]
    } else {
        vec!["--session-user", SESSION_USER]
    }
}

/// Gives `path` to [`SESSION_USER`], so a session running as them may write there.
pub fn give_to_session_user(path: &Path) {
    std::os::unix::fs::chown(path, Some(SESSION_UID), Some(SESSION_UID)).expect("chown");
}

/// The files in `dir` once there is at least one (waits up to 20 s).
pub fn wait_for_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    wait_until(Duration::from_secs(20), || {
        files = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        !files.is_empty()
    });
    assert!(!files.is_empty(), "nothing appeared in {}", dir.display());
    files
}

/// Subscribes to an agent's local socket like the tray app does, waiting until the agent serves
/// it.
pub fn subscribe(socket: &Path) -> LocalClient {
    let mut client = None;
    wait_until(Duration::from_secs(20), || {
        client = LocalClient::connect(socket).ok();
        client.is_some()
    });
    let mut client = client.expect("agent's local socket did not open");
    client.send(&LocalRequest::Subscribe).expect("subscribe");
    match client.recv().expect("snapshot") {
        LocalEvent::Snapshot { .. } => client,
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

/// A stand-in for the user that approves every request on the agent at `socket`. Stops when
/// dropped.
pub fn auto_approve(socket: &Path) -> Approver {
    let mut client = subscribe(socket);
    let mut answer = client.try_clone().expect("clone");
    let reader = client.try_clone().expect("clone");
    let thread = std::thread::spawn(move || {
        while let Ok(ev) = client.recv() {
            if let LocalEvent::Prompt(p) = ev {
                let _ = answer.send(&LocalRequest::Approve { id: p.id });
            }
        }
    });
    Approver {
        client: reader,
        thread: Some(thread),
    }
}

/// A session opened from the technician library, for tests that speak the session protocol
/// directly: the runtime it lives on, the relay session, and the channels to and from the agent.
pub struct Duplex {
    pub rt: tokio::runtime::Runtime,
    pub session: tether_technician::relay::Session,
    pub session_id: String,
    pub tx: tokio::sync::mpsc::UnboundedSender<tether_protocol::session::ToAgent>,
    pub rx: tokio::sync::mpsc::Receiver<tether_protocol::session::ToViewer>,
}

/// Opens a session as `tech` to `device` (the agent's user must approve it, e.g. with
/// [`Agent::auto_approve`]).
pub fn open_duplex(
    tech: &Tech,
    device: &str,
    permissions: tether_protocol::session::Permissions,
    ticket: &str,
) -> Duplex {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let creds = tether_net::client::Credentials::load(&tech.config()).expect("credentials");
    let (session, remote) = rt.block_on(async {
        let session = tether_technician::relay::Session::open(&creds)
            .await
            .expect("relay session");
        let remote = session
            .open_remote(&creds, device, permissions, "", ticket)
            .await
            .expect("session opened");
        (session, remote)
    });
    let session_id = remote.session_id.clone();
    let (tx, rx) = {
        let _rt = rt.enter();
        remote.into_duplex()
    };
    Duplex {
        rt,
        session,
        session_id,
        tx,
        rx,
    }
}

impl Duplex {
    /// Says goodbye and closes the relay connection.
    pub fn close(self) {
        let _ = self.tx.send(tether_protocol::session::ToAgent::Bye);
        drop(self.tx);
        self.rt.block_on(self.session.close());
    }
}

/// See [`auto_approve`].
pub struct Approver {
    client: LocalClient,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Approver {
    fn drop(&mut self) {
        self.client.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A fixture root for `--inventory-root`: a hostname, an os-release, a meminfo and a dpkg status
/// database with the given `(name, version)` packages.
pub struct FixtureRoot {
    pub dir: TempDir,
}

impl FixtureRoot {
    pub fn new(hostname: &str, packages: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in ["proc/sys/kernel", "etc", "var/lib/dpkg"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::write(
            root.join("proc/sys/kernel/hostname"),
            format!("{hostname}\n"),
        )
        .expect("write");
        std::fs::write(root.join("proc/sys/kernel/osrelease"), "6.1.0-test\n").expect("write");
        std::fs::write(
            root.join("etc/os-release"),
            "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        )
        .expect("write");
        std::fs::write(
            root.join("proc/meminfo"),
            "MemTotal:        8048576 kB\nSwapTotal:       1048576 kB\n",
        )
        .expect("write");
        let f = FixtureRoot { dir };
        f.set_packages(packages);
        f
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Rewrites the dpkg status database.
    pub fn set_packages(&self, packages: &[(&str, &str)]) {
        let mut status = String::new();
        for (name, version) in packages {
            status.push_str(&format!(
                "Package: {name}\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nVersion: {version}\nDescription: test package\n second line\n\n"
            ));
        }
        // A removed package whose config files remain: not installed, must not be reported.
        status.push_str("Package: leftover\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 0.1\n\n");
        let tmp = self.path().join("var/lib/dpkg/status.tmp");
        std::fs::write(&tmp, status).expect("write status");
        std::fs::rename(&tmp, self.path().join("var/lib/dpkg/status")).expect("rename status");
    }
}

/// An enrolled technician: its config directory and the `tether` command.
pub struct Tech {
    pub dir: TempDir,
}

impl Tech {
    /// `tether connect DEVICE --actual-size ARGS…` on the X display `local` (software GL), as
    /// this technician, with more environment `env`.
    pub fn viewer(&self, local: &Xvfb, device: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc {
            child: Command::new(bin("tether"))
                .arg("--config")
                .arg(self.config())
                .args(["connect", device, "--actual-size"])
                .args(args)
                .env("DISPLAY", &local.display)
                .env("LIBGL_ALWAYS_SOFTWARE", "1")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn tether connect"),
        }
    }

    pub fn enroll(token: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Tech { dir };
        ok(t.tether(&["enroll", "--token", token]));
        t
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn tether(&self, args: &[&str]) -> Output {
        run(Command::new(bin("tether"))
            .arg("--config")
            .arg(self.config())
            .args(args))
    }

    /// Starts `tether ARGS…` in the background (stdout and stderr piped).
    pub fn spawn(&self, args: &[&str]) -> Proc {
        let child = Command::new(bin("tether"))
            .arg("--config")
            .arg(self.config())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tether");
        Proc { child }
    }

    /// `tether devices --json`, parsed.
    pub fn devices(&self) -> Vec<Value> {
        let out = ok(self.tether(&["devices", "--json"]));
        match serde_json::from_str(&out) {
            Ok(Value::Array(a)) => a,
            other => panic!("devices --json is not an array: {other:?}\n{out}"),
        }
    }

    /// Runs `tether ARGS --json` and parses the output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = ok(self.tether(&a));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}\n{out}"))
    }

    /// History entries of a device as `(kind, subject, old, new)`.
    pub fn history(&self, device: &str) -> Vec<(String, String, Option<String>, Option<String>)> {
        let v = self.json(&["history", device]);
        v.as_array()
            .expect("history array")
            .iter()
            .map(|c| {
                (
                    c["kind"].as_str().unwrap_or("").to_string(),
                    c["subject"].as_str().unwrap_or("").to_string(),
                    c["old"].as_str().map(str::to_string),
                    c["new"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    /// Waits (up to 10 s) until this technician sees the device online.
    pub fn wait_online(&self, id: &str) {
        wait_until(Duration::from_secs(10), || self.is_online(id) == Some(true))
            .unwrap_or_else(|| panic!("device {id} never came online"));
    }

    pub fn is_online(&self, id: &str) -> Option<bool> {
        self.devices()
            .iter()
            .find(|d| d["id"] == id)
            .and_then(|d| d["online"].as_bool())
    }
}

/// A private X server (Xvfb) on a display number it picks itself; killed on drop.
pub struct Xvfb {
    pub display: String,
    proc: Proc,
}

impl Xvfb {
    pub fn start(width: u32, height: u32) -> Self {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-noreset",
                "-screen",
                "0",
            ])
            .arg(format!("{width}x{height}x24"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is not installed (tests/run.sh installs it)");
        let stdout = child.stdout.take().expect("Xvfb stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let n = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("Xvfb did not report its display");
        let display = format!(":{}", n.trim());
        let x = Xvfb {
            display,
            proc: Proc { child },
        };
        // Ready means a client can connect, not only that the server picked its number.
        wait_until(Duration::from_secs(20), || {
            x.run("xdotool", &["getdisplaygeometry"]).status.success()
        })
        .unwrap_or_else(|| panic!("Xvfb {} accepts no clients", x.display));
        x
    }

    /// Runs an X client on this display in the background; killed on drop. Its stderr goes to
    /// the test's output, so a client that fails to start says why.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Proc {
        let child = Command::new(program)
            .args(args)
            .env("DISPLAY", &self.display)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Proc { child }
    }

    /// Runs an X client on this display to completion.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        run(Command::new(program)
            .args(args)
            .env("DISPLAY", &self.display))
    }

    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }
}

impl Drop for Xvfb {
    /// SIGTERM first, so the server removes its lock file and socket for the next test.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.proc.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Decodes a PNG file into (width, height, RGB bytes).
pub fn read_png_rgb(path: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut dec = png::Decoder::new(BufReader::new(file));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        other => panic!("unexpected PNG color type {other:?}"),
    };
    (info.width, info.height, rgb)
}

/// A shell to `device` that stays open (stdin held) until something cuts it, once it ran.
pub fn open_shell(tech: &Tech, device: &str) -> (std::process::Child, std::process::ChildStdin) {
    let mut shell = Command::new(bin("tether"))
        .arg("--config")
        .arg(tech.config())
        .args(["shell", device])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = shell.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, b"echo shell-$((40+2))\n").unwrap();
    let mut out = shell.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("shell-42") {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        assert!(
            n > 0,
            "shell ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    (shell, input)
}
