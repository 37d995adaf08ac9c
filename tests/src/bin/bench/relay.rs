//! The `relay` suite: what the relay costs a session, measured against a real relay process.
//!
//! * The relay runs as its own release `tether-relay serve` process on 127.0.0.1 (so its CPU in
//!   `/proc/PID/stat` is its own), a real `tether-agent run` is enrolled to it, and this process
//!   is the technician (end-to-end TLS through the relay's splice, as `tether exec` does).
//! * Bulk: one session runs `head -c N /dev/zero` on the agent (`ToAgent::Exec`); the stdout
//!   bytes crossing the relay are counted until the command's exit arrives. Relay CPU per Gbit
//!   is the relay process's `utime + stime` over that transfer. Peer: the same number of bytes
//!   through `socat TCP-LISTEN:P1,reuseaddr TCP:127.0.0.1:P2` between a tokio sender and
//!   receiver in this process, with socat's CPU measured the same way.
//! * Latency: in a shell session (`ToAgent::ShellOpen`, then `stty -icanon` and `cat`), one byte
//!   is typed and the time until the terminal's echo arrives is one round trip (the echo is the
//!   kernel's terminal echo, no program in between). Baseline: one byte echoed over a direct TCP
//!   connection on loopback. "Relay-added" = session RTT − direct RTT at the same percentile.
//!   This is an upper bound of what the relay adds: the session RTT also holds the agent's and
//!   the technician's TLS, the agent's pty, and a second QUIC hop, none of which is the relay's.
//! * Under load: the same probe while `--sessions N` (default 100) other sessions each stream
//!   5 Mbit/s (a paced writer run by the agent) through the same relay, spread over agents and
//!   technician connections with ten sessions each (a QUIC connection allows 100 concurrent
//!   streams, so one agent cannot hold 100 sessions at once).
//!
//! Relay, agent, load and measurement all share this machine's cores.

use super::agent::{enroll_agent, enroll_pair, ensure_tool, start_agent, wait_online};
use super::screen::{Bg, cpu_seconds, pctl, workspace_bin};
use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tether_protocol::message::SessionRequest;
use tether_protocol::session::{Permissions, ToAgent, ToViewer};
use tether_technician::remote::RemoteSession;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Per-session rate of the background load: 5 Mbit/s.
const LOAD_BYTES_PER_S: u64 = 625_000;

