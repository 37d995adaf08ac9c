//! The Windows agent (`tether-agent.exe`, cross-built), run under Wine against a Linux relay on
//! 127.0.0.1: enrolment, presence, inventory, commands, files and consent over its named pipe.
//! What Wine cannot show (session-0 isolation, DXGI, UAC) is listed in the README.

use std::process::Command;
use std::time::Duration;
use tether_tests::wine::{self, Wine, WineAgent, wait_wine};
use tether_tests::{Relay, Tech, ok, run, stderr, stdout};

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
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", "admin"));
    let wine = Wine::start();
    let mut agent = WineAgent::enroll(&wine, &relay.agent_token());
    agent.start(&wine, &["--terminal-approval"]);
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

    let done = std::sync::atomic::AtomicBool::new(false);
    // Sessions on Windows run as the service's account, which is root's place: the group must
    // allow it, and the technician asks for it.
    ok(d.tech.tether(&["policy", "--group", "default", "--allow-root", "on"]));
    std::thread::scope(|s| {
        s.spawn(|| approve_all(&d.wine, &done));
        // Stops the approver however this ends (a failed assertion included).
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _stop = Stop(&done);

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
