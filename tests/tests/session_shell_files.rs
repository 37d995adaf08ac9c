//! Diagnose and fix over the session channel: commands, an interactive shell on a real PTY,
//! and file transfer (checksummed, resumable, no path escapes), all audited. Real relay, agent
//! and technician on 127.0.0.1.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tether_protocol::session::{Permissions, PutStart, ToAgent, ToViewer};
use tether_tests::{
    Agent, Approver, Duplex, Relay, Tech, give_to_session_user, ok, open_duplex, run, stderr,
    stdout, wait_until,
};

/// A directory on the device the session's user (not root) may write to.
fn user_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    give_to_session_user(d.path());
    d
}

struct Desk {
    relay: Relay,
    tech: Tech,
    agent: Agent,
    _user: Approver,
}

fn desk(role: &str) -> Desk {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("ana", role));
    let mut agent = Agent::enroll(&relay.agent_token());
    agent.start();
    tech.wait_online(&agent.id);
    let _user = agent.auto_approve();
    Desk {
        relay,
        tech,
        agent,
        _user,
    }
}

/// `tether sessions --json` once `sessions` sessions exist and each has at least `actions`
/// audit entries (the agent reports them as things end).
fn audited(tech: &Tech, sessions: usize, actions: usize) -> serde_json::Value {
    let mut rows = serde_json::Value::Null;
    let complete = wait_until(Duration::from_secs(20), || {
        rows = tech.json(&["sessions"]);
        rows.as_array().is_some_and(|r| {
            r.len() >= sessions
                && r.iter()
                    .all(|s| s["actions"].as_array().is_some_and(|a| a.len() >= actions))
        })
    });
    assert!(complete.is_some(), "audit incomplete: {rows:#}");
    rows
}

fn sha256sum(path: &std::path::Path) -> String {
    let out = ok(run(Command::new("sha256sum").arg(path)));
    out.split_whitespace().next().unwrap().to_string()
}

