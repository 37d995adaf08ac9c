//! Who a session acts as on the device. The agent runs as root (as these tests do), but a
//! session's shells, commands and files run as the desktop user; root is a permission of its
//! own that the technician asks for (`--as-root`), the relay grants only where the device
//! group's policy allows it, the user sees in the prompt, and the audit record keeps. Real
//! relay, agent and technician on 127.0.0.1; the desktop user is `nobody`.

use std::process::{Command, Stdio};
use std::time::Duration;
use tether_protocol::session::{Permissions, ToAgent, ToViewer};
use tether_tests::{
    Agent, Relay, SESSION_UID, Tech, give_to_session_user, ok, open_duplex, run, stderr, stdout,
    wait_until,
};

/// An agent whose desktop belongs to `nobody` (no --session-user: the desktop user is the
/// default).
fn agent_for_nobody(relay: &Relay, extra: &[&str]) -> Agent {
    let mut agent = Agent::enroll(&relay.agent_token());
    let mut args = vec!["--desktop-user", "nobody"];
    args.extend_from_slice(extra);
    agent.start_with(&args);
    agent
}

/// Reproduces finding 9: every session ran as uid 0 — `exec id -u` answered 0, a files-only
/// session pulled /etc/shadow, pushed files belonged to root, and `ShellOpen { user: "root" }`
/// gave anyone with the shell permission a root shell. Now all of it is the desktop user's.
#[test]
fn sessions_run_as_the_desktop_user_by_default() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let agent = agent_for_nobody(&relay, &[]);
    ana.wait_online(&agent.id);
    let _user = agent.auto_approve();

    let out = ana.tether(&["exec", &agent.id, "--", "id", "-u"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{SESSION_UID}\n"));
    let out = ok(ana.tether(&["exec", &agent.id, "--", "sh", "-c", "echo $HOME:$USER"]));
    assert_eq!(out, "/nonexistent:nobody\n");

    // A files-only session reads only what the user may read.
    let work = tempfile::tempdir().unwrap();
    let out = ana.tether(&[
        "pull",
        &agent.id,
        "/etc/shadow",
        work.path().join("shadow").to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "/etc/shadow was pulled");
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(!work.path().join("shadow").exists());

    // A pushed file belongs to the user; a root-only directory stays closed to them.
    let src = work.path().join("note.txt");
    std::fs::write(&src, b"hello").unwrap();
    let dest = tempfile::tempdir().unwrap();
    give_to_session_user(dest.path());
    ok(ana.tether(&[
        "push",
        &agent.id,
        src.to_str().unwrap(),
        &format!("{}/", dest.path().display()),
    ]));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dest.path().join("note.txt")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (SESSION_UID, SESSION_UID));
    let root_only = tempfile::tempdir().unwrap();
    let out = ana.tether(&[
        "push",
        &agent.id,
        src.to_str().unwrap(),
        &format!("{}/", root_only.path().display()),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_dir(root_only.path()).unwrap().count(), 0);

    // No picking another account for a shell: the old `--user root` opened a root shell.
    let mut s = open_duplex(&ana, &agent.id, Permissions::SHELL, "");
    s.tx.send(ToAgent::ShellOpen {
        cols: 80,
        rows: 24,
        user: Some("root".into()),
    })
    .unwrap();
    let reply = s.rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(20), s.rx.recv()).await {
                Ok(Some(ToViewer::KeepAlive)) => continue,
                Ok(Some(m)) => break m,
                other => panic!("no reply: {other:?}"),
            }
        }
    });
    assert!(
        matches!(&reply, ToViewer::Error { message } if message.contains("cannot be opened as root")),
        "{reply:?}"
    );
    s.close();

    // And the interactive shell is the user's too.
    let mut shell = Command::new(tether_tests::bin("tether"))
        .arg("--config")
        .arg(ana.config())
        .args(["shell", &agent.id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut shell.stdin.take().unwrap(),
        b"echo uid-$(id -u)-end\nexit\n",
    )
    .unwrap();
    let out = shell.wait_with_output().unwrap();
    assert!(
        stdout(&out).contains(&format!("uid-{SESSION_UID}-end")),
        "{}",
        stdout(&out)
    );
}

