//! Health and alerts through a real relay and agent: the reported values match the operating
//! system, a filesystem that fills past the threshold opens an alert that closes when it drains
//! (and a webhook hears both), a silent device raises the "no report" alert, and a hostile agent's
//! health is cleaned or refused without affecting anyone else.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether_net::client::{Credentials, connect_with_credentials};
use tether_net::framed::write_msg;
use tether_net::tls::TransportOptions;
use tether_protocol::health::{
    FailedUnit, FilesystemUsage, HealthReport, MemoryUsage, ProcessUsage,
};
use tether_protocol::limits;
use tether_protocol::message::{AgentStatus, AgentToRelay, Intent, capability, close_code};
use tether_tests::{Agent, Relay, Tech, ok, run, stderr, stdout, wait_until};

const WAIT: Duration = Duration::from_secs(20);

/// `tether health DEVICE --json`, or `None` while the device has not reported yet.
fn health(tech: &Tech, device: &str) -> Option<Value> {
    let out = tech.tether(&["health", device, "--json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("health JSON"))
}

fn wait_health(tech: &Tech, device: &str, mut cond: impl FnMut(&Value) -> bool) -> Value {
    let mut last = None;
    wait_until(WAIT, || {
        last = health(tech, device);
        last.as_ref().is_some_and(&mut cond)
    })
    .unwrap_or_else(|| panic!("health of {device} never became as expected: {last:?}"));
    last.unwrap_or_default()
}

fn alerts(tech: &Tech, all: bool) -> Vec<Value> {
    let v = if all {
        tech.json(&["alerts", "--all"])
    } else {
        tech.json(&["alerts"])
    };
    v.as_array().cloned().expect("alerts array")
}

fn find<'a>(rows: &'a [Value], device: &str, kind: &str, subject: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|a| a["device_id"] == device && a["kind"] == kind && a["subject"] == subject)
}

fn alerts_policy(relay: &Relay, args: &[&str]) -> String {
    ok(run(relay
        .cli()
        .arg("alerts-policy")
        .arg("--data")
        .arg(relay.data())
        .args(args)))
}

/// Fields of /proc/meminfo in bytes.
fn meminfo(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("{key} not in /proc/meminfo"))
}

fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap();
    let v: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .map(|x| x.parse().unwrap())
        .collect();
    [v[0], v[1], v[2]]
}

/// `df` in bytes for one mount: (size, available).
fn df(path: &Path) -> (u64, u64) {
    let out = ok(run(Command::new("df")
        .args(["-B1", "--output=size,avail"])
        .arg(path)));
    let line = out.lines().nth(1).expect("df output");
    let mut f = line.split_whitespace().map(|x| x.parse::<u64>().unwrap());
    (f.next().unwrap(), f.next().unwrap())
}

fn is_root() -> bool {
    stdout(&run(Command::new("id").arg("-u"))).trim() == "0"
}

/// A tmpfs of a fixed size the test mounts itself (as root); unmounted on drop.
struct SmallFs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SmallFs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small");
        std::fs::create_dir(&path).unwrap();
        let out = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path));
        assert!(out.status.success(), "mount tmpfs: {}", stderr(&out));
        SmallFs { _dir: dir, path }
    }

    fn mount_point(&self) -> String {
        self.path.to_str().unwrap().to_string()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = run(Command::new("umount").arg("-l").arg(&self.path));
    }
}

/// A tiny HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it. It answers the
/// first `fail_first` requests with 503 (to exercise retries), the rest with 200.
struct Webhook {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    requests: Arc<Mutex<usize>>,
}

