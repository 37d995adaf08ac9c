//! Tether benchmarks: `cargo run --release -p tether-tests --bin bench -- [suite…] [--json]`.
//!
//! Suites:
//! * `inventory` — local collection on this machine (wall time and peak RSS of a fresh process,
//!   median of 10), relay ingest of N simulated devices through the real protocol (mutual TLS,
//!   one enrolled certificate per device), and fleet queries over them.
//!
//! * `screen` — a session through the relay to an agent on Xvfb at 1280×800 and 1920×1080, for
//!   idle, typing and scrolling (a bitmap-font xterm and one with anti-aliased DejaVu Sans Mono),
//!   window dragging, typing into a GTK editor (mousepad) and full-screen animation: bytes/s,
//!   frames/s, agent CPU, encode time, and key-to-pixels latency; then the real viewer window
//!   (`tether connect` on a second Xvfb): key-to-pixels glass to glass (`screen/glass.rs`) and its
//!   CPU with the remote screen idle and while typing into it. Each beside x11vnc + TigerVNC's
//!   viewer in the same run. Then the same
//!   session on a headless GNOME (mutter) Wayland desktop at 1280×720 (the agent through its
//!   `tether-wayland` helper, ScreenCast + PipeWire): idle, typing (through the session's own
//!   input, not xdotool) and an animation, with the compositor's CPU beside the agent's, and
//!   key-to-pixels. `screen-x11` and `screen-wayland` run one half alone.
//!
//! * `screen-link` — (root; run on its own) the X11 session at 1280×800 over emulated links in a
//!   network namespace of its own (`screen/link.rs`: 20 Mbit/s 40 ms 0.5 % loss, 1 Mbit/s 80 ms),
//!   beside the peer; then Tether at `--max-kbps 256` on the slower link while a terminal
//!   scrolls, and while one pours text.
//!
//! * `relay` — a `tether-relay serve` process: one session's bulk throughput (exec of
//!   `head -c`, `--bulk-mib N`, default 1024) beside a socat TCP splice, relay CPU per Gbit,
//!   and one-byte round trips through a shell session idle and while `--sessions N` (default
//!   100) other sessions stream 5 Mbit/s each.
//!
//! * `capacity` — `--agents N` (default 10,000) simulated agents with real certificates and the
//!   real protocol held by one `tether-relay serve` process: its RSS and CPU at steady state for
//!   1,000 and N agents, and the time until all are back after a relay restart.
//!
//! * `agent` — a real idle `tether-agent run` (no display): RSS and CPU over `--idle-seconds N`
//!   (default 60), and `tether-agent inventory --json` wall time beside
//!   `fusioninventory-agent --local`.
//!
//! Options: `--devices N` (default 10000), `--packages N` per device (default 1500),
//! `--idle-seconds N`, `--bulk-mib N`, `--sessions N`, `--agents N`, `--endpoints N`,
//! `--window-seconds N`, `--json`.
//! Everything runs on 127.0.0.1; the relay runs in this process from the relay library.

use anyhow::{Context, Result};
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tether_net::client::{Credentials, connect_with_credentials};
use tether_net::framed::{read_msg, write_msg};
use tether_net::tls::TransportOptions;
use tether_protocol::inventory::{Inventory, Package, PackageSource};
use tether_protocol::limits;
use tether_protocol::message::{AgentStream, Intent, UploadReply};
use tether_relay::config::{DataDir, RelaySettings};
use tether_relay::server::{Relay, ServeOptions};
use tether_relay::store::{Store, TokenKind};

/// The suites that can be named on the command line (none named: all of them).
const SUITES: [&str; 9] = [
    "inventory",
    "screen",
    "screen-x11",
    "screen-wayland",
    "screen-link",
    "relay",
    "capacity",
    "agent",
    "h264",
];

const USAGE: &str = "\
usage: bench [SUITE…] [OPTIONS] [--json]

Runs the named suites (all of them when none is named), printing each metric on stderr;
--json prints them all as JSON on stdout at the end.