/// Waits for the agent to list a waiting request and returns it (JSON) and the text listing.
fn waiting_request(agent: &Agent) -> (serde_json::Value, String) {
    let mut req = serde_json::Value::Null;
    wait_until(Duration::from_secs(20), || {
        let out = agent.local(&["sessions", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        req = v["requests"][0].clone();
        req.is_object()
    });
    assert!(req.is_object(), "the request never reached the agent");
    (req, stdout(&agent.local(&["sessions"])))
}

/// Root only where the group allows it (set on the relay or remotely by an admin), shown to the
/// user as root, enforced by the relay before anyone is asked, and kept on the audit record.
#[test]
fn root_is_a_permission_the_group_allows_and_the_user_sees() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let agent = agent_for_nobody(&relay, &["--terminal-approval"]);
    ana.wait_online(&agent.id);

    // Not allowed: refused by the relay at once, nobody is asked.
    let out = ana.tether(&["exec", &agent.id, "--as-root", "--", "id", "-u"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("running as root is not allowed")
            && stderr(&out).contains("--allow-root on"),
        "{}",
        stderr(&out)
    );
    let listed = agent.local(&["sessions", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(v["requests"].as_array().map(Vec::len), Some(0));

    ok(run(relay
        .cli()
        .args(["policy", "--data"])
        .arg(relay.data())
        .args(["--group", "default", "--allow-root", "on"])));
    let policies = ok(run(relay
        .cli()
        .args(["policy", "--json", "--data"])
        .arg(relay.data())));
    assert!(policies.contains("\"allow_root\": true"), "{policies}");

    // Allowed: the user is asked, and told it is root.
    let pending = ana.spawn(&[
        "exec",
        &agent.id,
        "--as-root",
        "--ticket",
        "HD-77",
        "--",
        "id",
        "-u",
    ]);
    let (req, listed) = waiting_request(&agent);
    assert_eq!(req["permissions"]["root"], true, "{req}");
    assert!(
        listed.contains("asks shell + root") && listed.contains("as ROOT (administrator)"),
        "{listed}"
    );
    ok(agent.local(&["approve", req["id"].as_str().unwrap()]));
    let out = pending.output();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "0\n");

    // The same command without --as-root is still the desktop user's.
    let pending = ana.spawn(&["exec", &agent.id, "--", "id", "-u"]);
    let (req, listed) = waiting_request(&agent);
    assert_eq!(req["permissions"]["root"], false);
    // (HD-77's engagement, listed below the request, still says root: it was approved.)
    let request_line = listed.lines().find(|l| l.starts_with("request ")).unwrap();
    assert!(!request_line.contains("root"), "{listed}");
    ok(agent.local(&["approve", req["id"].as_str().unwrap()]));
    let out = pending.output();
    assert_eq!(stdout(&out), format!("{SESSION_UID}\n"));

    // The audit record says root, asked and granted.
    let rows = ana.json(&["sessions"]);
    let root_row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ticket"] == "HD-77")
        .unwrap_or_else(|| panic!("{rows:#}"));
    assert_eq!(root_row["permissions_asked"], "shell + root");
    assert_eq!(root_row["permissions_granted"], "shell + root");
    let refused = &rows[0];
    assert_eq!(refused["permissions_asked"], "shell + root");
    assert_eq!(refused["decision"], "denied");

    // An admin turns it off remotely; a support technician may not.
    let out = ana.tether(&["policy", "--group", "default", "--allow-root", "on"]);
    assert!(!out.status.success());
    ok(boss.tether(&["policy", "--group", "default", "--allow-root", "off"]));
    let out = ana.tether(&["exec", &agent.id, "--as-root", "--", "id", "-u"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("running as root is not allowed"),
        "{}",
        stderr(&out)
    );
}

/// Pids of running processes whose command line is exactly `argv`.
fn pids_of(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// Reproduces the lower finding: `exec -- sh -c 'sleep 902 &'` left `sleep 902` running after
/// the command and the session ended. Now the command's whole process group goes when the
/// command ends, and a shell's background jobs go when the shell does.
#[test]
fn background_children_do_not_outlive_the_command() {
    let relay = Relay::start();
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let agent = agent_for_nobody(&relay, &[]);
    ana.wait_online(&agent.id);
    let _user = agent.auto_approve();

    ok(ana.tether(&["exec", &agent.id, "--", "sh", "-c", "sleep 902 &"]));
    let gone = wait_until(Duration::from_secs(20), || {
        pids_of(&["sleep", "902"]).is_empty()
    });
    let left = pids_of(&["sleep", "902"]);
    for pid in &left {
        let _ = run(Command::new("kill").args(["-9", &pid.to_string()]));
    }
    assert!(gone.is_some(), "sleep 902 outlived its command: {left:?}");

    let mut shell = Command::new(tether_tests::bin("tether"))
        .arg("--config")
        .arg(ana.config())
        .args(["shell", &agent.id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut shell.stdin.take().unwrap(),
        b"nohup sleep 903 >/dev/null 2>&1 &\nexit\n",
    )
    .unwrap();
    let out = shell.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let gone = wait_until(Duration::from_secs(20), || {
        pids_of(&["sleep", "903"]).is_empty()
    });
    let left = pids_of(&["sleep", "903"]);
    for pid in &left {
        let _ = run(Command::new("kill").args(["-9", &pid.to_string()]));
    }
    assert!(gone.is_some(), "sleep 903 outlived its shell: {left:?}");
}
