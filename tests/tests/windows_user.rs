//! The Windows agent runs sessions without root as the user signed in at the console (least
//! privilege) instead of refusing them: commands through `tether-agent run-as-user` with that
//! user's token, files through a thread impersonating them. Run under Wine against a Linux relay,
//! with a technician who has no root.
//!
//! Under Wine every process has the same identity (`WTSQueryUserToken` returns a copy of the
//! caller's own token), so these tests show that the path works end to end and that the
//! program gets the user's profile and environment; that it really runs with the user's rights
//! and not SYSTEM's only Windows can show (see the README's Windows section).

use std::time::Duration;
use tether_tests::wine::{self, Wine, WineAgent, wait_wine};
use tether_tests::{Relay, Tech, ok, stderr, stdout};

struct Desk {
    _relay: Relay,
    tech: Tech,
    agent: WineAgent,
    wine: Wine,
}

/// A relay, a technician without root ("support"), and the Windows agent enrolled and online,
/// asking the user through `tether-agent approve` (its terminal approval, over the named pipe).
fn desk() -> Desk {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("bob", "support"));
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

/// Stops [`approve_all`] however the scope ends (a failed assertion included).
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `%NAME%` as a program of the signed-in user sees it in this prefix.
fn user_var(wine: &Wine, name: &str) -> String {
    stdout(&wine.run("cmd", &["/c", &format!("echo %{name}%")]))
        .trim()
        .to_string()
}

#[test]
fn windows_sessions_without_root_run_as_the_signed_in_user() {
    if !wine::enabled() {
        return;
    }
    let d = desk();
    let user = user_var(&d.wine, "USERNAME");
    let profile = user_var(&d.wine, "USERPROFILE");
    assert!(!user.is_empty() && !user.contains('%'), "{user:?}");
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| approve_all(&d.wine, &done));
        let _stop = StopOnDrop(&done);
        let id = d.agent.id.as_str();

        // Refused before (no root): now the exit code comes back.
        let out = d.tech.tether(&["exec", id, "--", "cmd", "/c", "exit 7"]);
        assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));

        // The user's name and profile (their environment, from their token).
        let out = d.tech.tether(&[
            "exec",
            id,
            "--",
            "cmd",
            "/c",
            "echo %USERNAME%&echo %USERPROFILE%&cd",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let lines: Vec<String> = stdout(&out).lines().map(|l| l.trim().to_string()).collect();
        assert_eq!(lines.first(), Some(&user), "{lines:?}");
        assert_eq!(lines.get(1), Some(&profile), "{lines:?}");
        // Commands start in the user's profile directory.
        assert_eq!(
            lines.get(2).map(|l| l.to_ascii_lowercase()),
            Some(profile.to_ascii_lowercase()),
            "{lines:?}"
        );

        // Arguments reach the program as they were given (Windows command-line quoting):
        // reg.exe splits its command line by the C runtime's rules.
        let key = r"HKCU\Software\TetherWindowsUser";
        let value = r#"a "quoted" one\"#;
        let out = d.tech.tether(&[
            "exec",
            id,
            "--",
            "reg",
            "add",
            key,
            "/v",
            "two words",
            "/d",
            value,
            "/f",
        ]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let query = ok(d.wine.run("reg", &["query", key, "/v", "two words"]));
        assert!(query.contains(value), "{query}");

        // Files: pushed as the user (a thread impersonating them), and pulled back.
        let work = tempfile::tempdir().unwrap();
        let local = work.path().join("note.txt");
        std::fs::write(&local, b"as the signed-in user\r\n").unwrap();
        let remote_dir = tempfile::tempdir().unwrap();
        let remote = format!("{}\\note.txt", d.wine.path(remote_dir.path()));
        ok(d.tech
            .tether(&["push", id, local.to_str().unwrap(), &remote]));
        assert_eq!(
            std::fs::read(remote_dir.path().join("note.txt")).unwrap(),
            b"as the signed-in user\r\n"
        );
        let back = work.path().join("back.txt");
        ok(d.tech
            .tether(&["pull", id, &remote, back.to_str().unwrap()]));
        assert_eq!(std::fs::read(&back).unwrap(), b"as the signed-in user\r\n");
    });

    // On the record: what ran, and that none of it was root.
    let rows = d.tech.json(&["sessions"]);
    let rows = rows.as_array().unwrap();
    assert!(rows.len() >= 4, "{rows:#?}");
    for r in rows {
        assert!(
            !r["permissions_granted"]
                .as_str()
                .unwrap_or_default()
                .contains("root"),
            "{r:#}"
        );
    }
    let actions: Vec<String> = rows
        .iter()
        .flat_map(|r| r["actions"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    assert!(
        actions
            .iter()
            .any(|a| a.starts_with("exec cmd /c") && a.ends_with("→ exit 7")),
        "{actions:#?}"
    );
}
