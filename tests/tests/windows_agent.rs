//! The Windows agent (`tether-agent.exe`, cross-built), run under Wine against a Linux relay on
//! 127.0.0.1: enrolment, presence, inventory, commands, files and consent over its named pipe.
//! What Wine cannot show (session-0 isolation, DXGI, UAC) is listed in the README.

use std::process::Command;
use std::time::Duration;
use tether_tests::wine::{self, Wine, WineAgent, wait_wine};
use tether_tests::{Relay, Tech, ok, run, stderr, stdout, wait_until};

fn sha256sum(path: &std::path::Path) -> String {
    let out = ok(run(Command::new("sha256sum").arg(path)));
    out.split_whitespace().next().unwrap().to_string()
}

struct Desk {
    _relay: Relay,
    tech: Tech,
    agent: WineAgent,
    wine: Wine,
}

/// A relay, a technician, and the Windows agent enrolled and online. The agent asks the user
/// through `tether-agent approve` (its terminal approval, over the named pipe).
fn desk() -> Desk {
    desk_with_env(&[])
}

/// As [`desk`], the agent started with more environment variables.
fn desk_with_env(env: &[(&str, &str)]) -> Desk {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "admin"));
    let wine = Wine::start();
    // An installed program, as an installer registers it (the 64-bit Uninstall key).
    let key = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\TetherTestApp";
    for (name, value) in [
        ("DisplayName", "Tether Test App"),
        ("DisplayVersion", "1.2.3"),
        ("Publisher", "Tether QA"),
    ] {
        ok(wine.run("reg", &["add", key, "/v", name, "/d", value, "/f"]));
    }
    let mut agent = WineAgent::enroll(&wine, &relay.agent_token());
    agent.start_with_env(&wine, &["--terminal-approval"], env);
    wait_wine("the Windows agent online", || {
        tech.is_online(&agent.id) == Some(true)
    });
    Desk {
        _relay: relay,
        tech,
        agent,
        wine,
    }
}