/// Child mode: writes zeros to stdout at `rate` bytes/s for `secs` seconds.
pub fn pace(rate: u64, secs: u64) -> Result<()> {
    use std::io::Write;
    let chunk = vec![0u8; 16 * 1024];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut out = std::io::stdout().lock();
    while start.elapsed().as_secs() < secs {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        if sent < due {
            let n = chunk.len().min((due - sent) as usize);
            out.write_all(&chunk[..n])?;
            out.flush()?;
            sent += n as u64;
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(())
}

/// `tether-relay init` + `serve` in `dir`; returns the process, its data directory and address.
fn start_relay(dir: &Path) -> Result<(Bg, DataDir, String)> {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let bin = workspace_bin("tether-relay")?;
    let data = dir.join("relay");
    let ok = std::process::Command::new(&bin)
        .args(["init", "--name", "localhost", "--data"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .status()?
        .success();
    anyhow::ensure!(ok, "tether-relay init failed");
    let mut child = std::process::Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--conn-burst", "1000"])
        .arg("--data")
        .arg(&data)
        .env("RUST_LOG", "warn")
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("relay stdout")?;
    let relay = Bg(child);
    let mut addr = None;
    for line in std::io::BufReader::new(stdout).lines() {
        if let Some(a) = line?.strip_prefix("tether-relay listening on ") {
            addr = Some(a.trim().to_string());
            break;
        }
    }
    let addr = addr.context("relay did not report its address")?;
    Ok((relay, DataDir::new(data), addr))
}

async fn open(
    session: &tether_technician::relay::Session,
    creds: &Credentials,
    device: &str,
    permissions: Permissions,
) -> Result<RemoteSession> {
    Ok(session
        .open_remote_with(
            creds,
            SessionRequest {
                device: device.to_string(),
                permissions,
                reason: "benchmark".into(),
                ticket: String::new(),
                batch: false,
                activity: tether_protocol::session::Activity::for_permissions(permissions),
            },
        )
        .await?)
}

/// Reads everything the agent sends until it has been quiet for `quiet`.
async fn drain(remote: &mut RemoteSession, quiet: Duration) {
    while let Ok(Ok(_)) = tokio::time::timeout(quiet, remote.recv()).await {}
}

/// One-byte round trips through the shell's terminal echo, in ms.
async fn shell_rtts(remote: &mut RemoteSession, samples: usize) -> Result<Vec<f64>> {
    let mut rtts = Vec::with_capacity(samples);
    for i in 0..samples {
        let c = b'a' + (i % 26) as u8;
        let t = Instant::now();
        remote.send(&ToAgent::ShellInput(vec![c])).await?;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), remote.recv())
                .await
                .context("no echo within 5 s")??;
            match msg {
                ToViewer::Output { data, .. } if data.contains(&c) => break,
                ToViewer::Output { .. } => continue,
                ToViewer::Error { message } | ToViewer::Bye { reason: message } => {
                    anyhow::bail!("shell ended: {message}")
                }
                _ => continue,
            }
        }
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(rtts)
}

/// One-byte round trips over a direct loopback TCP connection to an echo task, in ms.
async fn direct_rtts(samples: usize) -> Result<Vec<f64>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            let mut b = [0u8; 1];
            while let Ok(1) = s.read(&mut b).await {
                if s.write_all(&b).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut rtts = Vec::with_capacity(samples);
    let mut b = [0u8; 1];
    for _ in 0..samples {
        let t = Instant::now();
        s.write_all(b"x").await?;
        s.read_exact(&mut b).await?;
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(s);
    let _ = echo.await;
    Ok(rtts)
}

/// `bytes` from a tokio sender through socat to a tokio receiver: (seconds, socat CPU seconds).
async fn socat_splice(bytes: u64) -> Result<(f64, f64)> {
    use std::os::unix::process::CommandExt;
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let p2 = receiver.local_addr()?.port();
    let p1 = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let socat = Bg(std::process::Command::new("socat")
        .arg(format!("TCP-LISTEN:{p1},bind=127.0.0.1,reuseaddr"))
        .arg(format!("TCP:127.0.0.1:{p2}"))
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .spawn()
        .context("socat")?);
    let pid = socat.0.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tx = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", p1)).await {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => return Err(e).context("connect to socat"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let (mut rx, _) = receiver.accept().await?;
    let cpu0 = cpu_seconds(pid);
    let t = Instant::now();
    let sender = tokio::spawn(async move {
        let chunk = vec![0u8; 256 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = (chunk.len() as u64).min(left) as usize;
            tx.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        tx.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = rx.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    sender.await??;
    anyhow::ensure!(got == bytes, "socat delivered {got} of {bytes} bytes");
    Ok((secs, cpu))
}

/// Busy and total jiffies of the whole machine (all cores), from `/proc/stat`.
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    // idle and iowait are fields 4 and 5.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Share of all the machine's cores that was busy since `from` (a [`machine_jiffies`] reading).
fn machine_busy_since(from: (u64, u64)) -> f64 {
    let (b, t) = machine_jiffies();
    let dt = t.saturating_sub(from.1).max(1);
    b.saturating_sub(from.0) as f64 / dt as f64 * 100.0
}

/// Transfers report progress to nobody.
struct Quiet;
impl tether_technician::ops::Progress for Quiet {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn file(&self, _: &str) {}
}

/// `tether pull` of a `bytes`-long file, from tmpfs to tmpfs (no disk in the way): seconds.
async fn pull_bulk(remote: &mut RemoteSession, bytes: u64) -> Result<f64> {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    };
    // The session reads it as its user, not as root.
    tether_tests::give_to_session_user(dir.path());
    let src = dir.path().join("source.bin");
    std::fs::File::create(&src)?.set_len(bytes)?;
    let dest = dir.path().join("pulled.bin");
    let t = Instant::now();
    let done =
        tether_technician::ops::pull(remote, &src.display().to_string(), &dest, &Quiet).await?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        done.bytes == bytes,
        "pulled {} of {bytes} bytes",
        done.bytes
    );
    Ok(secs)
}

fn gbit_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs / 1e9
}

pub async fn relay(report: &mut Report, bulk_mib: u64, sessions: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay_proc, data, addr) = start_relay(tmp.path())?;
    let relay_pid = relay_proc.0.id();
    let e = enroll_pair(&data, &addr, tmp.path()).await?;
    let socket = tmp.path().join("agent.sock");
    let _agent = start_agent(&e.agent_dir, &socket)?;
    let creds = Credentials::load(&e.tech_dir)?;
    let session = tether_technician::relay::Session::open(&creds).await?;
    wait_online(&session, &e.agent_id).await?;
    let _user = tether_tests::auto_approve(&socket);

    // 1. Bulk throughput of one session, and the relay's CPU for it.
    let bytes = bulk_mib * 1024 * 1024;
    let mut remote = open(&session, &creds, &e.agent_id, Permissions::SHELL).await?;
    let mut got = 0u64;
    let cpu0 = cpu_seconds(relay_pid);
    let m0 = machine_jiffies();
    let t = Instant::now();
    let exit = tether_technician::ops::exec(
        &mut remote,
        vec![
            "head".into(),
            "-c".into(),
            bytes.to_string(),
            "/dev/zero".into(),
        ],
        None,
        |_, d| got += d.len() as u64,
    )
    .await?;
    let secs = t.elapsed().as_secs_f64();
    let relay_cpu = cpu_seconds(relay_pid) - cpu0;
    let bulk_busy = machine_busy_since(m0);
    anyhow::ensure!(exit.status() == 0, "head exited with {exit:?}");
    anyhow::ensure!(got == bytes, "received {got} of {bytes} bytes");
    remote.close().await;
    let ours = gbit_per_s(bytes, secs);
    let gbits = bytes as f64 * 8.0 / 1e9;
    let (peer_tp, peer_cpu) = match ensure_tool("socat", "socat") {
        Err(why) => (
            Peer::unavailable("socat TCP splice", why.clone()),
            Peer::unavailable("socat TCP splice", why),
        ),
        Ok(()) => {
            let (s, cpu) = socat_splice(bytes).await?;
            (
                Peer::value("socat TCP splice", gbit_per_s(bytes, s)),
                Peer::value("socat TCP splice", cpu / gbits),
            )
        }
    };
    report.add_peer(
        "relay.bulk.one_session_gbit_per_s",
        ours,
        "Gbit/s",
        Some(">= 2"),
        peer_tp,
    );
    report.add_peer(
        "relay.bulk.relay_cpu_s_per_gbit",
        relay_cpu / gbits,
        "CPU s/Gbit",
        None,
        peer_cpu,
    );
    report.add(
        "relay.bulk.relay_cpu",
        relay_cpu / secs * 100.0,
        "% of a core",
        None,
    );
    report.add("relay.bulk.machine_busy", bulk_busy, "% of all cores", None);
    report.add("relay.bulk.bytes", bytes as f64, "B", None);

    // The other bulk path: a file pull (256 KiB chunks, SHA-256 on both sides).
    let mut remote = open(&session, &creds, &e.agent_id, Permissions::FILES).await?;
    let cpu0 = cpu_seconds(relay_pid);
    let secs = pull_bulk(&mut remote, bytes).await?;
    let pull_cpu = cpu_seconds(relay_pid) - cpu0;
    remote.close().await;
    report.add(
        "relay.bulk.pull_gbit_per_s",
        gbit_per_s(bytes, secs),
        "Gbit/s",
        None,
    );
    report.add(
        "relay.bulk.pull_relay_cpu_s_per_gbit",
        pull_cpu / gbits,
        "CPU s/Gbit",
        None,
    );

    // 2. Latency through the relay, idle.
    let samples = 1000;
    let mut shell = open(&session, &creds, &e.agent_id, Permissions::SHELL).await?;
    shell
        .send(&ToAgent::ShellOpen {
            cols: 80,
            rows: 24,
            user: None,
        })
        .await?;
    drain(&mut shell, Duration::from_millis(500)).await;
    shell
        .send(&ToAgent::ShellInput(
            b"stty -icanon; exec cat >/dev/null\n".to_vec(),
        ))
        .await?;
    drain(&mut shell, Duration::from_millis(500)).await;
    let mut direct = direct_rtts(samples).await?;
    let mut idle = shell_rtts(&mut shell, samples).await?;
    let (d50, d99) = (pctl(&mut direct, 0.5), pctl(&mut direct, 0.99));
    let (i50, i99) = (pctl(&mut idle, 0.5), pctl(&mut idle, 0.99));
    report.add("relay.latency.direct_tcp_rtt_ms_p50", d50, "ms", None);
    report.add("relay.latency.direct_tcp_rtt_ms_p99", d99, "ms", None);
    report.add("relay.latency.idle.session_rtt_ms_p50", i50, "ms", None);
    report.add("relay.latency.idle.session_rtt_ms_p99", i99, "ms", None);
    report.add("relay.latency.idle.added_ms_p50", i50 - d50, "ms", None);
    report.add(
        "relay.latency.idle.added_ms_p99",
        i99 - d99,
        "ms",
        Some("<= 1 (at 100 sessions)"),
    );

    // 3. The same under load: `sessions` sessions each streaming 5 Mbit/s.
    let load_secs = 600;
    let me = std::env::current_exe()?.display().to_string();
    let delivered = Arc::new(AtomicU64::new(0));
    // One QUIC connection carries at most 100 concurrent streams (quinn's default, which the
    // agent's connection keeps), so the load is spread over agents with ten sessions each, and
    // over technician connections with ten sessions each.
    let mut load_agents = vec![];
    for a in 0..sessions.div_ceil(10) {
        let dir = tmp.path().join(format!("load-agent-{a}"));
        let (state, id) = enroll_agent(&data, &addr, &dir.join("state")).await?;
        let socket = dir.join("agent.sock");
        let proc = start_agent(&state, &socket)?;
        wait_online(&session, &id).await?;
        let user = tether_tests::auto_approve(&socket);
        load_agents.push((proc, user, id));
    }
    let mut techs = vec![];
    let mut tasks = vec![];
    for i in 0..sessions {
        if i % 10 == 0 {
            techs.push(tether_technician::relay::Session::open(&creds).await?);
        }
        let tech = techs.last().context("technician session")?;
        let device = &load_agents[i / 10].2;
        let mut remote = open(tech, &creds, device, Permissions::SHELL).await?;
        let delivered = delivered.clone();
        let argv = vec![
            me.clone(),
            "__pace".into(),
            LOAD_BYTES_PER_S.to_string(),
            load_secs.to_string(),
        ];
        tasks.push(tokio::spawn(async move {
            tether_technician::ops::exec(&mut remote, argv, None, |_, d| {
                delivered.fetch_add(d.len() as u64, Ordering::Relaxed);
            })
            .await
        }));
    }
    // Let every writer reach its pace.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b0 = delivered.load(Ordering::Relaxed);
    let cpu0 = cpu_seconds(relay_pid);
    let m0 = machine_jiffies();
    let t = Instant::now();
    let mut loaded = shell_rtts(&mut shell, samples).await?;
    let secs = t.elapsed().as_secs_f64();
    let load_rate = (delivered.load(Ordering::Relaxed) - b0) as f64 * 8.0 / secs / 1e6;
    let load_cpu = (cpu_seconds(relay_pid) - cpu0) / secs * 100.0;
    let load_busy = machine_busy_since(m0);
    let failed = tasks.iter().filter(|t| t.is_finished()).count();
    for t in tasks {
        t.abort();
    }
    let (l50, l99) = (pctl(&mut loaded, 0.5), pctl(&mut loaded, 0.99));
    let n = sessions;
    report.add(
        format!("relay.latency.load{n}.session_rtt_ms_p50"),
        l50,
        "ms",
        None,
    );
    report.add(
        format!("relay.latency.load{n}.session_rtt_ms_p99"),
        l99,
        "ms",
        None,
    );
    report.add(
        format!("relay.latency.load{n}.added_ms_p50"),
        l50 - d50,
        "ms",
        None,
    );
    report.add(
        format!("relay.latency.load{n}.added_ms_p99"),
        l99 - d99,
        "ms",
        Some("<= 1"),
    );
    report.add(
        format!("relay.load{n}.delivered_mbit_per_s"),
        load_rate,
        "Mbit/s",
        Some(format!("{} offered", n as u64 * LOAD_BYTES_PER_S * 8 / 1_000_000).as_str()),
    );
    report.add(
        format!("relay.load{n}.relay_cpu"),
        load_cpu,
        "% of a core",
        None,
    );
    report.add(
        format!("relay.load{n}.machine_busy"),
        load_busy,
        "% of all cores",
        None,
    );
    report.add(
        format!("relay.load{n}.sessions_ended_early"),
        failed as f64,
        "sessions",
        Some("0"),
    );
    drop(shell);
    for t in techs {
        t.close().await;
    }
    drop(load_agents);
    session.close().await;
    Ok(())
}
