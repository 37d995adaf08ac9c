//! The Windows agent under Wine: a private Wine prefix on a private X server, and the
//! cross-built `tether-agent.exe` (`deploy/build-windows.sh --debug`, run by `tests/run.sh`)
//! enrolled and running in it. Everything ends on drop (`wineserver -k`).

use crate::{Proc, Xvfb, ok, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// `target/windows/dist`: the Windows build's output, beside the Linux target directory.
pub fn dist() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/windows/dist
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target directory");
    let dist = target.join("windows").join("dist");
    assert!(
        dist.join("tether-agent.exe").exists(),
        "{} is missing: build it first with `deploy/build-windows.sh --debug` (tests/run.sh does)",
        dist.join("tether-agent.exe").display()
    );
    dist
}

/// Whether the Windows tests run (`TETHER_TEST_WINDOWS=0` skips them, e.g. on a second pass).
pub fn enabled() -> bool {
    std::env::var("TETHER_TEST_WINDOWS").map_or(true, |v| v != "0")
}

/// A Wine prefix with its own X server.
pub struct Wine {
    pub x: Xvfb,
    prefix: TempDir,
}

impl Wine {
    /// A new prefix (`wineboot`), with the ProcessPrng shim Wine 8 lacks.
    pub fn start() -> Self {
        let x = Xvfb::start(1024, 768);
        let prefix = tempfile::Builder::new()
            .prefix("tether-wine")
            .tempdir()
            .expect("tempdir");
        let w = Wine { x, prefix };
        // Its output goes to a file, not a pipe: the Wine processes it starts (winedevice,
        // services) inherit the pipe and could keep it open long after wineboot is done.
        let log = w.prefix.path().join("wineboot.log");
        let file = std::fs::File::create(&log).expect("wineboot log");
        let boot = w
            .command("timeout")
            .args(["300", "wineboot", "-i"])
            .stdout(Stdio::null())
            .stderr(file)
            .status()
            .expect(
                "wine is not installed (tests/run.sh installs it: deploy/install-deps.sh test)",
            );
        assert!(
            boot.success(),
            "wineboot: {boot}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // The prefix is made by the session wineboot starts; tests begin once that session has
        // ended (its service manager still registers Wine's own services while it runs), or
        // end it when it does not end by itself.
        let waited = w
            .command("timeout")
            .args(["120", "wineserver", "-w"])
            .status();
        if !waited.is_ok_and(|s| s.success()) {
            w.end_session();
        }
        let system32 = w.prefix.path().join("drive_c/windows/system32");
        std::fs::copy(
            dist().join("wine/bcryptprimitives.dll"),
            system32.join("bcryptprimitives.dll"),
        )
        .expect("copy the ProcessPrng shim into the prefix");
        w.start_session();
        w
    }

    /// Starts the prefix's session (its service manager, drivers, desktop) with a trivial
    /// command. Wine 8 on a loaded machine sometimes never finishes starting one (a driver
    /// host spins and every process waits for it): that session is ended and started again,
    /// up to three times, so a test meets a working Windows or fails saying why.
    fn start_session(&self) {
        for attempt in 1..=3 {
            let mut cmd = self.command("timeout");
            cmd.args(["120", "wine", "cmd", "/c", "echo", "ready"]);
            let out = self.output(cmd);
            if out.status.success() && crate::stdout(&out).contains("ready") {
                return;
            }
            eprintln!(
                "the Wine session did not start (attempt {attempt}: {}); starting it again",
                out.status
            );
            self.end_session();
        }
        panic!("the Wine session did not start in three attempts");
    }

    /// Ends every process of this prefix (`wineserver -k`) and waits for it.
    fn end_session(&self) {
        let _ = self.command("wineserver").arg("-k").status();
        let _ = self
            .command("timeout")
            .args(["60", "wineserver", "-w"])
            .status();
    }

    /// Ends every process of this prefix and starts its session again (the service manager
    /// reads its settings anew).
    pub fn restart(&self) {
        self.end_session();
        self.start_session();
    }

    /// A command under this prefix and display (quiet Wine logs).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("WINEPREFIX", self.prefix.path())
            .env("WINEDEBUG", "-all")
            // No Mono or Gecko: wineboot would otherwise offer to download them in a dialog
            // that nobody answers here (Wine's installers, not needed by the agent).
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env("DISPLAY", &self.x.display)
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `cmd` to completion with its output in files, not pipes: a Windows process it
    /// started may outlive it holding its standard handles, and must not keep the test
    /// waiting for the end of a pipe.
    fn output(&self, mut cmd: Command) -> Output {
        let out = tempfile::tempfile().expect("stdout file");
        let err = tempfile::tempfile().expect("stderr file");
        let status = cmd
            .stdout(out.try_clone().expect("stdout file"))
            .stderr(err.try_clone().expect("stderr file"))
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut v = Vec::new();
            let _ = f.seek(std::io::SeekFrom::Start(0));
            let _ = f.read_to_end(&mut v);
            v
        };
        Output {
            status,
            stdout: read(out),
            stderr: read(err),
        }
    }