impl Webhook {
    fn start(fail_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/tether", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0usize));
        let (b, r) = (bodies.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut length = 0usize;
                let mut json = false;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("content-type:") && lower.contains("application/json") {
                        json = true;
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let n = {
                    let mut r = r.lock().unwrap();
                    *r += 1;
                    *r
                };
                let status = if n <= fail_first {
                    "503 Service Unavailable"
                } else {
                    assert!(
                        request_line.starts_with("POST /hooks/tether "),
                        "{request_line}"
                    );
                    assert!(json, "webhook body not sent as application/json");
                    b.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).expect("webhook body is JSON"));
                    "200 OK"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Webhook {
            url,
            bodies,
            requests,
        }
    }

    fn events(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    fn wait_event(&self, event: &str, subject: &str) -> Value {
        let mut found = None;
        wait_until(WAIT, || {
            found = self
                .events()
                .into_iter()
                .find(|e| e["event"] == event && e["alert"]["subject"] == subject);
            found.is_some()
        })
        .unwrap_or_else(|| {
            panic!(
                "webhook never received {event} for {subject}: {:?}",
                self.events()
            )
        });
        found.unwrap_or_default()
    }
}

#[test]
fn health_values_match_the_operating_system() {
    let relay = Relay::start();
    // Viewers may read health.
    let tech = Tech::enroll(&relay.tech_token("vera", "viewer"));
    let mut agent = Agent::enroll(&relay.agent_token());
    let small = is_root().then(|| SmallFs::mount("8m"));
    agent.start_with(&["--health-interval", "1s"]);

    let before = loadavg();
    let v = wait_health(&tech, &agent.id, |v| {
        small.as_ref().is_none_or(|s| {
            v["report"]["filesystems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["mount_point"] == s.mount_point().as_str())
        })
    });
    let after = loadavg();
    let r = &v["report"];
    assert_eq!(v["device"]["id"], agent.id.as_str());
    assert!(v["age_s"].as_i64().unwrap() <= 5, "{v}");

    // Memory and swap totals are the kernel's.
    assert_eq!(r["memory"]["total_bytes"], meminfo("MemTotal"));
    assert_eq!(r["memory"]["swap_total_bytes"], meminfo("SwapTotal"));
    let avail = r["memory"]["available_bytes"].as_u64().unwrap();
    let now_avail = meminfo("MemAvailable") as f64;
    assert!(
        (avail as f64 - now_avail).abs() < 0.25 * meminfo("MemTotal") as f64,
        "available {avail} vs {now_avail}"
    );

    // Load averages as /proc/loadavg had them around the report (they drift).
    for (i, key) in ["one", "five", "fifteen"].into_iter().enumerate() {
        let got = r["load"][key].as_f64().unwrap() / 100.0;
        let (lo, hi) = (before[i].min(after[i]), before[i].max(after[i]));
        let slack = 0.5 + 0.2 * hi;
        assert!(
            got >= lo - slack && got <= hi + slack,
            "load {key} {got} outside {lo}..{hi} ± {slack}"
        );
    }

    // The root filesystem and our own tmpfs as df sees them.
    let fss = r["filesystems"].as_array().unwrap();
    let root = fss
        .iter()
        .find(|f| f["mount_point"] == "/")
        .expect("/ reported");
    assert_eq!(root["size_bytes"].as_u64().unwrap(), df(Path::new("/")).0);
    if let Some(s) = &small {
        let f = fss
            .iter()
            .find(|f| f["mount_point"] == s.mount_point().as_str())
            .unwrap();
        assert_eq!(f["size_bytes"], 8 * 1024 * 1024);
        assert_eq!(f["fs_type"], "tmpfs");
        assert_eq!(f["available_bytes"].as_u64().unwrap(), df(&s.path).1);
    }

    // CPU count and uptime; processes bounded and ordered.
    let cpus = stdout(&run(Command::new("getconf").arg("_NPROCESSORS_ONLN")));
    assert_eq!(
        r["cpus"].as_u64().unwrap(),
        cpus.trim().parse::<u64>().unwrap()
    );
    assert!(r["cpu_permille"].as_u64().unwrap() <= 1000);
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((r["uptime_s"].as_f64().unwrap() - uptime).abs() < 10.0);
    let top_mem = r["top_memory"].as_array().unwrap();
    assert!(!top_mem.is_empty() && top_mem.len() <= 10);
    let mems: Vec<u64> = top_mem
        .iter()
        .map(|p| p["memory_bytes"].as_u64().unwrap())
        .collect();
    assert!(mems.windows(2).all(|w| w[0] >= w[1]), "{mems:?}");
    assert!(r["top_cpu"].as_array().unwrap().len() <= 10);

    // The readable form.
    let text = ok(tech.tether(&["health", &agent.id[..8]]));
    assert!(text.contains("report received"), "{text}");
    assert!(text.contains("MOUNTED ON"), "{text}");
    // (This machine's own disks may be full enough for an alert.)
    assert!(text.contains("open alerts"), "{text}");

    // --watch: a new report every interval, one JSON line each, until stopped.
    let mut watch = tech.spawn(&["health", &agent.id, "--watch", "--json", "--every", "300ms"]);
    let lines = BufReader::new(watch.child.stdout.take().unwrap());
    let mut received = Vec::new();
    for line in lines.lines().take(3) {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        received.push(v["received_unix_ms"].as_i64().unwrap());
    }
    watch.kill();
    assert!(received.windows(2).all(|w| w[0] < w[1]), "{received:?}");
}

#[test]
fn a_filling_filesystem_opens_an_alert_that_closes_when_it_drains() {
    if !is_root() {
        eprintln!("skipped: mounting a test filesystem needs root");
        return;
    }
    // The webhook fails the first delivery: the relay must retry.
    let hook = Webhook::start(1);
    let mut relay = Relay::init();
    let listed = alerts_policy(
        &relay,
        &["--group", "default", "--webhook", &hook.url, "--json"],
    );
    let p: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(p["disk_percent"], 90);
    assert_eq!(p["webhook"], hook.url.as_str());
    relay.serve("127.0.0.1:0".parse().unwrap());
    let tech = Tech::enroll(&relay.tech_token("ana", "support"));
    let mut agent = Agent::enroll(&relay.agent_token());
    let small = SmallFs::mount("8m");
    let mp = small.mount_point();
    agent.start_with(&["--health-interval", "1s"]);
    wait_health(&tech, &agent.id, |v| {
        v["report"]["filesystems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["mount_point"] == mp.as_str())
    });
    assert!(find(&alerts(&tech, false), &agent.id, "disk", &mp).is_none());

    // Fill it to ~95 %.
    let file = small.path.join("fill");
    std::fs::write(&file, vec![7u8; 7_800_000]).unwrap();
    let mut open = None;
    wait_until(WAIT, || {
        open = find(&alerts(&tech, false), &agent.id, "disk", &mp).cloned();
        open.is_some()
    })
    .expect("no disk alert opened");
    let open = open.unwrap();
    assert!(open["value"].as_i64().unwrap() >= 90, "{open}");
    assert_eq!(open["threshold"], 90);
    assert!(open["closed_at"].is_null());
    assert!(open["detail"].as_str().unwrap().contains(&mp), "{open}");
    let listed = ok(tech.tether(&["alerts"]));
    assert!(listed.contains("disk") && listed.contains(&mp), "{listed}");
    // The device's health lists it too.
    let h = health(&tech, &agent.id).unwrap();
    assert!(find(h["alerts"].as_array().unwrap(), &agent.id, "disk", &mp).is_some());

    let opened = hook.wait_event("alert.opened", &mp);
    assert_eq!(opened["alert"]["id"], open["id"]);
    assert_eq!(opened["alert"]["device_id"], agent.id.as_str());
    assert_eq!(opened["alert"]["kind"], "disk");
    assert_eq!(opened["alert"]["group"], "default");
    assert!(opened["alert"]["opened_at"].is_string());
    assert!(opened["relay"].is_string());
    assert!(
        *hook.requests.lock().unwrap() >= 2,
        "the failed first delivery was not retried"
    );

    // Drain it: the alert closes, stays on record, and the webhook hears that too.
    std::fs::remove_file(&file).unwrap();
    wait_until(WAIT, || {
        find(&alerts(&tech, false), &agent.id, "disk", &mp).is_none()
    })
    .expect("disk alert never closed");
    let all = alerts(&tech, true);
    let closed = find(&all, &agent.id, "disk", &mp).expect("closed alert kept");
    assert_eq!(closed["id"], open["id"]);
    assert!(closed["closed_at"].is_string());
    assert!(
        closed["close_detail"]
            .as_str()
            .unwrap()
            .contains("0 % used"),
        "{closed}"
    );
    let closed_event = hook.wait_event("alert.closed", &mp);
    assert_eq!(closed_event["alert"]["id"], open["id"]);
    assert!(closed_event["alert"]["closed_unix_ms"].is_i64());
    // Each once, opening first.
    let events: Vec<_> = hook
        .events()
        .into_iter()
        .filter(|e| e["alert"]["subject"] == mp.as_str())
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, vec!["alert.opened", "alert.closed"]);
}

#[test]
fn a_silent_device_raises_the_no_report_alert() {
    let mut relay = Relay::init();
    alerts_policy(&relay, &["--group", "quiet", "--silent-after", "3s"]);
    let listed: Value = serde_json::from_str(&alerts_policy(&relay, &["--json"])).unwrap();
    let quiet = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["group"] == "quiet")
        .expect("quiet group listed");
    assert_eq!(quiet["silent_after_s"], 3);
    assert_eq!(quiet["disk_percent"], 90);
    assert_eq!(quiet["memory_for_s"], 300);
    relay.serve("127.0.0.1:0".parse().unwrap());
    let tech = Tech::enroll(&relay.tech_token("vera", "viewer"));
    let mut agent = Agent::enroll(&relay.agent_token_with(&["--group", "quiet"]));
    agent.start_with(&["--health-interval", "1s"]);
    wait_health(&tech, &agent.id, |_| true);
    assert!(find(&alerts(&tech, false), &agent.id, "silent", "").is_none());

    // The agent vanishes: within the silence time (and a tick) the alert opens.
    agent.kill();
    let mut open = None;
    let took = wait_until(WAIT, || {
        open = find(&alerts(&tech, false), &agent.id, "silent", "").cloned();
        open.is_some()
    })
    .expect("no silence alert");
    let open = open.unwrap();
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert_eq!(open["threshold"], 3);
    assert!(open["value"].as_i64().unwrap() >= 3);
    assert!(
        open["detail"]
            .as_str()
            .unwrap()
            .starts_with("no health report for"),
        "{open}"
    );

    // It reports again: the alert closes.
    agent.start_with(&["--health-interval", "1s"]);
    wait_until(WAIT, || {
        find(&alerts(&tech, false), &agent.id, "silent", "").is_none()
    })
    .expect("silence alert never closed");
    let closed = find(&alerts(&tech, true), &agent.id, "silent", "")
        .cloned()
        .unwrap();
    assert!(
        closed["close_detail"]
            .as_str()
            .unwrap()
            .starts_with("reporting again"),
        "{closed}"
    );
}

fn hostile_report() -> HealthReport {
    HealthReport {
        cpu_permille: 60_000,
        memory: MemoryUsage {
            total_bytes: 100,
            available_bytes: 1_000_000,
            swap_total_bytes: 0,
            swap_free_bytes: 5,
        },
        filesystems: (0..300)
            .map(|i| FilesystemUsage {
                mount_point: format!("/m{i}\u{1b}[2J"),
                fs_type: "\u{202e}ext4".into(),
                device: "\u{7}".into(),
                size_bytes: 10,
                free_bytes: 0,
                available_bytes: 0,
            })
            .collect(),
        top_cpu: vec![
            ProcessUsage {
                name: "\u{1b}]0;owned\u{7}bash".into(),
                user: "x".repeat(1000),
                ..ProcessUsage::default()
            };
            20
        ],
        failed_units: Some(vec![FailedUnit {
            name: "\u{1b}[31mevil.service".into(),
            description: "d".repeat(3000),
        }]),
        errors: vec!["\u{1b}[2J".into(); 50],
        ..HealthReport::default()
    }
}

#[test]
fn hostile_health_is_cleaned_or_refused_without_affecting_others() {
    let relay = Relay::start();
    let tech = Tech::enroll(&relay.tech_token("vera", "viewer"));
    let mut good = Agent::enroll(&relay.agent_token());
    good.start_with(&["--health-interval", "1s"]);
    let bad = Agent::enroll(&relay.agent_token());

    // Worker threads keep the hostile connection going while the test runs `tether` commands.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let creds = Credentials::load(&bad.state()).unwrap();
        let (_ep, conn, welcome, mut control, _recv) = connect_with_credentials(
            &creds,
            Intent::Agent,
            "hostile",
            TransportOptions::default(),
        )
        .await
        .unwrap();
        assert!(welcome.capabilities.iter().any(|c| c == capability::HEALTH));
        write_msg(
            &mut control,
            &AgentToRelay::Status(AgentStatus {
                hostname: "hostile".into(),
                os: "x".into(),
                agent_version: "0".into(),
            }),
            limits::CONTROL,
        )
        .await
        .unwrap();
        // Garbage that fits a frame: cleaned and bounded. Then a burst the relay rate-limits.
        for _ in 0..20 {
            write_msg(
                &mut control,
                &AgentToRelay::Health(Box::new(hostile_report())),
                limits::CONTROL,
            )
            .await
            .unwrap();
        }
        let h = wait_health(&tech, &bad.id, |_| true);
        let r = &h["report"];
        assert_eq!(r["filesystems"].as_array().unwrap().len(), 64);
        assert_eq!(r["top_cpu"].as_array().unwrap().len(), 10);
        assert_eq!(r["errors"].as_array().unwrap().len(), 8);
        assert_eq!(r["cpu_permille"], 1000);
        assert_eq!(r["memory"]["available_bytes"], 100);
        assert!(r["top_cpu"][0]["user"].as_str().unwrap().len() <= 64);
        let all = serde_json::to_string(&h).unwrap();
        for c in ['\u{1b}', '\u{7}', '\u{202e}'] {
            assert!(!all.contains(c), "{c:?} survived in {all}");
        }
        let text = ok(tech.tether(&["health", &bad.id]));
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text}"
        );
        // Its full disks and failed unit are alerts like any other, shown cleaned.
        // (The report's alerts are opened one after another: wait for the last.)
        let mut listed = String::new();
        wait_until(Duration::from_secs(60), || {
            listed = ok(tech.tether(&["alerts"]));
            listed.contains("evil.service")
        });
        assert!(listed.contains("evil.service"), "{listed}");
        assert!(!listed.contains('\u{1b}'));

        // A frame over the control limit: the relay closes this agent's connection.
        control
            .write_all(&((limits::CONTROL + 1) as u32).to_be_bytes())
            .await
            .unwrap();
        // (The relay may already have closed the connection on the header alone.)
        let _ = control.write_all(&[0u8; 1024]).await;
        let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed())
            .await
            .expect("relay kept a connection that sent an oversized frame");
        match closed {
            quinn::ConnectionError::ApplicationClosed(c) => {
                assert_eq!(
                    c.error_code.into_inner(),
                    u64::from(close_code::PROTOCOL_ERROR)
                )
            }
            other => panic!("closed with {other:?}"),
        }
    });

    // Everyone else is still served: the good agent keeps reporting.
    let first = wait_health(&tech, &good.id, |_| true)["received_unix_ms"]
        .as_i64()
        .unwrap();
    wait_health(&tech, &good.id, |v| {
        v["received_unix_ms"].as_i64().unwrap() > first
    });
    assert_eq!(tech.is_online(&good.id), Some(true));
    assert_eq!(tech.devices().len(), 2);
}
