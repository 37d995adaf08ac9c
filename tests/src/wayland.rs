//! Real headless Wayland desktops for the end-to-end tests: GNOME's compositor (mutter, with
//! PipeWire for its ScreenCast API) and sway (wlroots), each on a private session bus and a
//! private `XDG_RUNTIME_DIR`, and a GTK test client (`TestApp`) that shows a known colour pattern
//! and reports what it is typed and where it is clicked.
//!
//! How these were found to work (packages, traps, numbers): `docs/research/wayland/FINDINGS.md`.
//! Every process of a session is in one process group, killed as a whole when the session is
//! dropped; the session's state (its runtime directory, logs, configuration) is a temporary
//! directory removed with it.
//!
//! Set `TETHER_TEST_WAYLAND=0` to skip the Wayland tests (the constructors then return `None`);
//! otherwise a missing program is a failure: `deploy/install-deps.sh test` installs them.

use crate::Proc;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a session or the test client may take to come up. Generous: the suite runs while
/// compilers load both cores (a session takes ~2 s on an idle machine).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The unprivileged account sway runs as (sway refuses root); created when missing.
pub const SWAY_USER: &str = "tether-sway";

/// The test client, embedded so that it can be copied where the session's user can read it.
const TESTAPP_PY: &str = include_str!("../fixtures/wayland/testapp.py");

const INSTALL: &str = "run deploy/install-deps.sh test";

/// Which compositor a session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// GNOME's mutter 43 `--headless`, with pipewire and wireplumber (ScreenCast/RemoteDesktop).
    Mutter,
    /// sway (wlroots) on the headless backend, as [`SWAY_USER`].
    Sway,
}

/// False when `TETHER_TEST_WAYLAND=0`: the Wayland tests are skipped.
pub fn enabled() -> bool {
    std::env::var("TETHER_TEST_WAYLAND").as_deref() != Ok("0")
}

/// A running headless Wayland session. Dropping it kills every process in it (also the clients
/// started with [`WaylandSession::spawn`]) and removes its state.
pub struct WaylandSession {
    /// What a client needs to join the session: `XDG_RUNTIME_DIR`, `DBUS_SESSION_BUS_ADDRESS`,
    /// `WAYLAND_DISPLAY`, `GDK_BACKEND=wayland` (and `SWAYSOCK` for sway).
    pub env: Vec<(String, String)>,
    /// The account the session runs as: `None` = the test's own (root in CI), for mutter;
    /// `Some(SWAY_USER)` for sway.
    pub user: Option<String>,
    /// The uid the session runs as.
    pub uid: u32,
    pub kind: Kind,
    /// The monitors, `(width, height)`, left to right.
    pub monitors: Vec<(u32, u32)>,
    /// How long the session took to come up (start of the first process → ready).
    pub startup: Duration,
    /// The processes; declared before `dir` so that they die before their state is removed.
    group: Group,
    /// Runtime directory, logs, configuration, the test client's copy.
    pub dir: TempDir,
    account: Option<Account>,
    /// Last: it outlives the teardown of the group and the removal of `dir`.
    watchdog: Watchdog,
}