/// Approves every request waiting on the Windows agent, through its named pipe, until `done`.
fn approve_all(wine: &Wine, done: &std::sync::atomic::AtomicBool) {
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        let out = wine.agent(&["sessions", "--json"]);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            for p in v["requests"].as_array().into_iter().flatten() {
                if let Some(id) = p["id"].as_str() {
                    let _ = wine.agent(&["approve", id]);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn windows_agent_under_wine_enrolls_reports_runs_commands_and_moves_files() {
    if !wine::enabled() {
        return;
    }
    let d = desk();
    let devices = d.tech.devices();
    let dev = devices
        .iter()
        .find(|x| x["id"] == d.agent.id.as_str())
        .unwrap();
    assert_eq!(dev["online"], true, "{dev:#}");

    // Inventory: Windows, from the registry.
    let mut inv = serde_json::Value::Null;
    wait_wine("the Windows agent's inventory", || {
        let out = d.tech.tether(&["inventory", &d.agent.id, "--json"]);
        inv = serde_json::from_slice(&out.stdout).unwrap_or_default();
        inv["inventory"]["host"]["os_name"].as_str().is_some()
    });
    let os = inv["inventory"]["host"]["os_name"].as_str().unwrap();
    assert!(os.contains("Windows"), "{inv:#}");
    // Software: the seeded program, and otherwise only what Wine itself registers.
    let software = inv["inventory"]["software"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = software.iter().filter_map(|p| p["name"].as_str()).collect();
    let app = software
        .iter()
        .find(|p| p["name"] == "Tether Test App")
        .unwrap_or_else(|| panic!("seeded program missing: {names:?}"));
    assert_eq!(app["version"], "1.2.3", "{app:#}");
    let wines = ok(d.wine.run(
        "reg",
        &[
            "query",
            r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
        ],
    ));
    for n in &names {
        assert!(
            *n == "Tether Test App"
                || wines.contains(n)
                || n.starts_with("KB")
                || n.contains("Wine"),
            "{n:?} is neither seeded nor Wine's own: {names:?}"
        );
    }
    // WMI-derived fields match what `wmic` says.
    let wmic = d.wine.wmic(&["cpu", "get", "name"]);
    let cpu = inv["inventory"]["hardware"]["cpu"]["model"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !cpu.is_empty() && wmic.contains(cpu.trim()),
        "cpu {cpu:?} vs wmic {wmic:?}"
    );
    let wmic = d.wine.wmic(&["computersystem", "get", "manufacturer"]);
    let vendor = inv["inventory"]["hardware"]["system"]["sys_vendor"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !vendor.is_empty() && wmic.contains(vendor.trim()),
        "vendor {vendor:?} vs wmic {wmic:?}"
    );

    // Consent over the named pipe: a denied request fails with the user's answer.
    let shot = std::env::temp_dir().join(format!("tether-denied-{}.png", d.agent.id));
    let pending = d.tech.spawn(&[
        "screenshot",
        &d.agent.id,
        "-o",
        shot.to_str().unwrap(),
        "--reason",
        "deny test",
    ]);
    let mut id = String::new();
    wait_wine("the request on the pipe", || {
        let out = d.wine.agent(&["sessions", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        id = v["requests"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        !id.is_empty()
    });
    ok(d.wine.agent(&["deny", &id]));
    let out = pending.output();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("denied by the user"),
        "{}",
        stderr(&out)
    );

    let done = std::sync::atomic::AtomicBool::new(false);
    // Sessions on Windows run as the service's account, which is root's place: the group must
    // allow it, and the technician asks for it.
    ok(d.tech
        .tether(&["policy", "--group", "default", "--allow-root", "on"]));
    std::thread::scope(|s| {
        s.spawn(|| approve_all(&d.wine, &done));
        let _stop = StopOnDrop(&done);

        // Commands: the exit code comes back, output too.
        let out = d.tech.tether(&[
            "exec",
            &d.agent.id,
            "--as-root",
            "--",
            "cmd",
            "/c",
            "echo hello-from-windows& exit 7",
        ]);
        assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("hello-from-windows"),
            "{}",
            stdout(&out)
        );

        // Files: 20 MB there and back, checksummed.
        let work = tempfile::tempdir().unwrap();
        let big = work.path().join("big.bin");
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut data = vec![0u8; 20 << 20];
        for b in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        std::fs::write(&big, &data).unwrap();
        let sum = sha256sum(&big);
        let remote_dir = tempfile::tempdir().unwrap();
        let remote = format!("{}\\big.bin", d.wine.path(remote_dir.path()));
        let out = ok(d.tech.tether(&[
            "push",
            &d.agent.id,
            "--as-root",
            big.to_str().unwrap(),
            &remote,
        ]));
        assert!(out.contains(&sum), "{out}");
        assert_eq!(sha256sum(&remote_dir.path().join("big.bin")), sum);
        let back = work.path().join("back.bin");
        ok(d.tech.tether(&[
            "pull",
            &d.agent.id,
            "--as-root",
            &remote,
            back.to_str().unwrap(),
        ]));
        assert_eq!(sha256sum(&back), sum);
    });
}

/// Pixels that differ between two RGB images of the same size.
/// Prints a log file when dropped by a failing test.
struct ShowLogOnPanic(std::path::PathBuf);

impl Drop for ShowLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.0).unwrap_or_else(|e| format!("({e})"));
            eprintln!("--- {} ---\n{text}", self.0.display());
        }
    }
}

/// Stops [`approve_all`] however the scope ends (a failed assertion included).
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Takes screenshots through the relay until one equals the X server's own picture of the
/// Wine desktop (within 40 pixels: the blinking caret); returns how many pixels differed.
fn screenshot_vs_root(tech: &Tech, wine: &Wine, id: &str, work: &std::path::Path) -> usize {
    let shot = work.join("shot.png");
    let root = work.join("root.png");
    let mut diff = usize::MAX;
    wait_wine("a screenshot equal to the Wine desktop", || {
        let out = tech.tether(&[
            "screenshot",
            id,
            "-o",
            shot.to_str().unwrap(),
            "--reason",
            "windows test",
        ]);
        if !out.status.success() {
            eprintln!("screenshot: {}", stderr(&out));
            return false;
        }
        let imp = wine
            .x
            .run("import", &["-window", "root", root.to_str().unwrap()]);
        assert!(imp.status.success(), "import: {imp:?}");
        let (w, h, a) = tether_tests::read_png_rgb(&shot);
        let (rw, rh, b) = tether_tests::read_png_rgb(&root);
        assert_eq!((w, h), (rw, rh), "screenshot size");
        diff = differing(&a, &b);
        diff <= 40
    });
    diff
}

fn differing(a: &[u8], b: &[u8]) -> usize {
    a.chunks(3).zip(b.chunks(3)).filter(|(x, y)| x != y).count()
}

/// The screen and the keyboard through the relay: a screenshot equals what the Wine desktop
/// shows (GDI capture), and keys typed into the real viewer window reach notepad exactly
/// (capitals and symbols, then Ctrl+A / Ctrl+C, read back from Wine's clipboard).
///
/// Both go through the desktop helper, as from a service in session 0 on Windows (forced
/// here: Wine has no session 0): `tether-agent.exe desktop-helper` started with the signed-in
/// user's token, serving over pipes, ending with the session.
#[test]
fn windows_agent_under_wine_shows_the_screen_and_takes_keys_from_the_viewer() {
    if !wine::enabled() {
        return;
    }
    let d = desk_with_env(&[("TETHER_DESKTOP_HELPER", "always")]);
    let _notepad = d.wine.spawn(std::path::Path::new("notepad"), &[], &[]);
    wait_wine("notepad's window", || {
        let out = d
            .wine
            .x
            .run("xdotool", &["search", "--onlyvisible", "--name", "Notepad"]);
        !stdout(&out).trim().is_empty()
    });
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| approve_all(&d.wine, &done));
        let _stop = StopOnDrop(&done);
        let work = tempfile::tempdir().unwrap();

        // A screenshot equals the X server's own picture of the Wine desktop, but for the
        // blinking caret (one thin column).
        let diff = screenshot_vs_root(&d.tech, &d.wine, &d.agent.id, work.path());
        eprintln!("screenshot vs X root: {diff} pixels differ (the caret)");
        // The helper served it, and ended with the screenshot's session.
        wait_wine("the desktop helper to end with its session", || {
            wine::desktop_helpers() == 0
        });

        // Typing through the real viewer window.
        let local = tether_tests::Xvfb::start(1300, 900);
        let _viewer = d
            .tech
            .viewer(&local, &d.agent.id, &["--reason", "windows keyboard"], &[]);
        let win = tether_tests::viewer_window(&local);
        let xdotool = |args: &[&str]| {
            let out = local.run("xdotool", args);
            assert!(out.status.success(), "xdotool {args:?}: {out:?}");
        };
        xdotool(&["mousemove", "0", "0"]);
        xdotool(&["windowfocus", "--sync", &win]);
        let text = "Hello, World! ABC";
        xdotool(&["type", "--delay", "60", text]);
        // Select all and copy in notepad, then read Wine's clipboard (the X selection).
        let mut seen = String::new();
        wait_wine("the typed text in notepad", || {
            xdotool(&["key", "--delay", "80", "ctrl+a", "ctrl+c"]);
            let out = d.wine.x.run("xclip", &["-o", "-selection", "clipboard"]);
            seen = stdout(&out);
            seen == text
        });
        assert_eq!(seen, text);
        assert_eq!(
            wine::desktop_helpers(),
            1,
            "one desktop helper for the session"
        );
    });
}