    /// `wine PROGRAM ARGS…` to completion (killed after 300 s: a hung Wine fails the test with
    /// its output rather than hanging it).
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = self.command("timeout");
        cmd.args(["300", "wine", program]).args(args);
        self.output(cmd)
    }

    /// `wine tether-agent.exe ARGS…` to completion (killed after 120 s: a hung command fails
    /// the test with its output rather than hanging it).
    pub fn agent(&self, args: &[&str]) -> Output {
        let mut cmd = self.command("timeout");
        cmd.args(["120", "wine"])
            .arg(dist().join("tether-agent.exe"))
            .args(args);
        self.output(cmd)
    }

    /// `wine wmic ARGS…`'s answer as text (wmic writes UTF-16 with a byte-order mark).
    pub fn wmic(&self, args: &[&str]) -> String {
        let out = self.run("wmic", args);
        assert!(out.status.success(), "wmic {args:?}: {out:?}");
        let b = &out.stdout;
        if b.starts_with(&[0xff, 0xfe]) {
            let units: Vec<u16> = b[2..]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        } else {
            String::from_utf8_lossy(b).into_owned()
        }
    }

    /// A signed-in user's program (Notepad), running until dropped. Wine ends its services
    /// (and may lose what they wrote) once no user process is left, which a real Windows
    /// session never is: tests of services keep one up.
    pub fn user_session(&self) -> Proc {
        self.spawn(Path::new("notepad"), &[], &[])
    }

    /// `wine PROGRAM ARGS…` in the background; killed on drop.
    pub fn spawn(&self, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let child = self
            .command("wine")
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn wine");
        Proc { child }
    }

    /// `wine PROGRAM ARGS…` in the background with its standard error read line by line: each
    /// line is echoed to the test's output (prefixed with `label`) and sent to the receiver.
    /// Killed on drop.
    pub fn spawn_logged(
        &self,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        label: &str,
    ) -> (Proc, std::sync::mpsc::Receiver<String>) {
        use std::io::BufRead;
        let mut child = self
            .command("wine")
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wine");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let label = label.to_string();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("{label}: {line}");
                let _ = tx.send(line);
            }
        });
        (Proc { child }, rx)
    }

    /// The Windows path (`Z:\…`) of a Linux path.
    pub fn path(&self, p: &Path) -> String {
        format!("Z:{}", p.display()).replace('/', "\\")
    }

    /// `C:\` of this prefix, as a Linux path.
    pub fn drive_c(&self) -> PathBuf {
        self.prefix.path().join("drive_c")
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        let _ = self.command("wineserver").arg("-k").status();
    }
}

/// The Windows agent enrolled into a prefix, and (once started) running there.
pub struct WineAgent {
    pub id: String,
    pub state: String,
    pub proc: Option<Proc>,
}

impl WineAgent {
    /// `tether-agent.exe enroll --token TOKEN --state C:\ProgramData\Tether`.
    pub fn enroll(wine: &Wine, token: &str) -> Self {
        let state = r"C:\ProgramData\Tether".to_string();
        let out = ok(wine.agent(&["enroll", "--token", token, "--state", &state]));
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("enrolled as device "))
            .and_then(|l| l.split_whitespace().next())
            .expect("device id in enroll output")
            .to_string();
        WineAgent {
            id,
            state,
            proc: None,
        }
    }

    /// `tether-agent.exe run --state … EXTRA…` in the background.
    pub fn start(&mut self, wine: &Wine, extra: &[&str]) {
        self.start_with_env(wine, extra, &[]);
    }

    /// As [`WineAgent::start`], with more environment variables.
    pub fn start_with_env(&mut self, wine: &Wine, extra: &[&str], env: &[(&str, &str)]) {
        let mut args = vec!["run", "--state", &self.state];
        args.extend_from_slice(extra);
        let log = crate::log_filter();
        let mut vars = vec![("RUST_LOG", log.as_str())];
        vars.extend_from_slice(env);
        self.proc = Some(wine.spawn(&dist().join("tether-agent.exe"), &args, &vars));
    }
}

/// How many `tether-agent.exe desktop-helper` processes run (under any Wine prefix).
pub fn desktop_helpers() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("tether-agent.exe") && c.contains("desktop-helper"))
        .count()
}

/// Waits (generously: Wine starts slowly on a busy machine) until `cond` holds.
pub fn wait_wine(what: &str, cond: impl FnMut() -> bool) {
    wait_until(Duration::from_secs(120), cond)
        .unwrap_or_else(|| panic!("{what}: not within 120 s"));
}