/// A user account from the password database.
#[derive(Clone, Debug)]
struct Account {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

impl WaylandSession {
    /// Headless mutter with one virtual monitor per entry, left to right from (0,0), on a
    /// private session bus with pipewire and wireplumber, as the test's own user. Ready when the
    /// Wayland socket exists and `org.gnome.Mutter.ScreenCast` has an owner on the bus.
    ///
    /// `None` (after saying so on stderr) when `TETHER_TEST_WAYLAND=0`.
    pub fn mutter(monitors: &[(u32, u32)]) -> Option<Self> {
        if !enabled() {
            eprintln!("skipped: TETHER_TEST_WAYLAND=0 (no mutter session)");
            return None;
        }
        assert!(!monitors.is_empty(), "mutter needs at least one monitor");
        for (program, package) in [
            ("dbus-daemon", "dbus-daemon"),
            ("dbus-send", "dbus-bin"),
            ("pipewire", "pipewire-bin"),
            ("wireplumber", "wireplumber"),
            ("mutter", "mutter"),
        ] {
            require(program, package);
        }
        let dir = tempfile::Builder::new()
            .prefix("tether-mutter-")
            .tempdir()
            .expect("tempdir");
        let mut s = WaylandSession::new(Kind::Mutter, dir, None, monitors);
        let start = Instant::now();
        s.start_bus();
        let run = s.runtime_dir();

        // pipewire first; wireplumber needs its socket.
        let cmd = s.daemon_command("pipewire", &[]);
        s.group.spawn("pipewire", cmd, s.dir.path());
        s.wait_for("pipewire's socket", || run.join("pipewire-0").exists());
        let cmd = s.daemon_command("wireplumber", &[]);
        s.group.spawn("wireplumber", cmd, s.dir.path());

        // A display name unique on the machine, although the runtime directory is private.
        static N: AtomicU32 = AtomicU32::new(0);
        let display = format!(
            "wayland-tether-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        // GSettings from a key file of this session: no dconf, and no window animations (a
        // first frame once showed the test window mid map-animation, FINDINGS §9.8).
        let keyfile = s.dir.path().join("config/glib-2.0/settings/keyfile");
        std::fs::create_dir_all(keyfile.parent().expect("parent")).expect("mkdir config");
        std::fs::write(
            &keyfile,
            "[org/gnome/desktop/interface]\nenable-animations=false\n",
        )
        .expect("write keyfile");
        let mut args = vec!["--headless".to_string()];
        for (w, h) in monitors {
            args.push("--virtual-monitor".into());
            args.push(format!("{w}x{h}"));
        }
        args.extend([
            "--wayland".into(),
            "--no-x11".into(),
            format!("--wayland-display={display}"),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = s.daemon_command("mutter", &args);
        cmd.env("GSETTINGS_BACKEND", "keyfile");
        s.group.spawn("mutter", cmd, s.dir.path());
        s.set_env("WAYLAND_DISPLAY", &display);
        s.set_env("GDK_BACKEND", "wayland");

        let socket = run.join(&display);
        let bus = s.var("DBUS_SESSION_BUS_ADDRESS").to_string();
        s.wait_for(
            "mutter's Wayland socket and org.gnome.Mutter.ScreenCast",
            || socket.exists() && name_has_owner(&bus, "org.gnome.Mutter.ScreenCast"),
        );
        s.startup = start.elapsed();
        Some(s)
    }

    /// Headless sway with one output of `width`×`height` at (0,0), as the unprivileged
    /// [`SWAY_USER`] (created when missing), on a private session bus of that user. Ready when
    /// its Wayland socket exists and `swaymsg -t get_outputs` shows the output at that size.
    ///
    /// `None` (after saying why on stderr) when `TETHER_TEST_WAYLAND=0`, or when the test does
    /// not run as root (it cannot start processes as another user then).
    pub fn sway(width: u32, height: u32) -> Option<Self> {
        if !enabled() {
            eprintln!("skipped: TETHER_TEST_WAYLAND=0 (no sway session)");
            return None;
        }
        if !is_root() {
            eprintln!(
                "skipped: the sway session runs as the user {SWAY_USER} (sway refuses root), \
                 which only root can start; run the tests as root"
            );
            return None;
        }
        for (program, package) in [
            ("dbus-daemon", "dbus-daemon"),
            ("sway", "sway"),
            ("swaymsg", "sway"),
            ("setpriv", "util-linux"),
        ] {
            require(program, package);
        }
        let account = sway_account();
        let dir = tempfile::Builder::new()
            .prefix("tether-sway-")
            .tempdir()
            .expect("tempdir");
        // The user traverses the state directory (config, test client); its runtime directory
        // is its own, 0700.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod state");
        let mut s = WaylandSession::new(Kind::Sway, dir, Some(account), &[(width, height)]);
        let config = s.dir.path().join("sway.config");
        std::fs::write(
            &config,
            format!(
                "output HEADLESS-1 resolution {width}x{height} position 0,0 bg #204060 solid_color\n\
                 default_border none\n"
            ),
        )
        .expect("write sway config");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644))
            .expect("chmod config");

        let start = Instant::now();
        s.start_bus();
        let config = config.to_string_lossy().into_owned();
        let mut cmd = s.daemon_command("sway", &["-c", &config]);
        cmd.envs([
            ("WLR_BACKENDS", "headless"),
            ("WLR_RENDERER", "pixman"),
            ("WLR_LIBINPUT_NO_DEVICES", "1"),
            ("WLR_HEADLESS_OUTPUTS", "1"),
        ]);
        s.group.spawn("sway", cmd, s.dir.path());

        let run = s.runtime_dir();
        let mut found = (None, None);
        s.wait_for("sway's Wayland and IPC sockets", || {
            found = sway_sockets(&run);
            found.0.is_some() && found.1.is_some()
        });
        let (Some(display), Some(ipc)) = found else {
            unreachable!("waited for both")
        };
        s.set_env("WAYLAND_DISPLAY", &display);
        s.set_env("GDK_BACKEND", "wayland");
        s.set_env("SWAYSOCK", &run.join(ipc).to_string_lossy());
        let sway_sees_output = |s: &WaylandSession| {
            let out = s.run("swaymsg", &["-t", "get_outputs", "-r"]);
            let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
                Ok(v) => v,
                Err(_) => return false,
            };
            v.as_array().is_some_and(|outputs| {
                outputs.iter().any(|o| {
                    o["current_mode"]["width"] == width && o["current_mode"]["height"] == height
                })
            })
        };
        s.wait_for("swaymsg -t get_outputs", || sway_sees_output(&s));
        s.startup = start.elapsed();
        Some(s)
    }

