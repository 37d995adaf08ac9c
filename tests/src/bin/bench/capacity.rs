//! The `capacity` suite: how many agents one relay holds, and what they cost it.
//!
//! * A release `tether-relay serve` process on a fixed port of 127.0.0.1 (so it can be restarted
//!   on the same address, and `/proc/PID` is the relay's alone).
//! * N simulated agents in this process, each with its own key pair and certificate from the
//!   real enrollment (one-time token, CSR), speaking the real agent protocol over real mutual
//!   TLS: hello, status, inventory hash (and one small upload the first time), liveness driven
//!   by the protocol's own [`AgentConn`] state machine (no heartbeats: the relay's QUIC
//!   keep-alive, see `tether_protocol::liveness`), a health report after each connect and every
//!   60 s, and reconnection with the agent's jittered backoff (0.5 s up to 30 s; 0.5–3 s when
//!   the relay turned it away as busy). They share `--endpoints E` UDP sockets (default 100),
//!   all on 127.0.0.1: the worst case for the relay's per-address admission, an office of
//!   thousands of machines behind one NAT address.
//! * Steady state for each N (1,000, then `--agents N`, default 10,000): after all are online and
//!   have settled, the relay's RSS (`VmRSS`, max of one sample a second) and CPU (`utime +
//!   stime`) over `--window-seconds S` (default 30). The relay's own device list is checked to
//!   show every agent online.
//! * Restart: SIGTERM (the relay closes every connection, as `systemctl restart` does), then a
//!   new relay process on the same address; the time from its start until every agent is back
//!   online, as the agents see it (welcome received) and as the relay's device list shows it.

use super::agent::rss_mb;
use super::screen::{Bg, cpu_seconds, workspace_bin};
use super::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tether_net::client::{connect, handshake};
use tether_protocol::backoff::Backoff;
use tether_protocol::codec;
use tether_protocol::conn::{AgentConn, AgentEvent, Timeouts};
use tether_protocol::message::{
    AgentStatus, AgentToRelay, Hello, HelloReply, RelayToAgent, capability,
};

/// What the simulated agents see, shared by all of them.
#[derive(Default)]
struct Stats {
    online: AtomicUsize,
    connects: AtomicU64,
    failed_attempts: AtomicU64,
    heartbeats: AtomicU64,
    uploads: AtomicUsize,
    /// Agents online on each relay (by index), for up to [`MAX_RELAYS`] relays.
    on_relay: [AtomicUsize; MAX_RELAYS],
    /// Live connections by agent index, with the relay each is on (for their QUIC RTT).
    live: std::sync::Mutex<std::collections::HashMap<usize, (usize, quinn::Connection)>>,
}

/// Most relays `capacity --relays` runs.
const MAX_RELAYS: usize = 16;

/// One simulated agent's fixed parts.
struct SimAgent {
    index: usize,
    config: quinn::ClientConfig,
}