/// A file of `mb` MiB of varied bytes (not all zeros, so nothing compresses it away).
fn big_file(path: &std::path::Path, mb: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mb {
        for b in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

#[test]
fn exec_streams_output_and_exits_with_the_remote_code() {
    let d = desk("support");
    let out = d.tech.tether(&[
        "exec",
        &d.agent.id,
        "--ticket",
        "HD-20",
        "--",
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "to-stdout\n");
    assert!(stderr(&out).contains("to-stderr"), "{}", stderr(&out));

    let json: serde_json::Value = serde_json::from_str(&ok(d.tech.tether(&[
        "exec",
        &d.agent.id,
        "--json",
        "--",
        "printf",
        "%s",
        "a b",
    ])))
    .unwrap();
    assert_eq!(json["exit_code"], 0);
    assert_eq!(json["stdout"], "a b");

    // A command that runs too long is killed with its children.
    let started = Instant::now();
    let out = d.tech.tether(&[
        "exec",
        &d.agent.id,
        "--timeout",
        "1s",
        "--",
        "sh",
        "-c",
        "sleep 60 & sleep 60",
    ]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(stderr(&out).contains("timed out"));

    // A command that does not exist is a clear error.
    let out = d.tech.tether(&["exec", &d.agent.id, "--", "/no/such/tool"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot run /no/such/tool"),
        "{}",
        stderr(&out)
    );

    // A flood of output arrives whole: flow control, not loss.
    let out = d
        .tech
        .tether(&["exec", &d.agent.id, "--", "seq", "1", "300000"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 300_000);
    assert_eq!(text.lines().last(), Some("300000"));

    // Every command is on the session's audit record with its exit (reported by the agent
    // as the command ends).
    let rows = audited(&d.tech, 5, 1);
    let actions: Vec<String> = rows[0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        vec!["exec sh -c 'echo to-stdout; echo to-stderr >&2; exit 7' → exit 7".to_string()]
    );
    assert_eq!(rows[0]["permissions_granted"], "shell");
    assert_eq!(rows[0]["ticket"], "HD-20");
    assert_eq!(
        rows[2]["actions"][0],
        "exec sh -c 'sleep 60 & sleep 60' → timed out, killed"
    );
}

#[test]
fn group_runs_only_where_unattended_and_for_admins() {
    let relay = Relay::start();
    let boss = Tech::enroll(&relay.tech_token("boss", "admin"));
    let ana = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agents: Vec<Agent> = (0..3)
        .map(|_| Agent::enroll(&relay.agent_token_with(&["--group", "servers"])))
        .collect();
    for a in &mut agents {
        a.start();
        boss.wait_online(&a.id);
    }
    let policy = |on: &str| {
        ok(run(relay
            .cli()
            .args(["policy", "--data"])
            .arg(relay.data())
            .args(["--group", "servers", "--unattended", on])))
    };
    // Off: nobody is prompted, every device refuses.
    let out = boss.tether(&["exec", "--group", "servers", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("group runs need unattended access"),
        "{}",
        stdout(&out)
    );

    policy("on");
    let rows = boss.json(&[
        "exec", "--group", "servers", "--json", "--", "sh", "-c", "echo ok",
    ]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert_eq!(r["exit_code"], 0, "{r}");
        assert_eq!(r["stdout"], "ok\n");
    }
    let out = boss.tether(&["exec", "--group", "servers", "--", "true"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("3 devices, 3 ok, 0 failed"),
        "{}",
        stdout(&out)
    );
    // Support technicians do not get unattended access, so no group runs.
    let out = ana.tether(&["exec", "--group", "servers", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("0 ok, 3 failed"), "{}", stdout(&out));
}

#[test]
fn shell_runs_commands_and_reports_the_exit_code() {
    let d = desk("support");
    let mut child = Command::new(tether_tests::bin("tether"))
        .arg("--config")
        .arg(d.tech.config())
        .args(["shell", &d.agent.id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo hello-$((6*7))\nexit 3\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).contains("hello-42"), "{}", stdout(&out));
    let actions = &audited(&d.tech, 1, 2)[0]["actions"];
    assert_eq!(actions[0], "shell opened as nobody (uid 65534)");
    assert_eq!(actions[1], "shell → exit 3");
}

/// Reads terminal output until `want` appears in it.
/// The next message of the session that is not a keep-alive (within 20 s).
fn next_reply(s: &mut Duplex) -> ToViewer {
    s.rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(20), s.rx.recv()).await {
                Ok(Some(ToViewer::KeepAlive)) => continue,
                Ok(Some(m)) => break m,
                other => panic!("no reply: {other:?}"),
            }
        }
    })
}

async fn read_until(rx: &mut tokio::sync::mpsc::Receiver<ToViewer>, seen: &mut String, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains(want) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ToViewer::Output { data, .. })) => {
                seen.push_str(&String::from_utf8_lossy(&data))
            }
            Ok(Some(_)) => {}
            _ => panic!("never saw {want:?} in {seen:?}"),
        }
    }
}

#[test]
fn shell_resizes_and_ctrl_c_interrupts() {
    let d = desk("support");
    let s = open_duplex(&d.tech, &d.agent.id, Permissions::SHELL, "");
    let (tx, mut rx) = (s.tx.clone(), s.rx);
    tx.send(ToAgent::ShellOpen {
        cols: 100,
        rows: 30,
        user: None,
    })
    .unwrap();
    s.rt.block_on(async {
        let mut seen = String::new();
        let send = |s: &str| tx.send(ToAgent::ShellInput(s.as_bytes().to_vec())).unwrap();
        send("stty size; echo size-done\n");
        read_until(&mut rx, &mut seen, "30 100").await;
        tx.send(ToAgent::ShellResize {
            cols: 120,
            rows: 40,
        })
        .unwrap();
        seen.clear();
        send("stty size\n");
        read_until(&mut rx, &mut seen, "40 120").await;

        // Ctrl-C stops a running sleep (found by its unique argument).
        send("sleep 4321; echo not-$((1+1))-interrupted\n");
        let running = wait_until(Duration::from_secs(20), || {
            run(Command::new("pgrep").args(["-f", "^sleep 4321$"]))
                .status
                .success()
        });
        assert!(running.is_some(), "sleep never started");
        send("\x03");
        seen.clear();
        send("echo rc=$?\n");
        read_until(&mut rx, &mut seen, "rc=130").await;
        assert!(!seen.contains("not-2-interrupted"), "{seen}");
        assert!(
            !run(Command::new("pgrep").args(["-f", "^sleep 4321$"]))
                .status
                .success()
        );
        send("exit 5\n");
        let exited = loop {
            match rx.recv().await {
                Some(ToViewer::Exited { code, .. }) => break code,
                Some(_) => continue,
                None => panic!("session ended without an exit"),
            }
        };
        assert_eq!(exited, Some(5));
    });
    let _ = tx.send(ToAgent::Bye);
    s.rt.block_on(s.session.close());
}

#[test]
fn a_session_without_the_permission_is_refused() {
    let d = desk("support");
    let mut s = open_duplex(&d.tech, &d.agent.id, Permissions::VIEW, "");
    s.tx.send(ToAgent::Exec {
        argv: vec!["id".into()],
        timeout_ms: None,
    })
    .unwrap();
    assert!(matches!(
        next_reply(&mut s),
        ToViewer::Error { message } if message.contains("may not run commands")
    ));
    s.tx.send(ToAgent::Stat {
        path: "/etc".into(),
    })
    .unwrap();
    assert!(matches!(
        next_reply(&mut s),
        ToViewer::Error { message } if message.contains("may not transfer files")
    ));
    s.close();
    // And a viewer gets no session at all.
    let val = Tech::enroll(&d.relay.tech_token("val", "viewer"));
    let out = val.tether(&["exec", &d.agent.id, "--", "id"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("may not start sessions"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn paths_cannot_escape_the_destination() {
    let d = desk("support");
    let dest = user_dir();
    let outside = user_dir();
    // Someone on the device planted `logs` as a symlink where a directory will be pushed.
    std::os::unix::fs::symlink(outside.path(), dest.path().join("logs")).unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("logs")).unwrap();
    std::fs::write(src.path().join("logs/x.txt"), b"x").unwrap();
    let out = d.tech.tether(&[
        "push",
        &d.agent.id,
        src.path().join("logs").to_str().unwrap(),
        &format!("{}/", dest.path().display()),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is a symlink; not writing through it"),
        "{}",
        stderr(&out)
    );
    // A hostile client naming `..` directly: refused by the agent.
    let mut s = open_duplex(&d.tech, &d.agent.id, Permissions::FILES, "");
    for rel in ["../escape.txt", "a/../../escape.txt", "/etc/escape.txt"] {
        s.tx.send(ToAgent::PutStart(PutStart {
            root: dest.path().display().to_string(),
            rel: rel.into(),
            size: 1,
            sha256: "0".repeat(64),
            mode: 0o644,
        }))
        .unwrap();
        assert!(
            matches!(next_reply(&mut s), ToViewer::Error { .. }),
            "{rel} accepted"
        );
    }
    // …and a root that climbs out of the destination it names.
    s.tx.send(ToAgent::PutStart(PutStart {
        root: format!("{}/inner/..", dest.path().display()),
        rel: "climbed.txt".into(),
        size: 1,
        sha256: "0".repeat(64),
        mode: 0o644,
    }))
    .unwrap();
    assert!(matches!(next_reply(&mut s), ToViewer::Error { .. }));
    s.close();
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(!dest.path().parent().unwrap().join("escape.txt").exists());
    // `tether push F /dir/sub/../escape.txt` wrote /dir/escape.txt; now it says why it will not.
    std::fs::create_dir(dest.path().join("sub")).unwrap();
    let f = src.path().join("logs/x.txt");
    let out = d.tech.tether(&[
        "push",
        &d.agent.id,
        f.to_str().unwrap(),
        &format!("{}/sub/../escape.txt", dest.path().display()),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("'..' is not allowed"),
        "{}",
        stderr(&out)
    );
    assert!(!dest.path().join("escape.txt").exists());
}

#[test]
fn files_push_and_pull_checksummed_with_directories() {
    let d = desk("support");
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big.bin");
    big_file(&big, 200);
    let sum = sha256sum(&big);
    let remote_dir = user_dir();
    let remote = remote_dir.path().join("big.bin");

    let started = Instant::now();
    let out = ok(d.tech.tether(&[
        "push",
        &d.agent.id,
        big.to_str().unwrap(),
        remote.to_str().unwrap(),
        "--ticket",
        "HD-30",
    ]));
    eprintln!("push 200 MiB: {:?}", started.elapsed());
    assert!(out.contains(&sum), "{out}");
    assert_eq!(sha256sum(&remote), sum);
    // No part file left beside it.
    assert_eq!(std::fs::read_dir(remote_dir.path()).unwrap().count(), 1);

    let back = work.path().join("back.bin");
    let started = Instant::now();
    ok(d.tech.tether(&[
        "pull",
        &d.agent.id,
        remote.to_str().unwrap(),
        back.to_str().unwrap(),
    ]));
    eprintln!("pull 200 MiB: {:?}", started.elapsed());
    assert_eq!(sha256sum(&back), sum);

    // Directories, recursively, both ways.
    let tree = work.path().join("logs");
    std::fs::create_dir_all(tree.join("app/old")).unwrap();
    std::fs::write(tree.join("syslog"), b"disk full\n").unwrap();
    std::fs::write(tree.join("app/old/app.log.1"), b"rotated\n").unwrap();
    std::fs::write(tree.join("app/empty.log"), b"").unwrap();
    ok(d.tech.tether(&[
        "push",
        &d.agent.id,
        tree.to_str().unwrap(),
        &format!("{}/", remote_dir.path().display()),
    ]));
    assert_eq!(
        std::fs::read(remote_dir.path().join("logs/app/old/app.log.1")).unwrap(),
        b"rotated\n"
    );
    assert_eq!(
        std::fs::read(remote_dir.path().join("logs/app/empty.log")).unwrap(),
        b""
    );
    let pulled = work.path().join("pulled");
    std::fs::create_dir(&pulled).unwrap();
    let out = ok(d.tech.tether(&[
        "pull",
        &d.agent.id,
        remote_dir.path().join("logs").to_str().unwrap(),
        pulled.to_str().unwrap(),
    ]));
    assert!(out.contains("pulled 3 files"), "{out}");
    assert_eq!(
        std::fs::read(pulled.join("logs/syslog")).unwrap(),
        b"disk full\n"
    );
    assert_eq!(
        std::fs::read(pulled.join("logs/app/old/app.log.1")).unwrap(),
        b"rotated\n"
    );

    // Audited with paths, sizes and checksums.
    let rows = audited(&d.tech, 4, 1);
    let first = rows[0]["actions"][0].as_str().unwrap();
    assert_eq!(
        first,
        format!("push {} (209715200 bytes, sha256 {sum})", remote.display())
    );
    assert_eq!(rows[0]["ticket"], "HD-30");
    assert_eq!(rows[0]["permissions_granted"], "files");
    let pull = rows[1]["actions"][0].as_str().unwrap();
    assert!(
        pull.starts_with(&format!("pull {} (209715200 bytes", remote.display())),
        "{pull}"
    );
}

#[test]
fn a_pull_interrupted_by_a_relay_crash_resumes() {
    let mut d = desk("support");
    // The session's user reads the file being pulled.
    let work = user_dir();
    let src = work.path().join("src.bin");
    big_file(&src, 200);
    let sum = sha256sum(&src);
    let dest = work.path().join("dest.bin");
    let part = work.path().join(".dest.bin.tether-part");
    let pull = d.tech.spawn(&[
        "pull",
        &d.agent.id,
        src.to_str().unwrap(),
        dest.to_str().unwrap(),
    ]);
    // Part of the file has arrived: crash the relay, then bring it back.
    let arrived = wait_until(Duration::from_secs(60), || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() > 20 << 20)
    });
    assert!(arrived.is_some(), "the pull never started");
    if let Some(mut p) = d.relay.proc.take() {
        p.kill();
    }
    let had = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    assert!(had < 200 << 20, "finished before the crash");
    d.relay.restart();
    let out = pull.output();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    assert!(stdout(&out).contains("bytes resumed"), "{}", stdout(&out));
    assert_eq!(sha256sum(&dest), sum);
    assert!(!part.exists());
}

#[test]
fn shells_are_recorded_where_the_group_policy_asks() {
    let d = desk("support");
    let shell = |script: &[u8]| {
        let mut child = Command::new(tether_tests::bin("tether"))
            .arg("--config")
            .arg(d.tech.config())
            .args(["shell", &d.agent.id])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(script).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    shell(b"echo unrecorded-$((1+1))\nexit\n");
    ok(run(d
        .relay
        .cli()
        .args(["policy", "--data"])
        .arg(d.relay.data())
        .args(["--group", "default", "--record-shells", "on"])));
    shell(b"echo recorded-$((6*7))\nexit\n");

    let rows = audited(&d.tech, 2, 2);
    let recorded: Vec<String> = rows[1]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mut note = None;
    wait_until(Duration::from_secs(20), || {
        let rows = d.tech.json(&["sessions"]);
        note = rows[1]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .find(|a| a.starts_with("shell transcript /"))
            .map(str::to_string);
        note.is_some()
    })
    .unwrap_or_else(|| panic!("no transcript on the record: {recorded:?}"));
    let id = rows[1]["id"].as_str().unwrap();
    let path = d.relay.data().join("transcripts").join(format!("{id}.log"));
    assert!(note.unwrap().contains(&path.display().to_string()));
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    assert!(text.contains("recorded-42"), "{text}");
    // The first shell ran before the policy: nothing kept.
    let first = rows[0]["id"].as_str().unwrap();
    assert!(
        !d.relay
            .data()
            .join("transcripts")
            .join(format!("{first}.log"))
            .exists()
    );
}