    fn new(kind: Kind, dir: TempDir, account: Option<Account>, monitors: &[(u32, u32)]) -> Self {
        let run = dir.path().join("run");
        std::fs::create_dir(&run).expect("mkdir run");
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).expect("chmod run");
        std::fs::create_dir(dir.path().join("logs")).expect("mkdir logs");
        if let Some(a) = &account {
            std::os::unix::fs::chown(&run, Some(a.uid), Some(a.gid)).expect("chown run");
        }
        let uid = match &account {
            Some(a) => a.uid,
            None => std::fs::metadata("/proc/self").expect("/proc/self").uid(),
        };
        WaylandSession {
            env: vec![("XDG_RUNTIME_DIR".into(), run.to_string_lossy().into_owned())],
            user: account.as_ref().map(|a| a.name.clone()),
            uid,
            kind,
            monitors: monitors.to_vec(),
            startup: Duration::ZERO,
            group: Group::default(),
            dir,
            account,
            watchdog: Watchdog::default(),
        }
    }

    /// The session's `XDG_RUNTIME_DIR` (the Wayland, PipeWire and bus sockets are in it).
    pub fn runtime_dir(&self) -> PathBuf {
        PathBuf::from(self.var("XDG_RUNTIME_DIR"))
    }

    /// The path of the Wayland socket.
    pub fn wayland_socket(&self) -> PathBuf {
        self.runtime_dir().join(self.var("WAYLAND_DISPLAY"))
    }

    /// A variable of [`WaylandSession::env`] (panics when it is not set).
    pub fn var(&self, name: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{name} is not set in the session"))
    }

    fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.into(), value.into()));
    }

    /// Where a daemon's output goes: `<dir>/logs/<name>.log`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{name}.log"))
    }

    /// The last lines of every daemon's log, for failure messages.
    pub fn logs(&self) -> String {
        self.group.logs(self.dir.path())
    }

    /// `program args…` as the session's user, with the session's environment (and nothing of
    /// the test's display), in the session's process group: killed with the session at the
    /// latest. For the session's user, through `setpriv` (which execs, so the pid is the
    /// program's) with a clean environment.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = match &self.account {
            Some(a) => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={}", a.uid))
                    .arg(format!("--regid={}", a.gid))
                    .arg("--init-groups")
                    .arg("--")
                    .arg(program)
                    .env_clear()
                    .envs([
                        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
                        ("HOME", a.home.as_str()),
                        ("USER", a.name.as_str()),
                        ("LOGNAME", a.name.as_str()),
                        ("LANG", "C.UTF-8"),
                    ]);
                cmd
            }
            None => {
                let mut cmd = Command::new(program);
                for v in [
                    "DISPLAY",
                    "WAYLAND_SOCKET",
                    "XAUTHORITY",
                    "SWAYSOCK",
                    "I3SOCK",
                ] {
                    cmd.env_remove(v);
                }
                cmd
            }
        };
        cmd.args(args).envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(pgid) = self.group.pgid {
            cmd.process_group(pgid);
        }
        cmd
    }

    /// Starts a client in the session (see [`WaylandSession::command`]); its stderr goes to the
    /// test's output. Killed on drop of the `Proc`, or with the session.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Proc {
        let child = self
            .command(program, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Proc { child }
    }

    /// Runs a client in the session to completion.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        crate::run(&mut self.command(program, args))
    }

    /// Starts the test client (`tests/fixtures/wayland/testapp.py`) fullscreen; see [`TestApp`].
    pub fn test_app(&self) -> TestApp {
        self.test_app_with(&[])
    }

    /// The test client with extra arguments (`--animate`: a square moving over the bands).
    pub fn test_app_with(&self, extra: &[&str]) -> TestApp {
        require("/usr/bin/python3", "python3");
        let script = self.dir.path().join("testapp.py");
        if !script.exists() {
            std::fs::write(&script, TESTAPP_PY).expect("write testapp.py");
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644))
                .expect("chmod testapp.py");
        }
        let mut args = vec![script.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        // Not python3 from PATH: that may be a pyenv without the gi module (FINDINGS §9.7).
        let mut cmd = self.command("/usr/bin/python3", &args);
        cmd.env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            // No accessibility bus to look for.
            .env("NO_AT_BRIDGE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the test client: {e}"));
        let stdout = child.stdout.take().expect("testapp stdout");
        let shared = Arc::new((Mutex::new(AppState::default()), Condvar::new()));
        let s = shared.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let (lock, cvar) = &*s;
                lock.lock().expect("app state").take(&line);
                cvar.notify_all();
            }
            let (lock, cvar) = &*s;
            lock.lock().expect("app state").closed = true;
            cvar.notify_all();
        });
        TestApp {
            proc: Proc { child },
            shared,
        }
    }

    /// A private session bus (as the session's user): the first process, leader of the group.
    fn start_bus(&mut self) {
        let address = format!("unix:path={}/bus", self.runtime_dir().display());
        let mut cmd = self.command(
            "dbus-daemon",
            &[
                "--session",
                "--nofork",
                "--nopidfile",
                "--nosyslog",
                "--print-address=1",
                &format!("--address={address}"),
            ],
        );
        cmd.stdout(Stdio::piped());
        let out = self
            .group
            .spawn("dbus-daemon", cmd, self.dir.path())
            .expect("dbus-daemon stdout");
        self.watchdog = Watchdog::start(self.group.pgid.expect("group"), self.dir.path());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let printed = rx.recv_timeout(READY_TIMEOUT).unwrap_or_default();
        assert!(
            printed.starts_with("unix:"),
            "the session bus did not start (printed {printed:?}):\n{}",
            self.logs()
        );
        self.set_env("DBUS_SESSION_BUS_ADDRESS", printed.trim());
    }

    /// A daemon of the session: the session's user and environment, private XDG directories
    /// (so that parallel sessions do not share pipewire's or wireplumber's state files).
    fn daemon_command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = self.command(program, args);
        for (var, sub) in [
            ("XDG_CONFIG_HOME", "config"),
            ("XDG_DATA_HOME", "data"),
            ("XDG_CACHE_HOME", "cache"),
            ("XDG_STATE_HOME", "state"),
        ] {
            cmd.env(var, self.dir.path().join(sub));
        }
        cmd
    }

    fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            if cond() {
                return;
            }
            if let Some(dead) = self.group.exited() {
                panic!(
                    "{:?} session: {dead} while waiting for {what}:\n{}",
                    self.kind,
                    self.logs()
                );
            }
            if start.elapsed() > READY_TIMEOUT {
                panic!(
                    "{:?} session: no {what} after {READY_TIMEOUT:?}:\n{}",
                    self.kind,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pids of the live (not zombie) processes of the session's group.
    pub fn processes(&self) -> Vec<u32> {
        self.group.pgid.map(group_members).unwrap_or_default()
    }
}

/// The session's processes: one process group, led by the first.
#[derive(Default)]
struct Group {
    pgid: Option<i32>,
    children: Mutex<Vec<(String, Child)>>,
}

/// A watchdog beside the session's group (its own process group, the test's own user): when
/// the test process is gone without dropping the session (killed by a timeout, SIGKILL, also in
/// the middle of a teardown), it kills the whole group and removes the state, so that no desktop
/// outlives its test. Stopped last on a normal teardown.
#[derive(Default)]
struct Watchdog(Option<Child>);

impl Watchdog {
    fn start(pgid: i32, dir: &Path) -> Self {
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -KILL -{pgid}; \
             for i in $(seq 50); do kill -0 -{pgid} 2>/dev/null || break; sleep 0.1; done; \
             rm -rf '{}'",
            std::process::id(),
            dir.display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the session's watchdog: {e}"));
        Watchdog(Some(child))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(mut w) = self.0.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Group {
    /// Spawns `cmd` into the group (its output to `<dir>/logs/<name>.log` unless piped);
    /// returns its stdout when piped.
    fn spawn(&mut self, name: &str, mut cmd: Command, dir: &Path) -> Option<ChildStdout> {
        let log = std::fs::File::create(dir.join("logs").join(format!("{name}.log")))
            .expect("create log");
        cmd.stdin(Stdio::null())
            .stderr(log.try_clone().expect("log"));
        if self.pgid.is_none() {
            cmd.process_group(0);
        } else {
            cmd.stdout(log);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.pgid.get_or_insert(child.id() as i32);
        let stdout = child.stdout.take();
        self.children
            .get_mut()
            .expect("children")
            .push((name.into(), child));
        stdout
    }

    /// The first daemon found to have exited, described.
    fn exited(&self) -> Option<String> {
        let mut children = self.children.lock().expect("children");
        children.iter_mut().find_map(|(name, c)| {
            c.try_wait()
                .ok()
                .flatten()
                .map(|status| format!("{name} exited ({status})"))
        })
    }

    fn logs(&self, dir: &Path) -> String {
        let mut s = String::new();
        for (name, _) in self.children.lock().expect("children").iter() {
            let text = std::fs::read_to_string(dir.join("logs").join(format!("{name}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            s.push_str(&format!("--- {name} (last 30 lines) ---\n"));
            for l in &lines[lines.len().saturating_sub(30)..] {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Group {
    /// SIGTERM to the whole group (as the research scripts' `stop`), SIGKILL to what is still
    /// alive after 5 s; reaps our children.
    fn drop(&mut self) {
        let Some(pgid) = self.pgid else { return };
        let children = self.children.get_mut().unwrap_or_else(|e| e.into_inner());
        signal_group(pgid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for (_, c) in children.iter_mut() {
                let _ = c.try_wait();
            }
            if group_members(pgid).is_empty() {
                break;
            }
            if Instant::now() > deadline {
                signal_group(pgid, "KILL");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for (_, c) in children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal_group(pgid: i32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stderr(Stdio::null())
        .status();
}

/// Live (not zombie) processes whose process group is `pgid`, from /proc.
pub fn group_members(pgid: i32) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may contain anything, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let pgrp = f.nth(1).and_then(|p| p.parse::<i32>().ok());
        if pgrp == Some(pgid) && !matches!(state, Some("Z") | Some("X")) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether `name` has an owner on the bus at `address` (`dbus-send`, from dbus-bin).
fn name_has_owner(address: &str, name: &str) -> bool {
    let out = Command::new("dbus-send")
        .arg(format!("--bus={address}"))
        .args([
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/",
            "org.freedesktop.DBus.NameHasOwner",
        ])
        .arg(format!("string:{name}"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("boolean true"))
}

/// sway's Wayland socket (`wayland-N`) and IPC socket (`sway-ipc.*.sock`) in its runtime dir.
fn sway_sockets(run: &Path) -> (Option<String>, Option<String>) {
    let (mut display, mut ipc) = (None, None);
    for e in std::fs::read_dir(run).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("wayland-") && !name.ends_with(".lock") {
            display = Some(name);
        } else if name.starts_with("sway-ipc.") && name.ends_with(".sock") {
            ipc = Some(name);
        }
    }
    (display, ipc)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0)
}

/// Panics with the package to install when `program` is not on the PATH (or not at its path).
pub fn require(program: &str, package: &str) {
    let found = if program.contains('/') {
        Path::new(program).exists()
    } else {
        let path = std::env::var("PATH").unwrap_or_default();
        path.split(':')
            .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
            .any(|d| Path::new(d).join(program).exists())
    };
    assert!(
        found,
        "{program} is not installed (Debian package {package}): {INSTALL} \
         (or set TETHER_TEST_WAYLAND=0 to skip the Wayland tests)"
    );
}

/// The [`SWAY_USER`] account, created (`useradd -m`) when missing.
fn sway_account() -> Account {
    static CREATE: Mutex<()> = Mutex::new(());
    let _one_at_a_time = CREATE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(a) = lookup_account(SWAY_USER) {
        return a;
    }
    require("useradd", "passwd");
    let out = crate::run(Command::new("useradd").args(["-m", SWAY_USER]));
    lookup_account(SWAY_USER).unwrap_or_else(|| {
        panic!(
            "cannot create the user {SWAY_USER} for sway: {}",
            crate::stderr(&out)
        )
    })
}

fn lookup_account(name: &str) -> Option<Account> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let f: Vec<&str> = line.trim().split(':').collect();
    if f.len() < 7 || f[0] != name {
        return None;
    }
    Some(Account {
        name: name.into(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].into(),
    })
}

/// One colour band of the test client's pattern: a `w`×`h` rectangle at (`x`,`y`) in screen
/// coordinates (the window is fullscreen at (0,0)), filled with `rgb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Band {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub rgb: [u8; 3],
}

/// The pattern at the top of the test client's window: red, green, blue, white, 320×200 each.
/// Needs a monitor at least [`PATTERN_WIDTH`]×[`PATTERN_HEIGHT`].
pub const BANDS: [Band; 4] = [
    Band {
        x: 0,
        y: 0,
        w: 320,
        h: 200,
        rgb: [255, 0, 0],
    },
    Band {
        x: 320,
        y: 0,
        w: 320,
        h: 200,
        rgb: [0, 255, 0],
    },
    Band {
        x: 640,
        y: 0,
        w: 320,
        h: 200,
        rgb: [0, 0, 255],
    },
    Band {
        x: 960,
        y: 0,
        w: 320,
        h: 200,
        rgb: [255, 255, 255],
    },
];
pub const PATTERN_WIDTH: u32 = 1280;
pub const PATTERN_HEIGHT: u32 = 200;
/// A point in the test client's click area (below the entry): a click there is reported.
pub const CLICK_POINT: (i32, i32) = (640, 500);

/// Checks that an RGB image (`width`×`height`, 3 bytes a pixel, rows packed) shows [`BANDS`]
/// exactly, every pixel of every band; `Err` names the first pixel that differs.
pub fn check_pattern(width: u32, height: u32, rgb: &[u8]) -> Result<(), String> {
    if width < PATTERN_WIDTH || height < PATTERN_HEIGHT {
        return Err(format!(
            "image {width}x{height} is smaller than the pattern {PATTERN_WIDTH}x{PATTERN_HEIGHT}"
        ));
    }
    if rgb.len() != (width * height * 3) as usize {
        return Err(format!(
            "image of {} bytes is not {width}x{height} RGB",
            rgb.len()
        ));
    }
    for b in BANDS {
        for y in b.y..b.y + b.h {
            for x in b.x..b.x + b.w {
                let i = ((y * width + x) * 3) as usize;
                if rgb[i..i + 3] != b.rgb {
                    return Err(format!(
                        "pixel ({x},{y}) is {:?}, expected {:?}",
                        &rgb[i..i + 3],
                        b.rgb
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The test client (`tests/fixtures/wayland/testapp.py`, GTK3 on Wayland): fullscreen, the
/// pattern [`BANDS`] at the top, a focused text entry below it and a click area filling the
/// rest. Its stdout (`READY:WxH`, `TEXT:'…'`, `CLICK:button:x:y`) is read on a thread. Killed on
/// drop.
pub struct TestApp {
    pub proc: Proc,
    shared: Arc<(Mutex<AppState>, Condvar)>,
}

#[derive(Default)]
struct AppState {
    ready: Option<(u32, u32)>,
    text: Option<String>,
    clicks: VecDeque<(u32, i32, i32)>,
    lines: Vec<String>,
    closed: bool,
}

impl AppState {
    fn take(&mut self, line: &str) {
        self.lines.push(line.to_string());
        if let Some(size) = line.strip_prefix("READY:") {
            self.ready = size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
        } else if let Some(repr) = line.strip_prefix("TEXT:") {
            self.text = Some(parse_py_str(repr).unwrap_or_else(|| repr.to_string()));
        } else if let Some(click) = line.strip_prefix("CLICK:") {
            let f: Vec<&str> = click.split(':').collect();
            if let [b, x, y] = f[..]
                && let (Ok(b), Ok(x), Ok(y)) = (b.parse(), x.parse(), y.parse())
            {
                self.clicks.push_back((b, x, y));
            }
        }
    }
}

impl TestApp {
    /// Waits (up to [`READY_TIMEOUT`]) until the window is fullscreen and activated, the entry is
    /// its focus widget (typed keys go there once the seat has a keyboard) and the pattern has
    /// been painted; returns the window's size.
    pub fn wait_ready(&self) -> (u32, u32) {
        let (lock, cvar) = &*self.shared;
        let st = lock.lock().expect("app state");
        let (st, _) = cvar
            .wait_timeout_while(st, READY_TIMEOUT, |s| s.ready.is_none() && !s.closed)
            .expect("app state");
        st.ready.unwrap_or_else(|| {
            panic!(
                "the test client is not ready after {READY_TIMEOUT:?} ({}); its output: {:?}",
                if st.closed {
                    "it exited"
                } else {
                    "still running"
                },
                st.lines
            )
        })
    }

    /// Waits until the entry's text is `expected`; `Err` with the last text seen (`""` when the
    /// entry never changed) after `timeout`, or when the client exited.
    pub fn wait_text(&self, expected: &str, timeout: Duration) -> Result<(), String> {
        let (lock, cvar) = &*self.shared;
        let st = lock.lock().expect("app state");
        let (st, _) = cvar
            .wait_timeout_while(st, timeout, |s| {
                s.text.as_deref() != Some(expected) && !s.closed
            })
            .expect("app state");
        match st.text.as_deref() {
            Some(t) if t == expected => Ok(()),
            other => Err(other.unwrap_or("").to_string()),
        }
    }

    /// The entry's text as last reported (`""` before any change).
    pub fn text(&self) -> String {
        let st = self.shared.0.lock().expect("app state");
        st.text.clone().unwrap_or_default()
    }

    /// The next click not yet taken, `(button, x, y)` in screen coordinates (1 = left), waiting
    /// up to `timeout` for one.
    pub fn wait_click(&self, timeout: Duration) -> Option<(u32, i32, i32)> {
        let (lock, cvar) = &*self.shared;
        let st = lock.lock().expect("app state");
        let (mut st, _) = cvar
            .wait_timeout_while(st, timeout, |s| s.clicks.is_empty() && !s.closed)
            .expect("app state");
        st.clicks.pop_front()
    }

    /// Every line the client printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.shared.0.lock().expect("app state").lines.clone()
    }
}

/// Decodes a Python `repr()` of a str: `'…'` or `"…"`, with `\\ \' \" \n \r \t \xHH \uHHHH
/// \UHHHHHHHH` escapes.
pub fn parse_py_str(repr: &str) -> Option<String> {
    let repr = repr.trim_end();
    let quote = repr.chars().next()?;
    if !(quote == '\'' || quote == '"') || repr.len() < 2 || !repr.ends_with(quote) {
        return None;
    }
    let inner = &repr[1..repr.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        let hex = |chars: &mut std::str::Chars, n: usize| -> Option<char> {
            let s: String = chars.by_ref().take(n).collect();
            (s.len() == n)
                .then(|| u32::from_str_radix(&s, 16).ok())
                .flatten()
                .and_then(char::from_u32)
        };
        match e {
            '\\' | '\'' | '"' => out.push(e),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'x' => out.push(hex(&mut chars, 2)?),
            'u' => out.push(hex(&mut chars, 4)?),
            'U' => out.push(hex(&mut chars, 8)?),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_reprs_decode() {
        assert_eq!(
            parse_py_str("'Hello, World! @#'").as_deref(),
            Some("Hello, World! @#")
        );
        assert_eq!(parse_py_str("\"it's\"").as_deref(), Some("it's"));
        assert_eq!(
            parse_py_str(r"'a\'b\\c\n\t'").as_deref(),
            Some("a'b\\c\n\t")
        );
        assert_eq!(
            parse_py_str(r"'\x1b\u200b\U0001f600é'").as_deref(),
            Some("\u{1b}\u{200b}😀é")
        );
        assert_eq!(parse_py_str("''").as_deref(), Some(""));
        assert_eq!(parse_py_str("'open"), None);
    }

    #[test]
    fn app_lines_parse() {
        let mut s = AppState::default();
        for l in [
            "READY:1280x720",
            "TEXT:'H'",
            "TEXT:'Hi'",
            "CLICK:1:640:500",
            "CLICK:x",
        ] {
            s.take(l);
        }
        assert_eq!(s.ready, Some((1280, 720)));
        assert_eq!(s.text.as_deref(), Some("Hi"));
        assert_eq!(s.clicks, VecDeque::from([(1, 640, 500)]));
    }

    #[test]
    fn pattern_check_is_pixel_exact() {
        let (w, h) = (1280u32, 720u32);
        let mut img = vec![0u8; (w * h * 3) as usize];
        for b in BANDS {
            for y in b.y..b.y + b.h {
                for x in b.x..b.x + b.w {
                    let i = ((y * w + x) * 3) as usize;
                    img[i..i + 3].copy_from_slice(&b.rgb);
                }
            }
        }
        assert_eq!(check_pattern(w, h, &img), Ok(()));
        let i = ((199 * w + 1279) * 3) as usize;
        img[i] = 254;
        assert!(
            check_pattern(w, h, &img)
                .unwrap_err()
                .contains("(1279,199)")
        );
    }
}