pub async fn capacity(
    report: &mut Report,
    max_agents: usize,
    endpoints: usize,
    window: Duration,
) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let bin = workspace_bin("tether-relay")?;
    let data = DataDir::new(tmp.path().join("relay"));
    let ok = std::process::Command::new(&bin)
        .args(["init", "--name", "localhost", "--data"])
        .arg(&data.root)
        .stdout(std::process::Stdio::null())
        .status()?
        .success();
    anyhow::ensure!(ok, "tether-relay init failed");
    // A fixed port, so that a restarted relay is where the agents look for it.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();

    // One-time tokens, minted into the store before the relay runs (as `tether-relay token`).
    let t = Instant::now();
    let (tokens, tech_token) = mint_tokens(&data, &addr.to_string(), "fleet", max_agents).await?;
    eprintln!(
        "  minted {max_agents} tokens in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let log = tmp.path().join("relay.log");
    let (mut relay, _) = serve(&bin, &data, addr, &log)?;
    let tech_dir = tmp.path().join("tech");
    tether_net::client::enroll(&tech_token, &tech_dir, "bench", "bench").await?;
    let tech = Credentials::load(&tech_dir)?;

    // As the agent: no keep-alive of its own, the relay's sets the pace.
    let transport = tether_net::tls::TransportOptions {
        keep_alive: None,
        idle_timeout: tether_protocol::liveness::AGENT_IDLE_TIMEOUT,
    };
    let eps: Vec<quinn::Endpoint> = (0..endpoints.max(1))
        .map(|_| quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")))
        .collect::<Result<_, _>>()?;
    let health = Arc::new(health_frame().await?);
    let stats = Arc::new(Stats::default());

    let mut stages = vec![max_agents.min(1000)];
    if max_agents > 1000 {
        stages.push(max_agents);
    }
    let mut tokens = tokens.into_iter();
    let mut tasks = Vec::with_capacity(max_agents);
    let mut enrolled = 0;
    let mut enroll_s = 0.0;
    for &n in &stages {
        // Real enrollment of this stage's new agents: a key pair and CSR each.
        let t = Instant::now();
        let batch: Vec<_> = (enrolled..n)
            .map(|i| (tokens.next(), tmp.path().join(format!("a{i}"))))
            .collect();
        let results: Vec<_> = stream::iter(batch)
            .map(|(tok, dir)| {
                tokio::spawn(async move {
                    let tok = tok.context("token")?;
                    tether_net::client::enroll(&tok, &dir, "sim", "tether-bench-sim").await?;
                    Ok::<_, anyhow::Error>(dir)
                })
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let mut agents = Vec::with_capacity(n - enrolled);
        for (offset, r) in results.into_iter().enumerate() {
            let dir = r??;
            agents.push(SimAgent {
                index: enrolled + offset,
                config: Credentials::load(&dir)?.quic_config(transport)?,
            });
        }
        enroll_s += t.elapsed().as_secs_f64();
        enrolled = n;
        eprintln!("  enrolled {n} agents");
        // A relay with this fleet, as after any restart: it sets the keep-alive interval by
        // the number of enrolled devices (running relays re-read it every minute).
        stop_relay(relay)?;
        relay = serve(&bin, &data, addr, &log)?.0;

        eprintln!(
            "capacity: {n} agents (keep-alive every {:?})",
            tether_protocol::liveness::keepalive_interval(n as u64)
        );
        let t = Instant::now();
        for a in agents {
            let ep = eps[a.index % eps.len()].clone();
            tasks.push(tokio::spawn(sim_agent(
                ep,
                Arc::new(vec![addr]),
                a,
                health.clone(),
                stats.clone(),
            )));
        }
        let first_s = wait_online_and_uploaded(&stats, n, t).await?;
        eprintln!("  all {n} online with their first inventory in {first_s:.1} s");
        report.add(format!("capacity.{n}.first_connect_s"), first_s, "s", None);
        let seen = relay_online(&tech).await?;
        anyhow::ensure!(
            seen == n,
            "the relay lists {seen} devices online, expected {n}"
        );
        // Settle: first health reports and post-connect bursts are over.
        tokio::time::sleep(Duration::from_secs(10)).await;
        steady_state(report, &relay, &stats, n, window).await?;
    }
    report.add(
        "capacity.enroll.agents_per_s",
        max_agents as f64 / enroll_s,
        "agents/s",
        None,
    );

    // Restart with every agent connected.
    let n = tasks.len();
    eprintln!("capacity: restart with {n} agents");
    let stop = Instant::now();
    stop_relay(relay)?;
    let stopped_s = stop.elapsed().as_secs_f64();
    let connects_before = stats.connects.load(Ordering::Relaxed);
    let start = Instant::now();
    let (new_relay, listening_s) = serve(&bin, &data, addr, &log)?;
    relay = new_relay;
    // Every agent noticed the close and reconnected (not just ones still counted online).
    let back_s = wait_back(&stats, n, connects_before + n as u64, start).await?;
    let seen = relay_online(&tech).await?;
    let listed_s = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        seen == n,
        "after the restart the relay lists {seen} devices online, expected {n}"
    );
    report.add(format!("capacity.{n}.restart.stop_s"), stopped_s, "s", None);
    report.add(
        format!("capacity.{n}.restart.listening_s"),
        listening_s,
        "s",
        None,
    );
    report.add(
        format!("capacity.{n}.restart.all_back_s"),
        back_s,
        "s",
        Some("<= 30"),
    );
    report.add(
        format!("capacity.{n}.restart.relay_lists_all_s"),
        listed_s,
        "s",
        None,
    );
    report.add(
        format!("capacity.{n}.restart.refused_or_failed_attempts"),
        stats.failed_attempts.load(Ordering::Relaxed) as f64,
        "attempts",
        None,
    );
    for t in tasks {
        t.abort();
    }
    for ep in eps {
        ep.close(0u32.into(), b"bench done");
    }
    let refusals = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("refusing"))
        .count();
    eprintln!("  relay log: {refusals} admission warnings (see the note in docs/PERFORMANCE.md)");
    drop(relay);
    Ok(())
}

/// Stops the relay as systemd does (SIGTERM) and waits for it to exit.
fn stop_relay(mut relay: Bg) -> Result<()> {
    std::process::Command::new("kill")
        .args(["-TERM", &relay.0.id().to_string()])
        .status()?;
    relay.0.wait()?;
    // It has exited: nothing left for `Bg`'s drop to kill.
    std::mem::forget(relay);
    Ok(())
}

/// Starts `tether-relay serve` on `addr`; returns it and the seconds until it listened.
fn serve(bin: &Path, data: &DataDir, addr: SocketAddr, log: &Path) -> Result<(Bg, f64)> {
    serve_on(bin, data, addr, log, None)
}

/// [`serve`], on the store `store` (a cluster member: it announces `addr` to the others).
fn serve_on(
    bin: &Path,
    data: &DataDir,
    addr: SocketAddr,
    log: &Path,
    store: Option<&str>,
) -> Result<(Bg, f64)> {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let t = Instant::now();
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["serve", "--listen", &addr.to_string(), "--data"])
        .arg(&data.root);
    if let Some(url) = store {
        cmd.env("TETHER_RELAY_STORE", url)
            .args(["--public-addr", &addr.to_string()]);
    }
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(err)
        .spawn()?;
    let stdout = child.stdout.take().context("relay stdout")?;
    let relay = Bg(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(line) => {
                if line?.starts_with("tether-relay listening on ") {
                    break;
                }
            }
            None => anyhow::bail!("relay exited before listening; see {}", log.display()),
        }
    }
    let listening = t.elapsed().as_secs_f64();
    // Keep reading, so the relay never writes into a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((relay, listening))
}