suites:
  inventory       local inventory collection, relay ingest, fleet queries
  screen          screen sessions: screen-x11, then screen-wayland
  screen-x11      Xvfb at 1280x800 and 1920x1080, beside x11vnc + TigerVNC
  screen-wayland  headless GNOME (mutter) Wayland at 1280x720, through tether-wayland
  screen-link     1280x800 over emulated links (20 Mbit/s 40 ms 0.5% loss; 1 Mbit/s 80 ms),
                  beside x11vnc + TigerVNC, then at --max-kbps 256 (root: its own netns;
                  run on its own, not part of `screen`)
  relay           a tether-relay process: throughput, round trips, CPU
  capacity        simulated agents held by a tether-relay process
  agent           an idle tether-agent: RSS, CPU; inventory time
  h264            an H.264 frame at 1920x1080: colour conversion and encoding times

options:
  --devices N --packages N     inventory (default 10000, 1500)
  --idle-seconds N             agent (default 60)
  --bulk-mib N --sessions N    relay (default 1024, 100)
  --agents N --endpoints N --window-seconds N   capacity (default 10000, 100, 30)
  --store sqlite|postgres                      inventory: the relay's store (default sqlite;
                                               postgres: a private server started by the bench)
  --relays N                                   capacity: N relays on one PostgreSQL database
                                               (a private server), --agents split among them
  --size WxH                   screen-x11: this resolution only (default 1280x800, 1920x1080)
  --json                       the report as JSON on stdout