/// The README's Windows steps as an admin runs them: enroll, install the service, start it
/// (the agent comes online under the service manager and serves its pipe), stop it (offline),
/// remove it.
#[test]
fn windows_agent_under_wine_runs_as_a_service() {
    if !wine::enabled() {
        return;
    }
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "admin"));
    let wine = Wine::start();
    let agent = WineAgent::enroll(&wine, &relay.agent_token());
    // Wine's service manager gives a service 10 s to reach its dispatcher (Windows 30 s); a
    // debug build on a loaded machine may need longer. Read when the manager starts, so the
    // Wine session restarts after it is set.
    ok(wine.run(
        "reg",
        &[
            "add",
            r"HKLM\System\CurrentControlSet\Control",
            "/v",
            "ServicesPipeTimeout",
            "/t",
            "REG_DWORD",
            "/d",
            "120000",
            "/f",
        ],
    ));
    wine.restart();
    // The signed-in user's session: a program of theirs keeps Wine's session up (Wine ends
    // its services when the last user process exits), and shows on the screen.
    let _notepad = wine.user_session();
    // The service logs into its state directory; shown if the test fails.
    let _log = ShowLogOnPanic(wine.drive_c().join("ProgramData/Tether/agent.log"));
    let out = ok(wine.agent(&[
        "install-service",
        "--state",
        &agent.state,
        "--",
        "--terminal-approval",
    ]));
    assert!(out.contains("service TetherAgent installed"), "{out}");
    // Wine's `sc` may exit 1 while the start is still pending: what counts is the agent
    // coming online (its output is shown if it never does).
    let started = wine.run("sc", &["start", "TetherAgent"]);
    wait_until(Duration::from_secs(120), || {
        tech.is_online(&agent.id) == Some(true)
    })
    .unwrap_or_else(|| panic!("the service never came online; sc start: {started:?}"));
    let listed = ok(wine.agent(&["sessions"]));
    assert!(listed.contains("no session requests"), "{listed}");
    // The service shows the user's desktop, not its own (session 0 on Windows).
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| approve_all(&wine, &done));
        let _stop = StopOnDrop(&done);
        let work = tempfile::tempdir().unwrap();
        let diff = screenshot_vs_root(&tech, &wine, &agent.id, work.path());
        eprintln!("service screenshot vs X root: {diff} pixels differ");
    });
    // Served by the desktop helper in the user's session: the service's own window station
    // is not interactive (capturing from it fails with "Invalid window handle").
    let log = std::fs::read_to_string(&_log.0).unwrap_or_default();
    assert!(log.contains("desktop helper started"), "{log}");
    let _ = wine.run("sc", &["stop", "TetherAgent"]);
    wait_wine("the service's agent offline", || {
        tech.is_online(&agent.id) == Some(false)
    });
    ok(wine.agent(&["uninstall-service"]));
    let q = wine.run("sc", &["query", "TetherAgent"]);
    assert!(!stdout(&q).contains("RUNNING"), "{}", stdout(&q));
}