/// Waits until all `n` agents are online and have their first inventory acknowledged; the
/// seconds since `t`.
async fn wait_online_and_uploaded(stats: &Stats, n: usize, t: Instant) -> Result<f64> {
    wait_all_online(stats, n, Duration::from_secs(600)).await?;
    // First connects also upload an inventory: wait for those to finish.
    while stats.uploads.load(Ordering::Relaxed) < n {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(900),
            "only {} of {n} inventories acknowledged",
            stats.uploads.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Waits until the agents have connected `connects` times in all and all `n` are online (every
/// agent that lost its relay is back, not just ones still counted online); the seconds since
/// `start`.
async fn wait_back(stats: &Stats, n: usize, connects: u64, start: Instant) -> Result<f64> {
    let mut last_report = Instant::now();
    while stats.connects.load(Ordering::Relaxed) < connects
        || stats.online.load(Ordering::Relaxed) < n
    {
        if last_report.elapsed() >= Duration::from_secs(5) {
            // Agents of a dead relay count online until they notice: the reconnections
            // still to come say how many have not.
            eprintln!(
                "  {:.0} s: {} of {n} online, {} reconnections to come, {} attempts refused or failed in all",
                start.elapsed().as_secs_f64(),
                stats.online.load(Ordering::Relaxed),
                connects.saturating_sub(stats.connects.load(Ordering::Relaxed)),
                stats.failed_attempts.load(Ordering::Relaxed)
            );
            last_report = Instant::now();
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(300),
            "after 300 s only {} of {n} agents are back",
            stats.online.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn wait_all_online(stats: &Stats, n: usize, limit: Duration) -> Result<()> {
    let t = Instant::now();
    let mut last_report = Instant::now();
    while stats.online.load(Ordering::Relaxed) < n {
        anyhow::ensure!(
            t.elapsed() < limit,
            "only {} of {n} agents online after {limit:?}",
            stats.online.load(Ordering::Relaxed)
        );
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  {} of {n} online", stats.online.load(Ordering::Relaxed));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// How many devices the relay itself lists as online.
async fn relay_online(tech: &Credentials) -> Result<usize> {
    let session = tether_technician::relay::Session::open(tech).await?;
    let devices = session.devices().await?;
    session.close().await;
    Ok(devices.iter().filter(|d| d.online).count())
}

async fn steady_state(
    report: &mut Report,
    relay: &Bg,
    stats: &Stats,
    n: usize,
    window: Duration,
) -> Result<()> {
    let pid = relay.0.id();
    let me = std::process::id();
    let connects = stats.connects.load(Ordering::Relaxed);
    let beats = stats.heartbeats.load(Ordering::Relaxed);
    let (relay_cpu, my_cpu) = (cpu_seconds(pid), cpu_seconds(me));
    let t = Instant::now();
    let mut rss: f64 = 0.0;
    while t.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss = rss.max(rss_mb(pid).context("relay exited")?);
    }
    let secs = t.elapsed().as_secs_f64();
    let relay_pct = (cpu_seconds(pid) - relay_cpu) / secs * 100.0;
    let my_pct = (cpu_seconds(me) - my_cpu) / secs * 100.0;
    anyhow::ensure!(
        stats.connects.load(Ordering::Relaxed) == connects,
        "agents reconnected during the steady-state window"
    );
    let beat_rate = (stats.heartbeats.load(Ordering::Relaxed) - beats) as f64 / secs;
    let (rss_target, cpu_target) = if n >= 10_000 {
        (Some("<= 1024"), Some("<= 5"))
    } else {
        (None, None)
    };
    report.add(format!("capacity.{n}.relay_rss_mb"), rss, "MB", rss_target);
    report.add(
        format!("capacity.{n}.relay_cpu_pct_of_core"),
        relay_pct,
        "%",
        cpu_target,
    );
    report.add(
        format!("capacity.{n}.heartbeats_per_s"),
        beat_rate,
        "1/s",
        None,
    );
    report.add(
        format!("capacity.{n}.load_generator_cpu_pct"),
        my_pct,
        "%",
        None,
    );
    Ok(())
}

/// A real health report of this machine, framed once and sent by every simulated agent.
async fn health_frame() -> Result<Vec<u8>> {
    let busy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (_, report) =
        tether_agent::health::collect(tether_agent::health::Collector::new(), &busy).await;
    tether_agent::health::frame(&report).context("health report does not fit a frame")
}

/// splitmix64: jitter for the backoff, different per agent.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One simulated agent, forever: connect, run, back off, reconnect (as `tether-agent run`).
async fn sim_agent(
    ep: quinn::Endpoint,
    addrs: Arc<Vec<SocketAddr>>,
    agent: SimAgent,
    health: Arc<Vec<u8>>,
    stats: Arc<Stats>,
) {
    // Several relays: each agent starts with one (spread evenly) and, as `tether-agent` does,
    // moves to the next when a connection is lost or an attempt fails.
    let mut relay = agent.index;
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut rng = agent.index as u64 ^ 0x5EED;
    // Whether the relays acknowledged this agent's inventory (then only its hash is sent).
    let mut acked = false;
    loop {
        let addr = addrs[relay % addrs.len()];
        match connect(&ep, addr, "localhost", agent.config.clone()).await {
            // Returns when the connection is lost; then back off as the agent does.
            Ok(conn) => {
                let _ = sim_connection(
                    &conn,
                    relay % addrs.len(),
                    &agent,
                    &mut acked,
                    &health,
                    &stats,
                    &mut backoff,
                )
                .await;
                relay += 1;
            }
            Err(e) => {
                stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                if e.is_busy() {
                    tokio::time::sleep(backoff.busy_delay(next_random(&mut rng))).await;
                    continue;
                }
                relay += 1;
            }
        }
        tokio::time::sleep(backoff.next_delay(next_random(&mut rng))).await;
    }
}

/// Counts an agent online while it lives.
struct Online<'a>(&'a Stats, usize, usize);
impl Drop for Online<'_> {
    fn drop(&mut self) {
        self.0.online.fetch_sub(1, Ordering::Relaxed);
        self.0.on_relay[self.1].fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut live) = self.0.live.lock() {
            live.remove(&self.2);
        }
    }
}

/// The smoothed RTT (ms) QUIC holds for the agents on `relay`: p50, p99 and max. QUIC's idle
/// timeout is at least three probe timeouts (RTT plus four deviations), so an RTT inflated by a
/// connect storm delays noticing a dead relay.
fn rtt_ms(stats: &Stats, relay: usize) -> (f64, f64, f64) {
    let mut v: Vec<f64> = stats
        .live
        .lock()
        .map(|l| {
            l.values()
                .filter(|(r, _)| *r == relay)
                .map(|(_, c)| c.rtt().as_secs_f64() * 1000.0)
                .collect()
        })
        .unwrap_or_default();
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

/// One connection of a simulated agent, until it is lost (the error says why).
async fn sim_connection(
    conn: &quinn::Connection,
    relay: usize,
    agent: &SimAgent,
    acked: &mut bool,
    health: &Arc<Vec<u8>>,
    stats: &Stats,
    backoff: &mut Backoff,
) -> Result<()> {
    // The inventory this agent holds; acknowledged once, then only its hash is sent.
    let hash = agent.index as u64 + 1;
    let (welcome, mut send, recv) = match handshake(conn, &Hello::new(Intent::Agent, "sim")).await {
        Ok(h) => h,
        Err(e) => {
            stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
            return Err(e.into());
        }
    };
    let takes_health = welcome.capabilities.iter().any(|c| c == capability::HEALTH);
    let mut machine = AgentConn::new(Instant::now(), Timeouts::default());
    machine
        .handle_hello_reply(Instant::now(), HelloReply::Welcome(welcome))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    backoff.reset();
    stats.connects.fetch_add(1, Ordering::Relaxed);
    stats.online.fetch_add(1, Ordering::Relaxed);
    stats.on_relay[relay % MAX_RELAYS].fetch_add(1, Ordering::Relaxed);
    let _online = Online(stats, relay % MAX_RELAYS, agent.index);
    if let Ok(mut live) = stats.live.lock() {
        live.insert(agent.index, (relay % MAX_RELAYS, conn.clone()));
    }

    let status = AgentToRelay::Status(AgentStatus {
        hostname: format!("ws-{:05}", agent.index),
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
    });
    write_msg(&mut send, &status, limits::CONTROL).await?;
    write_msg(
        &mut send,
        &AgentToRelay::InventoryHash { hash },
        limits::CONTROL,
    )
    .await?;
    let mut reader = tether_net::framed::FrameReader::spawn(recv, limits::CONTROL);
    // A health report after connecting, then one a minute (the agent's default interval).
    let mut next_health = tokio::time::Instant::now();
    let (upload_tx, mut upload_rx) = tokio::sync::mpsc::channel::<bool>(1);
    // As the agent: the relay's silence is watched by counting datagrams received.
    let mut rx_seen = conn.stats().udp_rx.datagrams;
    let mut next_rx_check = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        while let Some(msg) = machine.poll_transmit(Instant::now()) {
            if matches!(msg, AgentToRelay::Heartbeat { .. }) {
                stats.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            write_msg(&mut send, &msg, limits::CONTROL).await?;
        }
        let mut wake = machine
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1));
        if machine.watches_silence() {
            wake = wake.min(next_rx_check);
        }
        tokio::select! {
            frame = reader.rx.recv() => match frame {
                Some(Ok(Some(payload))) => {
                    let msg: RelayToAgent = codec::from_payload(&payload)?;
                    match machine.handle_message(Instant::now(), msg) {
                        Some(AgentEvent::InventoryCurrent { .. }) if !*acked => {
                            *acked = true;
                            stats.uploads.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(AgentEvent::InventoryWanted) => {
                            let conn = conn.clone();
                            let tx = upload_tx.clone();
                            let index = agent.index;
                            tokio::spawn(async move {
                                let ok = upload_small(&conn, index, hash).await.is_ok();
                                let _ = tx.send(ok).await;
                            });
                        }
                        _ => {}
                    }
                }
                Some(Ok(None)) => anyhow::bail!("relay ended the control stream"),
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("reader ended"),
            },
            Some(ok) = upload_rx.recv() => {
                if ok && !*acked {
                    *acked = true;
                    stats.uploads.fetch_add(1, Ordering::Relaxed);
                }
            }
            () = tokio::time::sleep_until(next_health), if takes_health => {
                send.write_all(health).await?;
                next_health += Duration::from_secs(60);
            }
            () = tokio::time::sleep_until(wake) => {
                next_rx_check = tokio::time::Instant::now() + Duration::from_secs(1);
                let rx = conn.stats().udp_rx.datagrams;
                if rx != rx_seen {
                    rx_seen = rx;
                    machine.handle_transport_rx(Instant::now());
                }
                machine.handle_timeout(Instant::now());
            }
        }
        if let Some(c) = machine.poll_close() {
            conn.close(c.code.into(), c.reason.as_bytes());
            anyhow::bail!("{}", c.reason);
        }
    }
}

/// The first inventory of a simulated agent: a small one (its size is the inventory suite's
/// concern, not this one's).
async fn upload_small(conn: &quinn::Connection, index: usize, hash: u64) -> Result<()> {
    let (mut send, mut recv) = conn.open_bi().await?;
    write_msg(
        &mut send,
        &AgentStream::InventoryUpload {
            hash,
            inventory: Box::new(fleet_inventory(index, 50)),
        },
        limits::BULK,
    )
    .await?;
    let _ = send.finish();
    match read_msg::<UploadReply>(&mut recv, limits::CONTROL).await? {
        UploadReply::Ack { .. } => Ok(()),
        UploadReply::Rejected { message } => anyhow::bail!("upload rejected: {message}"),
    }
}

/// The `capacity --relays R` suite: R `tether-relay` processes on one PostgreSQL database (the
/// bench's private server), `per_relay` simulated agents started on each; the steady state of
/// every relay and of PostgreSQL, then the last relay killed (`kill -9`) and the time until its
/// agents are online on the others, as the agents and as a technician on the first relay see it.
pub async fn cluster(
    report: &mut Report,
    relays: usize,
    per_relay: usize,
    endpoints: usize,
    window: Duration,
) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let bin = workspace_bin("tether-relay")?;
    let url = tether_pg::database("capacity");
    let n = relays * per_relay;
    let mut datas = Vec::new();
    for i in 0..relays {
        let data = DataDir::new(tmp.path().join(format!("relay-{i}")));
        let mut cmd = std::process::Command::new(&bin);
        cmd.env("TETHER_RELAY_STORE", &url)
            .args(["init", "--name", "localhost", "--id", &format!("relay-{i}")])
            .arg("--data")
            .arg(&data.root);
        if let Some(first) = datas.first() {
            let first: &DataDir = first;
            cmd.arg("--join").arg(&first.root);
        }
        let ok = cmd.stdout(std::process::Stdio::null()).status()?.success();
        anyhow::ensure!(ok, "tether-relay init of relay-{i} failed");
        datas.push(data);
    }
    anyhow::ensure!(relays <= MAX_RELAYS, "at most {MAX_RELAYS} relays");
    let mut addrs = Vec::new();
    for _ in 0..relays {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let t = Instant::now();
    let store = tether_relay::store::StoreUrl::Postgres(url.clone());
    let (tokens, tech_token) =
        mint_tokens_on(&store, &datas[0], &list.join(","), "fleet", n).await?;
    eprintln!("  minted {n} tokens in {:.1} s", t.elapsed().as_secs_f64());
    let mut procs = Vec::new();
    for (i, data) in datas.iter().enumerate() {
        let log = tmp.path().join(format!("relay-{i}.log"));
        procs.push(Some(serve_on(&bin, data, addrs[i], &log, Some(&url))?.0));
    }
    let tech_dir = tmp.path().join("tech");
    tether_net::client::enroll(&tech_token, &tech_dir, "bench", "bench").await?;
    let tech = Credentials::load(&tech_dir)?;

    let transport = tether_net::tls::TransportOptions {
        keep_alive: None,
        idle_timeout: tether_protocol::liveness::AGENT_IDLE_TIMEOUT,
    };
    let t = Instant::now();
    let dirs: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, tok)| (tok, tmp.path().join(format!("a{i}"))))
        .collect();
    let results: Vec<_> = stream::iter(dirs)
        .map(|(tok, dir)| {
            tokio::spawn(async move {
                tether_net::client::enroll(&tok, &dir, "sim", "tether-bench-sim").await?;
                Ok::<_, anyhow::Error>(dir)
            })
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut agents = Vec::with_capacity(n);
    for (index, r) in results.into_iter().enumerate() {
        let dir = r??;
        agents.push(SimAgent {
            index,
            config: Credentials::load(&dir)?.quic_config(transport)?,
        });
    }
    eprintln!(
        "  enrolled {n} agents in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Restart the relays: they set the keep-alive interval by the fleet's size.
    for (i, p) in procs.iter_mut().enumerate() {
        if let Some(p) = p.take() {
            stop_relay(p)?;
        }
        let log = tmp.path().join(format!("relay-{i}.log"));
        *p = Some(serve_on(&bin, &datas[i], addrs[i], &log, Some(&url))?.0);
    }

    let eps: Vec<quinn::Endpoint> = (0..endpoints.max(1))
        .map(|_| quinn::Endpoint::client("127.0.0.1:0".parse().expect("address")))
        .collect::<Result<_, _>>()?;
    let health = Arc::new(health_frame().await?);
    let stats = Arc::new(Stats::default());
    let shared_addrs = Arc::new(addrs.clone());
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for a in agents {
        let ep = eps[a.index % eps.len()].clone();
        tasks.push(tokio::spawn(sim_agent(
            ep,
            shared_addrs.clone(),
            a,
            health.clone(),
            stats.clone(),
        )));
    }
    let first_s = wait_online_and_uploaded(&stats, n, t).await?;
    eprintln!("  all {n} online with their first inventory in {first_s:.1} s");
    report.add(
        format!("cluster.{relays}x{per_relay}.first_connect_s"),
        first_s,
        "s",
        None,
    );
    // The fleet as one relay sees it: the leases of the others included.
    let seen = wait_listed(&tech, n, Duration::from_secs(30)).await?;
    anyhow::ensure!(
        seen == n,
        "relay-0 lists {seen} devices online, expected {n}"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;

    // Steady state: every relay and PostgreSQL (the postmaster and its backends).
    let pids: Vec<u32> = procs
        .iter()
        .map(|p| p.as_ref().map_or(0, |p| p.0.id()))
        .collect();
    let pg = postgres_pids();
    let connects = stats.connects.load(Ordering::Relaxed);
    let before: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect();
    let pg_before: f64 = pg.iter().map(|&p| cpu_seconds(p)).sum();
    let me_before = cpu_seconds(std::process::id());
    let t = Instant::now();
    let mut rss = vec![0.0f64; relays];
    while t.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (i, &p) in pids.iter().enumerate() {
            rss[i] = rss[i].max(rss_mb(p).context("a relay exited")?);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        stats.connects.load(Ordering::Relaxed) == connects,
        "agents reconnected during the steady-state window"
    );
    for (i, &p) in pids.iter().enumerate() {
        let pct = (cpu_seconds(p) - before[i]) / secs * 100.0;
        eprintln!(
            "  relay-{i}: RSS {:.0} MB, CPU {pct:.1} % of a core",
            rss[i]
        );
        report.add(
            format!("cluster.{relays}x{per_relay}.relay{i}_rss_mb"),
            rss[i],
            "MB",
            None,
        );
        report.add(
            format!("cluster.{relays}x{per_relay}.relay{i}_cpu_pct_of_core"),
            pct,
            "%",
            None,
        );
    }
    let pg_after: f64 = pg.iter().map(|&p| cpu_seconds(p)).sum();
    let pg_pct = (pg_after - pg_before) / secs * 100.0;
    eprintln!(
        "  PostgreSQL: CPU {pg_pct:.1} % of a core ({} processes)",
        pg.len()
    );
    report.add(
        format!("cluster.{relays}x{per_relay}.postgres_cpu_pct_of_core"),
        pg_pct,
        "%",
        None,
    );
    report.add(
        format!("cluster.{relays}x{per_relay}.load_generator_cpu_pct"),
        (cpu_seconds(std::process::id()) - me_before) / secs * 100.0,
        "%",
        None,
    );

    // kill -9 of the last relay: its agents notice (the QUIC idle timeout) and move on.
    let victim = relays - 1;
    let held: Vec<usize> = (0..relays)
        .map(|i| stats.on_relay[i].load(Ordering::Relaxed))
        .collect();
    eprintln!("  agents per relay: {held:?}");
    let lost = held[victim];
    let (p50, p99, max) = rtt_ms(&stats, victim);
    eprintln!(
        "  QUIC RTT of relay-{victim}'s agents: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms"
    );
    eprintln!("cluster: kill -9 of relay-{victim} ({lost} agents)");
    report.add(
        format!("cluster.{relays}x{per_relay}.killed_relay_agents"),
        lost as f64,
        "agents",
        None,
    );
    let connects_before = stats.connects.load(Ordering::Relaxed);
    let killed = Instant::now();
    if let Some(mut p) = procs[victim].take() {
        p.0.kill()?;
        p.0.wait()?;
        std::mem::forget(p);
    }
    let back_s = wait_back(&stats, n, connects_before + lost as u64, killed).await?;
    let seen = wait_listed(&tech, n, Duration::from_secs(60)).await?;
    let listed_s = killed.elapsed().as_secs_f64();
    anyhow::ensure!(
        seen == n,
        "after the kill relay-0 lists {seen} online, expected {n}"
    );
    eprintln!("  all back in {back_s:.1} s (agents), listed online by relay-0 in {listed_s:.1} s");
    report.add(
        format!("cluster.{relays}x{per_relay}.kill9.all_back_s"),
        back_s,
        "s",
        Some("<= 30"),
    );
    report.add(
        format!("cluster.{relays}x{per_relay}.kill9.listed_online_s"),
        listed_s,
        "s",
        None,
    );
    for t in tasks {
        t.abort();
    }
    for ep in eps {
        ep.close(0u32.into(), b"bench done");
    }
    Ok(())
}

/// Polls relay-0's device list until `n` are online (the other relays' leases are read every
/// second) or `limit` passes; returns the last count.
async fn wait_listed(tech: &Credentials, n: usize, limit: Duration) -> Result<usize> {
    let t = Instant::now();
    loop {
        let seen = relay_online(tech).await?;
        if seen == n || t.elapsed() > limit {
            return Ok(seen);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The bench's PostgreSQL server: its postmaster and the backends it forked.
fn postgres_pids() -> Vec<u32> {
    let Some(master) = tether_pg::cluster_dir()
        .and_then(|d| std::fs::read_to_string(d.join("data/postmaster.pid")).ok())
        .and_then(|s| s.lines().next()?.trim().parse::<u32>().ok())
    else {
        return Vec::new();
    };
    let mut pids = vec![master];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if ppid == Some(master) {
                pids.push(pid);
            }
        }
    }
    pids
}
