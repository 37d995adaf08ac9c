//! The `agent` suite: the footprint of a real, idle `tether-agent run` (release binary, enrolled
//! to a relay on 127.0.0.1, no `DISPLAY`), and how long `tether-agent inventory --json` takes,
//! side by side with `fusioninventory-agent --local` when that can be run here.
//!
//! Idle RSS is sampled from `/proc/PID/status` (`VmRSS`) once a second; idle CPU is the change
//! of `utime + stime` in `/proc/PID/stat` over the whole window, after a settle period in which
//! the agent connects, says hello and uploads its first inventory.

use super::screen::{Bg, cpu_seconds, workspace_bin};
use super::*;

/// Resident set size of a process in MB (`VmRSS`), if it is still running.
pub fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// A relay-side set-up shared by the suites that need a running agent: tokens for one agent and
/// one technician (role support), both enrolled into `dir`.
pub struct Enrolled {
    pub agent_dir: PathBuf,
    pub tech_dir: PathBuf,
    pub agent_id: String,
}

pub async fn enroll_pair(data: &DataDir, addr: &str, dir: &Path) -> Result<Enrolled> {
    let (agent_dir, agent_id) = enroll_agent(data, addr, &dir.join("agent")).await?;
    let store = Store::open_sqlite(&data.database()).await?;
    let (tech_token, _) = tether_relay::tokens::create(
        &store,
        data,
        addr,
        "localhost",
        TokenKind::Technician {
            name: "bench".into(),
            role: tether_protocol::identity::Role::Support,
            replace: false,
        },
        Duration::from_secs(600),
    )
    .await?;
    // A technician sees no device until granted groups.
    store
        .grant_group(
            "bench",
            tether_relay::store::ALL_GROUPS,
            true,
            tether_relay::store::now_ms(),
        )
        .await?;
    store.close().await;
    let tech_dir = dir.join("tech");
    tether_net::client::enroll(&tech_token, &tech_dir, "bench", "bench").await?;
    Ok(Enrolled {
        agent_dir,
        tech_dir,
        agent_id,
    })
}

/// Enrolls one more agent (group `bench`) with its state in `agent_dir`; returns the directory
/// and the device id.
pub async fn enroll_agent(
    data: &DataDir,
    addr: &str,
    agent_dir: &Path,
) -> Result<(PathBuf, String)> {
    let store = Store::open_sqlite(&data.database()).await?;
    let (agent_token, _) = tether_relay::tokens::create(
        &store,
        data,
        addr,
        "localhost",
        TokenKind::Agent {
            group: "bench".into(),
        },
        Duration::from_secs(600),
    )
    .await?;
    store.close().await;
    tether_net::client::enroll(&agent_token, agent_dir, "bench", "bench").await?;
    let agent_id = match Credentials::load(agent_dir)?.identity {
        tether_protocol::identity::Identity::Device { id, .. } => id,
        _ => anyhow::bail!("not a device"),
    };
    Ok((agent_dir.to_path_buf(), agent_id))
}

/// Starts `tether-agent run` (release build) without a display, with its local socket at
/// `socket` so a simulated user can approve sessions.
pub fn start_agent(state: &Path, socket: &Path) -> Result<Bg> {
    use std::os::unix::process::CommandExt;
    Ok(Bg(std::process::Command::new(workspace_bin(
        "tether-agent",
    )?)
    .args(["run", "--state"])
    .arg(state)
    .arg("--socket")
    .arg(socket)
    // No display to take a desktop user from: sessions run as this one.
    .args(["--session-user", tether_tests::SESSION_USER])
    .env_remove("DISPLAY")
    // Errors only: load sessions the bench drops mid-stream would otherwise warn by the hundred.
    .env("RUST_LOG", "error")
    .process_group(0)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null())
    .spawn()?))
}

/// Waits until the relay lists `agent_id` as online.
pub async fn wait_online(
    session: &tether_technician::relay::Session,
    agent_id: &str,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let online = session
            .devices()
            .await?
            .iter()
            .any(|d| d.id == agent_id && d.online);
        if online {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "agent did not come online");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Makes sure `program` exists, installing Debian `package` with apt-get if it does not (as
/// root, as in CI). Returns why it is unavailable otherwise.
pub fn ensure_tool(program: &str, package: &str) -> std::result::Result<(), String> {
    let found = |p: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .stdout(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if found(program) {
        return Ok(());
    }
    eprintln!("  {program} missing: apt-get install -y -q {package}");
    let out = std::process::Command::new("apt-get")
        .args(["install", "-y", "-q", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("{program} not installed and apt-get cannot run: {e}"))?;
    if !out.status.success() || !found(program) {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").trim().to_string();
        return Err(format!(
            "{program} not installed and `apt-get install {package}` failed ({}): {last}",
            out.status
        ));
    }
    Ok(())
}

/// Wall time of a command in ms, or why it failed.
fn timed(cmd: &mut std::process::Command) -> Result<f64> {
    let t = Instant::now();
    let out = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(ms)
}

pub async fn agent(report: &mut Report, idle_secs: u64) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (data, addr, stop_tx, relay_task) = bench_relay(tmp.path()).await?;
    let e = enroll_pair(&data, &addr, tmp.path()).await?;
    let socket = tmp.path().join("agent.sock");
    let agent = start_agent(&e.agent_dir, &socket)?;
    let pid = agent.0.id();

    let creds = Credentials::load(&e.tech_dir)?;
    let session = tether_technician::relay::Session::open(&creds).await?;
    wait_online(&session, &e.agent_id).await?;
    session.close().await;

    // Settle: hello, first inventory upload, first health report.
    let settle = 5;
    eprintln!("  agent online; settling {settle} s, then sampling for {idle_secs} s");
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let mut rss = vec![];
    for _ in 0..idle_secs.max(1) {
        rss.push(rss_mb(pid).context("agent exited during the idle window")?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cpu = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let max_rss = rss.iter().copied().fold(0.0, f64::max);
    report.add("agent.idle.rss_mb.max", max_rss, "MB", Some("<= 15"));
    report.add("agent.idle.rss_mb.median", median(rss), "MB", None);
    report.add("agent.idle.cpu", cpu, "% of a core", Some("<= 0.5"));
    report.add("agent.idle.window_s", idle_secs as f64, "s", None);
    drop(agent);
    let _ = stop_tx.send(());
    let _ = relay_task.await;

    // Inventory: the CLI's wall time, a fresh process each time.
    let bin = workspace_bin("tether-agent")?;
    let mut times = vec![];
    for _ in 0..5 {
        times.push(timed(
            std::process::Command::new(&bin).args(["inventory", "--json"]),
        )?);
    }
    let ours = median(times);
    let peer = match ensure_tool("fusioninventory-agent", "fusioninventory-agent") {
        Err(why) => Peer::unavailable("fusioninventory-agent --local", why),
        Ok(()) => {
            let out = tmp.path().join("fusion");
            std::fs::create_dir_all(&out)?;
            // The first run warms the Perl module cache; then median of 3.
            let mut runs = vec![];
            let mut failed = None;
            for _ in 0..4 {
                match timed(
                    std::process::Command::new("fusioninventory-agent")
                        .arg("--local")
                        .arg(&out),
                ) {
                    Ok(ms) => runs.push(ms),
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            match failed {
                Some(why) => Peer::unavailable("fusioninventory-agent --local", why),
                None => Peer::value("fusioninventory-agent --local", median(runs[1..].to_vec())),
            }
        }
    };
    report.add_peer(
        "agent.inventory.wall_ms.median",
        ours,
        "ms",
        Some("<= 150"),
        peer,
    );
    Ok(())
}