environment: BENCH_WORKLOADS=a,b (screen suites: only these workloads), BENCH_LINKS=a,b
  (screen-link: only the runs whose labels contain one of these), BENCH_DEBUG=1 (each
  rectangle Tether's sessions send, on stderr)
";

struct Metric {
    name: String,
    value: f64,
    unit: &'static str,
    target: Option<String>,
    peer: Option<Peer>,
    /// What the number means where its name does not say it all, or why there is none.
    note: Option<String>,
}

/// The same measurement for the program Tether is compared with, or why there is none.
pub struct Peer {
    name: String,
    value: Option<f64>,
    note: Option<String>,
}

impl Peer {
    pub fn value(name: &str, value: f64) -> Self {
        Peer {
            name: name.into(),
            value: Some(value),
            note: None,
        }
    }

    pub fn unavailable(name: &str, why: impl Into<String>) -> Self {
        Peer {
            name: name.into(),
            value: None,
            note: Some(why.into()),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        json!({"name": self.name, "value": self.value, "note": self.note})
    }
}

struct Report {
    metrics: Vec<Metric>,
}

impl Report {
    fn add(
        &mut self,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        target: Option<&str>,
    ) {
        self.push(name.into(), value, unit, target, None, None);
    }

    /// A metric with the peer's value for the same measurement.
    fn add_peer(
        &mut self,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        target: Option<&str>,
        peer: Peer,
    ) {
        self.push(name.into(), value, unit, target, Some(peer), None);
    }

    /// A metric with a note on what it measures (printed after it, and `note` in the JSON).
    fn add_noted(
        &mut self,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        target: Option<&str>,
        peer: Option<Peer>,
        note: impl Into<String>,
    ) {
        self.push(name.into(), value, unit, target, peer, Some(note.into()));
    }

    /// A measurement that could not be made: no value (NaN; `null` in the JSON), and why.
    fn unavailable(&mut self, name: impl Into<String>, why: impl Into<String>) {
        self.push(name.into(), f64::NAN, "", None, None, Some(why.into()));
    }

    fn push(
        &mut self,
        name: String,
        value: f64,
        unit: &'static str,
        target: Option<&str>,
        peer: Option<Peer>,
        note: Option<String>,
    ) {
        let peer_text = match &peer {
            Some(Peer {
                name,
                value: Some(v),
                ..
            }) => format!("   peer {name}: {v:.2} {unit}"),
            Some(Peer {
                name,
                note: Some(n),
                ..
            }) => format!("   peer {name}: {n}"),
            _ => String::new(),
        };
        eprintln!(
            "  {name:<48} {value:>12.2} {unit}{}{peer_text}{}",
            target
                .map(|t| format!("   (target {t})"))
                .unwrap_or_default(),
            note.as_ref()
                .map(|n| format!("   [{n}]"))
                .unwrap_or_default()
        );
        self.metrics.push(Metric {
            name,
            value,
            unit,
            target: target.map(str::to_string),
            peer,
            note,
        });
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Child mode: one collection in a fresh process, reporting its own time and peak RSS.
    if args.first().map(String::as_str) == Some("__collect") {
        let t = Instant::now();
        let inv = tether_agent::collect::collect(&Default::default());
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        println!("{ms} {} {}", peak_rss_kb(), inv.software.len());
        return Ok(());
    }
    // Child mode: a paced writer, the load of the relay suite (run by the agent).
    if args.first().map(String::as_str) == Some("__pace") {
        let n = |i: usize| -> Result<u64> { Ok(args.get(i).context("__pace RATE SECS")?.parse()?) };
        return relay::pace(n(1)?, n(2)?);
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return Ok(());
    }
    let json_out = args.iter().any(|a| a == "--json");
    let opt = |name: &str, default: usize| -> Result<usize> {
        match args.iter().position(|a| a == name) {
            Some(i) => args
                .get(i + 1)
                .context("missing value")?
                .parse()
                .with_context(|| format!("{name} takes a number")),
            None => Ok(default),
        }
    };
    let devices = opt("--devices", 10_000)?;
    let packages = opt("--packages", 1_500)?;
    let idle_secs = opt("--idle-seconds", 60)?;
    let bulk_mib = opt("--bulk-mib", 1024)?;
    let sessions = opt("--sessions", 100)?;
    let agents = opt("--agents", 10_000)?;
    let endpoints = opt("--endpoints", 100)?;
    let window = opt("--window-seconds", 30)?;
    let relays = opt("--relays", 1)?;
    // `--store postgres`: the inventory suite's relay on a private PostgreSQL server.
    if let Some(i) = args.iter().position(|a| a == "--store") {
        match args.get(i + 1).map(String::as_str) {
            Some("postgres") => {
                INVENTORY_ON_POSTGRES.store(true, std::sync::atomic::Ordering::Relaxed)
            }
            Some("sqlite") => {}
            _ => anyhow::bail!("--store takes sqlite or postgres"),
        }
    }
    // Suites are the words that are neither options nor option values.
    let takes_value = |o: &str| {
        matches!(
            o,
            "--devices"
                | "--packages"
                | "--idle-seconds"
                | "--bulk-mib"
                | "--sessions"
                | "--agents"
                | "--endpoints"
                | "--window-seconds"
                | "--relays"
                | "--store"
                | "--size"
        )
    };
    let suites: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|&(i, a)| !a.starts_with("--") && (i == 0 || !takes_value(&args[i - 1])))
        .map(|(_, a)| a.as_str())
        .collect();
    if let Some(unknown) = suites.iter().find(|s| !SUITES.contains(s)) {
        anyhow::bail!("no suite {unknown:?}; suites: {}", SUITES.join(", "));
    }
    let run_all = suites.is_empty();
    let mut report = Report { metrics: vec![] };
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; run with --release for meaningful numbers");
    }
    if run_all || suites.contains(&"inventory") {
        eprintln!("inventory: local collection");
        collection(&mut report)?;
        eprintln!(
            "inventory: relay ingest of {devices} devices x {packages} packages ({} store)",
            if on_postgres() {
                "PostgreSQL"
            } else {
                "SQLite"
            }
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(ingest(&mut report, devices, packages))?;
    }
    if suites.contains(&"screen-link") {
        anyhow::ensure!(
            suites.len() == 1,
            "run screen-link on its own (it runs in a network namespace of its own)"
        );
        if !screen::link::inside() {
            // Installed first: there is no network in the namespace.
            for (program, package) in [
                ("x11vnc", "x11vnc"),
                ("xtigervncviewer", "tigervnc-viewer"),
                ("mousepad", "mousepad"),
                ("iptables", "iptables"),
            ] {
                agent::ensure_tool(program, package).map_err(anyhow::Error::msg)?;
            }
            for bin in ["tether", "tether-agent"] {
                screen::workspace_bin(bin)?;
            }
            std::process::exit(screen::link::reexec()?);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(screen::screen_links(&mut report))?;
    }
    let screen_all = run_all || suites.contains(&"screen");
    if screen_all || suites.contains(&"screen-x11") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let sizes = match args.iter().position(|a| a == "--size") {
            Some(i) => {
                let v = args.get(i + 1).context("--size takes WxH")?;
                let (w, h) = v.split_once('x').context("--size takes WxH")?;
                vec![(w.parse()?, h.parse()?)]
            }
            None => vec![(1280, 800), (1920, 1080)],
        };
        for (w, h) in sizes {
            eprintln!("screen: {w}x{h} on Xvfb, through the relay");
            rt.block_on(screen(&mut report, w, h, &screen::Mode::plain(w, h)))?;
        }
    }
    if screen_all || suites.contains(&"screen-wayland") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        eprintln!(
            "screen: {}x{} on a headless GNOME (mutter) Wayland session, through the relay",
            screen::WAYLAND_SIZE.0,
            screen::WAYLAND_SIZE.1
        );
        rt.block_on(screen::screen_wayland(&mut report));
    }
    if run_all || suites.contains(&"relay") {
        eprintln!("relay: throughput, latency and CPU of a tether-relay process");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(relay::relay(&mut report, bulk_mib as u64, sessions))?;
    }
    if (run_all || suites.contains(&"capacity")) && relays <= 1 {
        eprintln!("capacity: simulated agents held by a tether-relay process");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(capacity::capacity(
            &mut report,
            agents,
            endpoints,
            Duration::from_secs(window as u64),
        ))?;
    }
    if suites.contains(&"capacity") && relays > 1 {
        let per_relay = agents / relays;
        eprintln!(
            "capacity: {relays} tether-relay processes on one PostgreSQL database, {per_relay} agents each"
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(capacity::cluster(
            &mut report,
            relays,
            per_relay,
            endpoints,
            Duration::from_secs(window as u64),
        ))?;
    }
    if run_all || suites.contains(&"agent") {
        eprintln!("agent: idle footprint of tether-agent run, inventory time");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(agent::agent(&mut report, idle_secs as u64))?;
    }
    if run_all || suites.contains(&"h264") {
        eprintln!("h264: an H.264 frame of a moving 1920x1080 picture, step by step");
        h264::h264(&mut report)?;
    }
    if json_out {
        let arr: Vec<_> = report
            .metrics
            .iter()
            .map(|m| json!({"name": m.name, "value": m.value, "unit": m.unit, "target": m.target, "peer": m.peer.as_ref().map(Peer::to_json), "note": m.note}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&arr)?);
    }
    Ok(())
}

fn collection(report: &mut Report) -> Result<()> {
    let me = std::env::current_exe()?;
    let mut times = vec![];
    let mut rss = vec![];
    let mut pkgs = 0.0;
    for _ in 0..10 {
        let out = std::process::Command::new(&me).arg("__collect").output()?;
        let s = String::from_utf8_lossy(&out.stdout);
        let v: Vec<f64> = s
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        anyhow::ensure!(v.len() == 3, "collector child said {s:?}");
        times.push(v[0]);
        rss.push(v[1] / 1024.0);
        pkgs = v[2];
    }
    report.add(
        "inventory.collect.wall_ms.median",
        median(times),
        "ms",
        Some("<= 150"),
    );
    report.add(
        "inventory.collect.peak_rss_mb.median",
        median(rss),
        "MB",
        Some("<= 20"),
    );
    report.add("inventory.collect.packages", pkgs, "packages", None);
    Ok(())
}

/// A realistic fleet: most machines share most packages, versions drift on a few.
fn fleet_inventory(device: usize, packages: usize) -> Inventory {
    let mut inv = Inventory::default();
    inv.host.hostname = format!("ws-{device:05}");
    inv.host.os_name = "Debian GNU/Linux".into();
    inv.host.os_version = Some("12".into());
    inv.host.kernel = "6.1.0-28-amd64".into();
    inv.hardware.memory.total_bytes = 16 << 30;
    inv.hardware.cpu.model = "Intel(R) Core(TM) i5-1245U".into();
    inv.collected_at_unix_ms = 1;
    inv.software = (0..packages)
        .map(|i| {
            // Every 7th machine is a patch behind on every 10th package.
            let patch = if i % 10 == 0 && device.is_multiple_of(7) {
                1
            } else {
                2
            };
            Package {
                name: format!("pkg-common-{i}"),
                version: format!("1.{}.{patch}-1+deb12u1", i % 13),
                arch: "amd64".into(),
                source: PackageSource::Dpkg,
            }
        })
        .collect();
    inv
}

async fn ingest(report: &mut Report, devices: usize, packages: usize) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (data, addr, stop_tx, relay_task) = bench_relay(tmp.path()).await?;

    let (tokens, tech_token) = mint_tokens(&data, &addr, "bench", devices).await?;

    // Enrollment: one key pair and certificate per simulated device.
    let t = Instant::now();
    let dirs: Vec<PathBuf> = (0..devices)
        .map(|i| tmp.path().join(format!("d{i}")))
        .collect();
    // Each simulated client is its own task, so clients use every worker thread.
    let results: Vec<_> = stream::iter(tokens.into_iter().zip(dirs.iter().cloned()))
        .map(|(tok, dir)| {
            tokio::spawn(async move {
                tether_net::client::enroll(&tok, &dir, "bench", "bench").await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r??;
    }
    let enroll_s = t.elapsed().as_secs_f64();
    report.add(
        "inventory.enroll.devices_per_s",
        devices as f64 / enroll_s,
        "devices/s",
        None,
    );

    // Ingest: each device connects with its certificate and uploads its inventory.
    let t = Instant::now();
    let results: Vec<_> = stream::iter(dirs.iter().cloned().enumerate())
        .map(|(i, dir)| {
            tokio::spawn(async move { upload(&dir, fleet_inventory(i, packages)).await })
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r??;
    }
    let ingest_s = t.elapsed().as_secs_f64();
    report.add(
        "inventory.ingest.devices_per_s",
        devices as f64 / ingest_s,
        "devices/s",
        None,
    );
    report.add(
        "inventory.ingest.packages_per_s",
        (devices * packages) as f64 / ingest_s,
        "rows/s",
        None,
    );
    report.add("inventory.ingest.total_s", ingest_s, "s", None);

    // Queries as a technician.
    let tech_dir = tmp.path().join("tech");
    tether_net::client::enroll(&tech_token, &tech_dir, "bench", "bench").await?;
    let creds = Credentials::load(&tech_dir)?;
    let session = tether_technician::relay::Session::open(&creds).await?;
    let mut times = vec![];
    let mut hits = 0;
    for i in 0..20 {
        let t = Instant::now();
        let rows = session
            .software(&format!("pkg-common-{}", i * 10), None)
            .await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        hits = rows.len();
    }
    report.add(
        "inventory.query.software_name_ms.median",
        median(times),
        "ms",
        Some("<= 100"),
    );
    report.add(
        "inventory.query.software_name.devices",
        hits as f64,
        "devices",
        None,
    );
    let mut times = vec![];
    for i in 0..10 {
        let t = Instant::now();
        let rows = session
            .software(
                &format!("pkg-common-{}", i * 10),
                Some(format!("1.{}.2", (i * 10) % 13)),
            )
            .await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        hits = rows.len();
    }
    report.add(
        "inventory.query.software_version_below_ms.median",
        median(times),
        "ms",
        Some("<= 100"),
    );
    report.add(
        "inventory.query.software_version_below.devices",
        hits as f64,
        "devices",
        None,
    );
    let t = Instant::now();
    let rows = session.inventory_all().await?;
    report.add(
        "inventory.query.all_ms",
        t.elapsed().as_secs_f64() * 1000.0,
        "ms",
        None,
    );
    anyhow::ensure!(
        rows.len() == devices,
        "inventory --all returned {} rows",
        rows.len()
    );
    session.close().await;
    if !on_postgres() {
        let db = std::fs::metadata(data.database())?.len() as f64 / 1e6;
        report.add("inventory.store.sqlite_mb", db, "MB", None);
    }

    let _ = stop_tx.send(());
    let _ = relay_task.await;
    Ok(())
}

/// `n` one-time agent tokens for `group` and one for a technician `bench` (role viewer), minted
/// straight into the store of `data` (as `tether-relay token` does), for a relay at `addr`.
/// `--store postgres`: the inventory suite's relay runs on PostgreSQL.
static INVENTORY_ON_POSTGRES: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
/// The PostgreSQL database of each bench relay's data directory, made on first use.
static PG_STORES: std::sync::Mutex<Vec<(PathBuf, String)>> = std::sync::Mutex::new(Vec::new());

fn on_postgres() -> bool {
    INVENTORY_ON_POSTGRES.load(std::sync::atomic::Ordering::Relaxed)
}

/// The store of the bench relay in `data`: its SQLite file, or with `--store postgres` a
/// database of the private PostgreSQL server (`tether_pg`, started on first use).
fn store_url(data: &DataDir) -> tether_relay::store::StoreUrl {
    if !on_postgres() {
        return tether_relay::store::StoreUrl::in_data_dir(data);
    }
    let mut stores = PG_STORES.lock().unwrap_or_else(|p| p.into_inner());
    let url = match stores.iter().find(|(d, _)| d == &data.root) {
        Some((_, url)) => url.clone(),
        None => {
            let url = tether_pg::database("bench");
            stores.push((data.root.clone(), url.clone()));
            url
        }
    };
    tether_relay::store::StoreUrl::Postgres(url)
}

pub async fn mint_tokens(
    data: &DataDir,
    addr: &str,
    group: &str,
    n: usize,
) -> Result<(
    Vec<tether_protocol::token::EnrollToken>,
    tether_protocol::token::EnrollToken,
)> {
    mint_tokens_on(&store_url(data), data, addr, group, n).await
}

/// [`mint_tokens`] into the store `url` (with `data`'s CA).
pub async fn mint_tokens_on(
    url: &tether_relay::store::StoreUrl,
    data: &DataDir,
    addr: &str,
    group: &str,
    n: usize,
) -> Result<(
    Vec<tether_protocol::token::EnrollToken>,
    tether_protocol::token::EnrollToken,
)> {
    let store = Store::open(url).await?;
    let mint = |kind| {
        tether_relay::tokens::create(
            &store,
            data,
            addr,
            "localhost",
            kind,
            Duration::from_secs(3600),
        )
    };
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let (t, _) = mint(TokenKind::Agent {
            group: group.into(),
        })
        .await?;
        tokens.push(t);
    }
    let (tech, _) = mint(TokenKind::Technician {
        name: "bench".into(),
        role: tether_protocol::identity::Role::Viewer,
        replace: false,
    })
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
    Ok((tokens, tech))
}

/// A relay from the relay library on 127.0.0.1 with a fresh CA in `dir`; stop it by sending on
/// the returned channel and awaiting the task.
pub async fn bench_relay(
    dir: &Path,
) -> Result<(
    DataDir,
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    let data = DataDir::new(dir.join("relay"));
    tether_relay::config::ensure_dir(&data.root)?;
    let ca = tether_relay::ca::Ca::create(&data, "bench")?;
    ca.issue_server(&data, "localhost")?;
    data.save_settings(&RelaySettings {
        name: "localhost".into(),
        public_addr: "127.0.0.1:0".into(),
        id: None,
    })?;
    // In the link suite's namespace the relay also answers on the emulated link's far end.
    let bind = if screen::link::inside() {
        "0.0.0.0:0"
    } else {
        "127.0.0.1:0"
    };
    let relay = Relay::start(
        &data,
        ServeOptions {
            store: Some(store_url(&data)),
            ..ServeOptions::new(bind.parse()?)
        },
    )
    .await?;
    let addr = format!("127.0.0.1:{}", relay.local_addr()?.port());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let relay_task = tokio::spawn(relay.run(async {
        let _ = stop_rx.await;
    }));
    Ok((data, addr, stop_tx, relay_task))
}

async fn upload(dir: &Path, inv: Inventory) -> Result<u32> {
    let creds = Credentials::load(dir)?;
    let (ep, conn, _w, _send, _recv) =
        connect_with_credentials(&creds, Intent::Agent, "bench", TransportOptions::default())
            .await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    write_msg(
        &mut send,
        &AgentStream::InventoryUpload {
            hash: 1,
            inventory: Box::new(inv),
        },
        limits::BULK,
    )
    .await?;
    let _ = send.finish();
    let reply: UploadReply = read_msg(&mut recv, limits::CONTROL).await?;
    conn.close(0u32.into(), b"done");
    drop(ep);
    match reply {
        UploadReply::Ack { changes, .. } => Ok(changes),
        UploadReply::Rejected { message } => anyhow::bail!("upload rejected: {message}"),
    }
}

mod agent;
mod capacity;
mod h264;
mod relay;
mod screen;
use screen::screen;
