//! The `screen` suite: Tether's own screen sessions on Xvfb, then x11vnc with a TigerVNC viewer
//! (the peer, in `screen/vnc.rs`) on the same display with the same workloads.
//!
//! Viewer CPU: each side's real viewer window (`tether connect --actual-size`, and
//! `xtigervncviewer`) on a second Xvfb, both drawing through Mesa's software renderer: its
//! process's `utime + stime` from `/proc/PID/stat`, as % of one core, over [`VIEWER_SECS`] with
//! the remote screen idle, then while `xdotool type` types into the viewer window at 10 keys/s
//! (the viewer forwards the keys to the terminal on the remote screen, which echoes them).
//!
//! `screen/wayland.rs`: the same session on a headless GNOME (mutter) Wayland desktop, where
//! the agent captures and injects through its `tether-wayland` helper; [`tether_session`]
//! serves both, told how the agent reaches its desktop ([`Desktop`]) and how each workload
//! starts.

use super::*;

use tether_protocol::session::{Permissions, ToAgent, ToViewer};

/// Path of a release binary of this workspace, (re)built so it matches this source.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("bench location")?;
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "-q", "-j2", "--bin", name])
        .status()?;
    anyhow::ensure!(status.success(), "cargo build {name} failed");
    Ok(dir.join(name))
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of each of `pids`, to measure them over a window with [`cpu_percent`].
pub fn cpu_snapshot(pids: &[u32]) -> Vec<(u32, f64)> {
    pids.iter().map(|&p| (p, cpu_seconds(p))).collect()
}

/// The CPU the processes of `before` used since, in % of one core over `secs` (a process gone
/// in the meantime counts for nothing rather than for a negative number).
pub fn cpu_percent(before: &[(u32, f64)], secs: f64) -> f64 {
    let used: f64 = before
        .iter()
        .map(|&(p, c)| (cpu_seconds(p) - c).max(0.0))
        .sum();
    used / secs * 100.0
}

/// `pid`'s parent pid and command name, from `/proc/PID/stat`.
pub fn parent_and_name(pid: u32) -> Option<(u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
    Some((ppid, name))
}

/// `pid` and every process descending from it (children, theirs, …), from /proc.
pub fn with_descendants(pid: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, parent_and_name(p)?.0)))
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|&&(_, pp)| pp == parent).map(|&(p, _)| p));
        i += 1;
    }
    found
}

struct Xserver {
    display: String,
    child: std::process::Child,
}

impl Drop for Xserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn xvfb(w: u32, h: u32) -> Result<Xserver> {
    use std::io::BufRead;
    let mut child = std::process::Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-nolisten",
            "tcp",
            "-noreset",
            "-screen",
            "0",
        ])
        .arg(format!("{w}x{h}x24"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("Xvfb is needed for the screen suite (apt-get install xvfb)")?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().context("Xvfb stdout")?).read_line(&mut line)?;
    Ok(Xserver {
        display: format!(":{}", line.trim()),
        child,
    })
}

/// A background command, killed on drop with its process group when it leads one.
pub struct Bg(pub std::process::Child);
impl Drop for Bg {
    fn drop(&mut self) {
        // Fails quietly for a child that is not a group leader; `kill` below still ends it.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn x_spawn(display: &str, cmd: &str) -> Result<Bg> {
    use std::os::unix::process::CommandExt;
    Ok(Bg(std::process::Command::new("sh")
        .args(["-c", cmd])
        .process_group(0)
        .env("DISPLAY", display)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?))
}

pub fn pctl(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// How long each workload is measured, for Tether and for the peer alike.
const WORKLOAD_SECS: f64 = 5.0;
/// Key-to-pixels samples per resolution, for Tether and for the peer alike.
const LATENCY_SAMPLES: u32 = 30;
/// Title of the terminal that the typing workload and the latency samples type into.
const TERM_TITLE: &str = "bench-term";
/// How long a viewer's CPU is measured with the remote screen idle (typing takes about as long).
const VIEWER_SECS: f64 = 10.0;
/// The viewer workloads, in order (see [`viewer_run`]), with their targets for Tether's viewer.
const VIEWER_LOADS: [(&str, &str); 2] = [("idle", "<= 2"), ("typing_10cps", "<= 25")];
/// What is typed into a viewer window: 100 keys, 10 s at 10 keys/s.
const VIEWER_TYPED: &str = "the quick brown fox jumps over the lazy dog and the quick brown fox jumps over the lazy dog again ok";

/// Title of the terminal with anti-aliased text (DejaVu Sans Mono) that the `typing_aa`
/// workload types into.
const AA_TITLE: &str = "bench-aa";
/// The file the GTK text editor (mousepad) has open; its window's title starts with it.
const EDITOR_FILE: &str = "bench-editor.txt";

/// One load on the remote display, run as a shell command there (none: idle), with the
/// targets for Tether's bytes and agent CPU as ratios to the peer's.
pub struct Workload {
    pub name: &'static str,
    pub cmd: Option<String>,
    pub bytes_target: Option<&'static str>,
    pub cpu_target: Option<&'static str>,
}

/// The workloads, in order, with the animation frames read from `frames` (see
/// [`animation_frames`]). Both Tether and the peer run exactly these commands. The bitmap
/// terminal, the anti-aliased one and the editor are on the screen throughout
/// ([`desktop_windows`]); the editor comes late because its caret blinks for 10 s after typing.
fn workloads(frames: &Path) -> Vec<Workload> {
    let w = |name, cmd: Option<String>, bytes_target, cpu_target| Workload {
        name,
        cmd,
        bytes_target,
        cpu_target,
    };
    let typing = |title: &str| {
        format!(
            "xdotool search --name {title} windowfocus; xdotool type --delay 100 'the quick brown fox jumps over the lazy dog the quick brown fox'"
        )
    };
    let scrolling = scrolling_cmd;
    vec![
        w("idle", None, None, Some("<= 1")),
        w(
            "typing_10cps",
            Some(typing(TERM_TITLE)),
            Some("<= 1.0x peer"),
            Some("<= 1.5x peer"),
        ),
        w(
            "typing_aa_10cps",
            Some(typing(AA_TITLE)),
            Some("<= 0.5x peer"),
            Some("<= 1.5x peer"),
        ),
        w(
            "scrolling_30lps",
            Some(scrolling("", "100x40+300+100")),
            Some("<= 0.5x peer"),
            None,
        ),
        w(
            "scrolling_aa_30lps",
            Some(scrolling("-fa 'DejaVu Sans Mono' -fs 11", "80x30+300+100")),
            Some("<= 0.5x peer"),
            None,
        ),
        w(
            "window_drag",
            Some("xterm -geometry 60x20+0+0 -T drag-me & sleep 0.5; for i in $(seq 0 4 400); do xdotool search --name drag-me windowmove $i $((i/2)); sleep 0.016; done; wait".into()),
            Some("<= 0.5x peer"),
            None,
        ),
        w(
            "editor_typing_10cps",
            Some(typing(EDITOR_FILE)),
            Some("<= 0.5x peer"),
            Some("<= 1.5x peer"),
        ),
        w(
            "animation_fullscreen",
            Some(format!(
                "animate -geometry +0+0 -delay 3 -loop 0 {d}/a.png {d}/b.png {d}/c.png",
                d = frames.display()
            )),
            Some("<= 0.15x peer"),
            None,
        ),
    ]
}

/// A terminal (`xterm` with `font` options, at `geometry`) scrolling 30 lines a second.
fn scrolling_cmd(font: &str, geometry: &str) -> String {
    format!(
        "xterm {font} -geometry {geometry} -e sh -c 'i=0; while [ $i -lt 100000 ]; do echo line $i of a long text that scrolls past; i=$((i+1)); sleep 0.033; done'"
    )
}

/// The windows that stay on the remote `display` for Tether's run and the peer's: the bitmap
/// terminal ([`TERM_TITLE`], where keys are timed), a terminal with anti-aliased text
/// ([`AA_TITLE`]) and a GTK text editor (mousepad on [`EDITOR_FILE`]), none covering another;
/// each terminal copies what is typed into a file in `dir`.
async fn desktop_windows(display: &str, dir: &Path) -> Result<Vec<Bg>> {
    crate::agent::ensure_tool("mousepad", "mousepad").map_err(anyhow::Error::msg)?;
    let terminal = async |options: &str, title: &str| -> Result<Bg> {
        let file = dir.join(format!("{title}.txt"));
        let cmd = format!(
            "xterm {options} -T {title} -e sh -c 'cat > {}'",
            file.display()
        );
        let term = x_spawn(display, &cmd)?;
        wait_window(display, title).await?;
        Ok(term)
    };
    let term = terminal("-geometry 100x30+20+20", TERM_TITLE).await?;
    let aa = terminal(
        "-fa 'DejaVu Sans Mono' -fs 11 -geometry 60x22+660+20",
        AA_TITLE,
    )
    .await?;
    let file = dir.join(EDITOR_FILE);
    std::fs::write(&file, "")?;
    let editor = x_spawn(display, &format!("mousepad {}", file.display()))?;
    let id = wait_window(display, &format!("{EDITOR_FILE} - Mousepad")).await?;
    vnc::xdotool(display, &["windowmove", "--sync", &id, "660", "490"]).await?;
    vnc::xdotool(display, &["windowsize", "--sync", &id, "600", "300"]).await?;
    Ok(vec![term, aa, editor])
}

/// Photo-like full-screen frames for the animation workload, made in `dir` before any measuring.
fn animation_frames(dir: &Path, w: u32, h: u32) -> Result<()> {
    for (name, colors) in [
        ("a", "red-blue"),
        ("b", "green-yellow"),
        ("c", "navy-orange"),
    ] {
        let ok = std::process::Command::new("convert")
            .args(["-size", &format!("{w}x{h}"), &format!("plasma:{colors}")])
            .arg(dir.join(format!("{name}.png")))
            .status()?
            .success();
        anyhow::ensure!(ok, "convert (imagemagick) failed");
    }
    Ok(())
}

/// Waits (polling `xdotool search`) until a window whose name matches `pattern` exists on
/// `display`; returns its id.
async fn wait_window(display: &str, pattern: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = tokio::process::Command::new("xdotool")
            .args(["search", "--name", pattern])
            .env("DISPLAY", display)
            .stderr(std::process::Stdio::null())
            .output()
            .await
            .context("xdotool is needed for the screen suite")?;
        let found = String::from_utf8_lossy(&out.stdout);
        if let Some(id) = found.split_whitespace().next() {
            return Ok(id.to_string());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no window named {pattern:?} appeared on {display}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What Tether's own session measured for one workload.
struct OurWorkload {
    bytes_per_s: f64,
    fps: f64,
    /// The agent and its children (on Wayland: its `tether-wayland` helper).
    agent_cpu: f64,
    /// The desktop's own processes ([`Desktop::compositor`]; NaN where none are measured).
    compositor_cpu: f64,
    encode_ms_p50: f64,
}

/// What Tether's own session measured at one resolution.
struct Ours {
    workloads: Vec<OurWorkload>,
    latency_ms: Vec<f64>,
    /// The real viewer window (`tether connect`); none on Wayland.
    viewer: Option<ViewerRun>,
}

/// What a real viewer window measured: see [`viewer_run`].
pub struct ViewerRun {
    /// Its CPU (% of one core) for each of [`VIEWER_LOADS`].
    pub cpu: Vec<f64>,
    /// Glass-to-glass key-to-pixels samples, ms ([`glass::key_to_pixels`]).
    pub glass_ms: Vec<f64>,
}

/// A real viewer: its process `pid` with its window `window` on `display`, showing `remote` at
/// 1:1. First [`LATENCY_SAMPLES`] keys glass to glass (pressed on `display`, watched for there);
/// then, unless the remote screen is `busy` with a workload, its CPU for each of [`VIEWER_LOADS`]: nothing happens for [`VIEWER_SECS`]; then
/// `xdotool type` types [`VIEWER_TYPED`] into the window at 10 keys/s, which the viewer forwards
/// to the terminal on the remote display, measured until it is done.
pub async fn viewer_run(
    pid: u32,
    display: &str,
    window: &str,
    remote: &str,
    load: Option<&mut dyn FnMut() -> Result<Box<dyn std::any::Any>>>,
) -> Result<ViewerRun> {
    let cpu_over =
        |cpu0: f64, t0: Instant| (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    // The keys go to the viewer on its display, and on to the terminal on the remote one.
    let term = wait_window(remote, TERM_TITLE).await?;
    vnc::xdotool(remote, &["windowfocus", &term]).await?;
    // A window just made may not be mapped yet (focusing it fails until it is).
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Err(e) = vnc::xdotool(display, &["windowfocus", "--sync", window]).await {
        anyhow::ensure!(Instant::now() < deadline, "{e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the screen and the viewer settle (the agent's lossless refresh, the first draws).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (here, there) = (display.to_string(), remote.to_string());
    let area = tokio::task::spawn_blocking(move || glass::locate(&here, &there, &term)).await??;
    // Found on a still screen; then the workload that keeps it busy, if any.
    let busy = load.is_some();
    let _load = load.map(|start| start()).transpose()?;
    if busy {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let here = display.to_string();
    let glass_ms = tokio::task::spawn_blocking(move || {
        glass::key_to_pixels(&here, area, LATENCY_SAMPLES, busy)
    })
    .await??;
    if busy {
        return Ok(ViewerRun {
            cpu: vec![],
            glass_ms,
        });
    }
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(VIEWER_SECS)).await;
    let idle = cpu_over(cpu0, t0);
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    // xdotool waits half the delay after each key down and half after its up: 200 ms a key.
    vnc::xdotool(display, &["type", "--delay", "200", VIEWER_TYPED]).await?;
    let typing = cpu_over(cpu0, t0);
    eprintln!(
        "    viewer: typed {} keys in {:.1} s",
        VIEWER_TYPED.len(),
        t0.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(ViewerRun {
        cpu: vec![idle, typing],
        glass_ms,
    })
}

/// Tether's own viewer, `tether connect --actual-size` as the technician `tech_dir`, on an Xvfb
/// of its own with room for the whole `w`×`h` remote screen: its [`viewer_run`].
async fn tether_viewer(
    remote: &str,
    (w, h): (u32, u32),
    tech_dir: &Path,
    device: &str,
    opts: &SessionOpts,
    load: Option<&mut dyn FnMut() -> Result<Box<dyn std::any::Any>>>,
) -> Result<ViewerRun> {
    use std::os::unix::process::CommandExt;
    let local = xvfb(w + 100, h + 100)?;
    let cap: Vec<String> = opts
        .cap_kbps
        .map(|k| vec!["--max-kbps".to_string(), k.to_string()])
        .unwrap_or_default();
    let viewer = Bg(std::process::Command::new(workspace_bin("tether")?)
        .arg("--config")
        .arg(tech_dir)
        .args(["connect", device, "--actual-size", "--reason", "benchmark"])
        .args(&cap)
        .process_group(0)
        .env("DISPLAY", &local.display)
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?);
    let window = wait_window(&local.display, "^Tether: ").await?;
    let run = viewer_run(viewer.0.id(), &local.display, &window, remote, load).await;
    drop(viewer);
    run
}

/// How one run of the X11 screen suite differs from the plain one.
pub struct Mode {
    /// Metric names start `screen.{label}.`; the resolution where it is plain.
    label: String,
    /// The workloads' names (None: all of [`workloads`]); a name may also be
    /// [`CAPPED_SCROLL`], which only capped runs use.
    only: Option<Vec<&'static str>>,
    /// Targets of the glass-to-glass p50 and p95 (absolute on emulated links).
    glass_targets: [String; 2],
    /// The bandwidth cap Tether's sessions ask for (`--max-kbps`); the peer has none and is
    /// not run.
    cap_kbps: Option<u32>,
    /// Kept running on the remote screen while keys go through the real viewers (their CPU is
    /// then not measured).
    viewer_load: Option<&'static str>,
    /// Target of the headless key-to-pixels p50.
    key_target: String,
}

impl Mode {
    /// The plain run at `w`×`h`.
    pub fn plain(w: u32, h: u32) -> Self {
        Self {
            label: format!("{w}x{h}"),
            only: None,
            glass_targets: ["<= 0.8x peer".into(), "<= peer".into()],
            cap_kbps: None,
            viewer_load: None,
            key_target: "<= 20 and <= peer".into(),
        }
    }
}

/// Workloads for capped runs, beside the timed terminal, not over it: the scrolling terminal,
/// and a directory listing pouring through a terminal as fast as it draws (far more than the
/// cap would carry as pixels).
const CAPPED_SCROLL: &str = "scrolling_30lps_beside";
const CAPPED_POUR: &str = "pouring_beside";

pub async fn screen(report: &mut Report, w: u32, h: u32, mode: &Mode) -> Result<()> {
    let x = xvfb(w, h)?;
    let tmp = tempfile::tempdir()?;
    animation_frames(tmp.path(), w, h)?;
    let mut loads = workloads(tmp.path());
    loads.push(Workload {
        name: CAPPED_SCROLL,
        cmd: Some(scrolling_cmd("", "80x30+660+20")),
        bytes_target: mode.cap_kbps.map(|_| "<= cap"),
        cpu_target: None,
    });
    loads.push(Workload {
        name: CAPPED_POUR,
        cmd: Some(
            "xterm -geometry 80x30+660+20 -e sh -c 'while :; do ls -l /usr/bin; done'".into(),
        ),
        bytes_target: mode.cap_kbps.map(|_| "<= cap"),
        cpu_target: None,
    });
    match &mode.only {
        Some(names) => loads.retain(|l| names.contains(&l.name)),
        None => loads.retain(|l| l.name != CAPPED_SCROLL && l.name != CAPPED_POUR),
    }
    // A quick look at a few workloads: BENCH_WORKLOADS=window_drag,typing_10cps.
    if let Ok(names) = std::env::var("BENCH_WORKLOADS") {
        loads.retain(|l| names.split(',').any(|n| n == l.name));
    }
    // The terminals and the editor stay for both Tether and the peer.
    let _windows = desktop_windows(&x.display, tmp.path()).await?;

    let mut start = |i: usize, _: &Tx| -> Result<Box<dyn std::any::Any>> {
        Ok(match &loads[i].cmd {
            Some(c) => Box::new(x_spawn(&x.display, c)?),
            None => Box::new(()),
        })
    };
    let opts = SessionOpts {
        viewer: Some((w, h)),
        cap_kbps: mode.cap_kbps,
        viewer_load: mode
            .viewer_load
            .and_then(|n| loads.iter().position(|l| l.name == n)),
    };
    let ours = tether_session(
        Desktop::X11(&x.display),
        tmp.path(),
        loads.len(),
        &mut start,
        &opts,
    )
    .await?;
    let peer = if mode.cap_kbps.is_some() {
        Err("x11vnc has no bandwidth cap".to_string())
    } else {
        eprintln!("  peer: {} on the same display", vnc::PEER);
        let busy = opts.viewer_load;
        vnc::measure(
            &x.display,
            (w, h),
            &loads,
            WORKLOAD_SECS,
            LATENCY_SAMPLES,
            busy,
        )
        .await
        .map_err(|e| format!("{e:#}"))
    };
    if let Err(why) = &peer {
        eprintln!("  peer unavailable: {why}");
    }
    report_screen(report, mode, &loads, ours, peer);
    Ok(())
}

/// `mode` at `w`×`h` across the emulated link `l`; what the link did is printed.
async fn across(
    report: &mut Report,
    l: &'static link::Link,
    (w, h): (u32, u32),
    mode: &Mode,
) -> Result<()> {
    let emulator = link::Emulator::start(l)?;
    let run = screen(report, w, h, mode).await;
    let stats = emulator.finish()?;
    eprintln!(
        "  link: {} packets, {} lost at random, {} dropped by a full queue",
        stats.packets, stats.lost, stats.tail_dropped
    );
    run
}

/// The `screen-link` suite (in its own network namespace, see `screen/link.rs`): at 1280×800,
/// each emulated link of [`link::LINKS`] for typing, scrolling and a window drag, Tether beside
/// the peer; on the slower link, keys through the real viewers while text pours (no cap asked:
/// Tether's comes from the acknowledgements), beside the peer; then Tether alone at
/// `--max-kbps 256` there while a terminal scrolls, and while text pours.
pub async fn screen_links(report: &mut Report) -> Result<()> {
    let (w, h) = (1280, 800);
    link::loopback_up()?;
    // A quick look at some runs: BENCH_LINKS=link_1mbit_80ms.,cap256 (parts of their labels).
    let wanted = |label: &str| {
        std::env::var("BENCH_LINKS").map_or(true, |v| v.split(',').any(|part| label.contains(part)))
    };
    for l in link::LINKS
        .iter()
        .filter(|l| wanted(&format!("link_{}.", l.name)))
    {
        eprintln!(
            "screen: {w}x{h} over an emulated link: {} kbit/s, {} ms round trip, {}% loss",
            l.kbps,
            l.rtt_ms,
            l.loss * 100.0
        );
        let ceiling = format!("<= {}", l.rtt_ms + 20);
        let mode = Mode {
            label: format!("link_{}.{w}x{h}", l.name),
            only: Some(vec![
                "typing_10cps",
                "typing_aa_10cps",
                "scrolling_30lps",
                "window_drag",
            ]),
            glass_targets: [ceiling.clone(), "<= peer".into()],
            cap_kbps: None,
            viewer_load: None,
            key_target: ceiling,
        };
        across(report, l, (w, h), &mode).await?;
    }
    let l = &link::LINKS[1];
    // Text pouring over the slow link with no cap from anyone: what the link sets (Tether
    // measures it from the acknowledgements), beside the peer.
    eprintln!(
        "screen: {w}x{h} over the {} kbit/s, {} ms link, no cap asked: {CAPPED_POUR}",
        l.kbps, l.rtt_ms
    );
    let label = format!("link_{}_{CAPPED_POUR}.{w}x{h}", l.name);
    let mode = Mode {
        label: label.clone(),
        only: Some(vec![CAPPED_POUR]),
        glass_targets: [format!("<= {}", l.rtt_ms + 20), "<= peer".into()],
        cap_kbps: None,
        viewer_load: Some(CAPPED_POUR),
        key_target: "<= peer".into(),
    };
    if wanted(&label) {
        across(report, l, (w, h), &mode).await?;
    }
    for load in [CAPPED_SCROLL, CAPPED_POUR] {
        let label = format!("cap256_link_{}_{load}.{w}x{h}", l.name);
        if !wanted(&label) {
            continue;
        }
        eprintln!(
            "screen: {w}x{h} at --max-kbps 256 over the {} kbit/s, {} ms link: {load}",
            l.kbps, l.rtt_ms
        );
        let mode = Mode {
            label,
            only: Some(vec![load]),
            glass_targets: ["<= 300".into(), "<= 300".into()],
            cap_kbps: Some(256),
            viewer_load: Some(load),
            key_target: "<= 300".into(),
        };
        across(report, l, (w, h), &mode).await?;
    }
    Ok(())
}

/// Puts Tether's numbers and the peer's side by side in the report.
fn report_screen(
    report: &mut Report,
    mode: &Mode,
    loads: &[Workload],
    mut ours: Ours,
    peer: std::result::Result<vnc::PeerRun, String>,
) {
    let res = &mode.label;
    // The peer's value from its run, or why there is none.
    let peer_of = |value: &dyn Fn(&vnc::PeerRun) -> Option<f64>| match &peer {
        Ok(run) => match value(run) {
            Some(v) => Peer::value(vnc::PEER, v),
            None => Peer::unavailable(vnc::PEER, "no sample"),
        },
        Err(why) => Peer::unavailable(vnc::PEER, why.clone()),
    };
    for (i, (load, m)) in loads.iter().zip(&ours.workloads).enumerate() {
        let name = load.name;
        report.add_peer(
            format!("screen.{res}.{name}.bytes_per_s"),
            m.bytes_per_s,
            "B/s",
            load.bytes_target,
            peer_of(&|p| p.workloads.get(i).map(|w| w.bytes_per_s)),
        );
        report.add(format!("screen.{res}.{name}.fps"), m.fps, "fps", None);
        report.add_peer(
            format!("screen.{res}.{name}.agent_cpu"),
            m.agent_cpu,
            "% of a core",
            load.cpu_target,
            peer_of(&|p| p.workloads.get(i).map(|w| w.server_cpu)),
        );
        report.add(
            format!("screen.{res}.{name}.encode_ms_p50"),
            m.encode_ms_p50,
            "ms",
            Some("<= 5 at 1080p"),
        );
    }
    let viewer_cpu = ours.viewer.as_ref().is_some_and(|v| !v.cpu.is_empty());
    for (i, (name, target)) in VIEWER_LOADS.iter().enumerate().filter(|_| viewer_cpu) {
        report.add_peer(
            format!("screen.{res}.viewer_{name}.viewer_cpu"),
            ours.viewer
                .as_ref()
                .and_then(|v| v.cpu.get(i).copied())
                .unwrap_or(f64::NAN),
            "% of a core",
            Some(target),
            peer_of(&|p| p.viewer.cpu.get(i).copied()),
        );
    }
    // Percentiles of the peer's samples (None without any).
    let peer_pctl = |p: f64| {
        move |run: &vnc::PeerRun| {
            let mut v = run.latency_ms.clone();
            (!v.is_empty()).then(|| pctl(&mut v, p))
        }
    };
    // None where the screen was kept busy (then only the real viewer's samples say anything).
    let headless = !ours.latency_ms.is_empty();
    if headless {
        report.add_peer(
            format!("screen.{res}.key_to_pixels_ms_p50"),
            pctl(&mut ours.latency_ms, 0.5),
            "ms",
            Some(&mode.key_target),
            peer_of(&peer_pctl(0.5)),
        );
        report.add_peer(
            format!("screen.{res}.key_to_pixels_ms_p95"),
            pctl(&mut ours.latency_ms, 0.95),
            "ms",
            Some("<= peer"),
            peer_of(&peer_pctl(0.95)),
        );
    }
    // Glass to glass through each side's real viewer window.
    let mut glass = ours.viewer.map(|v| v.glass_ms).unwrap_or_default();
    for (p, target) in [0.5, 0.95].into_iter().zip(&mode.glass_targets) {
        report.add_peer(
            format!("screen.{res}.key_to_pixels_glass_ms_p{:.0}", p * 100.0),
            pctl(&mut glass, p),
            "ms",
            Some(target),
            peer_of(&|run: &vnc::PeerRun| {
                let mut v = run.viewer.glass_ms.clone();
                (!v.is_empty()).then(|| pctl(&mut v, p))
            }),
        );
    }
}

/// The headless viewer's state: what compact frames leave out and the rectangles' decoder.
#[derive(Default)]
struct Headless {
    deltas: tether_protocol::session::Deltas,
    rects: tether_technician::remote::RectDecoder,
}

impl Headless {
    /// A frame as the viewer reads it, its rectangles decoded (as the real viewer would, and
    /// so that the palette memory follows the stream); other messages as they are.
    fn read(&mut self, msg: ToViewer) -> ToViewer {
        let msg = match msg {
            ToViewer::Delta(d) => match self.deltas.expand(d) {
                Ok(f) => ToViewer::Frame(f),
                Err(e) => ToViewer::Error {
                    message: e.to_string(),
                },
            },
            m => m,
        };
        if let ToViewer::Frame(f) = &msg {
            for r in &f.rects {
                let _ = self.rects.decode(r);
            }
        }
        msg
    }
}

/// Drains frames for `secs`, acknowledging them; returns (bytes, frames, encode times ms).
async fn drain_frames(
    rx: &mut tokio::sync::mpsc::Receiver<ToViewer>,
    tx: &tokio::sync::mpsc::UnboundedSender<ToAgent>,
    viewer: &mut Headless,
    secs: f64,
) -> (u64, u64, Vec<f64>) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let (mut bytes, mut frames, mut enc) = (0u64, 0u64, vec![]);
    while let Ok(Some(msg)) = tokio::time::timeout_at(end.into(), rx.recv()).await {
        // Bytes as they cross the relay: the encoded message, its frame header, and the TLS
        // record overhead (QUIC/UDP headers not counted, like TCP/IP headers for VNC).
        bytes += tether_protocol::codec::to_bytes(&msg)
            .map(|b| b.len() as u64)
            .unwrap_or(0)
            + 4
            + 22;
        if let ToViewer::Frame(f) = viewer.read(msg) {
            if std::env::var_os("BENCH_DEBUG").is_some() {
                for r in &f.rects {
                    eprintln!(
                        "    frame {} {:?} {:?} {} B",
                        f.seq,
                        r.rect,
                        r.compression,
                        r.data.len()
                    );
                }
            }
            frames += 1;
            enc.push(f64::from(f.encode_us) / 1000.0);
            let _ = tx.send(ToAgent::FrameAck { seq: f.seq });
        }
    }
    (bytes, frames, enc)
}

/// What a [`tether_session`] does beside its workloads.
pub struct SessionOpts {
    /// The remote screen's size, for the real viewer's window (X11 only; None: no viewer).
    pub viewer: Option<(u32, u32)>,
    /// The bandwidth cap the session asks for, as `tether connect --max-kbps` does.
    pub cap_kbps: Option<u32>,
    /// The workload kept running while the real viewer is measured (then without its CPU).
    pub viewer_load: Option<usize>,
}

/// The technician's channel to the agent in [`tether_session`].
type Tx = tokio::sync::mpsc::UnboundedSender<ToAgent>;

/// Starts the `i`-th workload on the desktop (the session's channel at hand, to send input
/// through it); the workload stops when the returned guard is dropped.
type StartLoad<'a> = dyn FnMut(usize, &Tx) -> Result<Box<dyn std::any::Any>> + 'a;

/// The desktop the agent under test serves, and how it is started on it.
pub enum Desktop<'a> {
    /// An X display: `DISPLAY` set, `--desktop x11`.
    X11(&'a str),
    /// A Wayland session: its environment (`WAYLAND_DISPLAY`, `XDG_RUNTIME_DIR`,
    /// `DBUS_SESSION_BUS_ADDRESS`; no `DISPLAY`) and `--desktop wayland --desktop-user UID`;
    /// the agent starts `tether-wayland` (beside it) as that user.
    Wayland(&'a tether_tests::wayland::WaylandSession),
}

impl Desktop<'_> {
    /// The compositor's processes whose CPU is measured beside the agent's (on Wayland: mutter,
    /// pipewire and wireplumber of the session; on X11 none).
    fn compositor(&self) -> Vec<u32> {
        match self {
            Desktop::X11(_) => vec![],
            Desktop::Wayland(session) => session
                .processes()
                .into_iter()
                .filter(|&p| {
                    parent_and_name(p).is_some_and(|(_, n)| {
                        matches!(n.as_str(), "mutter" | "pipewire" | "wireplumber")
                    })
                })
                .collect(),
        }
    }
}

/// Tether's own session on `desktop`: a relay in this process, a real `tether-agent run` on
/// the desktop, and this process as the technician. `loads` workloads, each started by
/// `start_load` and measured for [`WORKLOAD_SECS`]; then key-to-pixels; then, with `viewer`
/// (the remote screen's size, X11 only), the real viewer window's CPU.
async fn tether_session(
    desktop: Desktop<'_>,
    tmp: &Path,
    loads: usize,
    start_load: &mut StartLoad<'_>,
    opts: &SessionOpts,
) -> Result<Ours> {
    let (data, addr, stop_tx, relay_task) = bench_relay(tmp).await?;
    // The agent reaches the relay across the emulated link, when there is one.
    let port = addr.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
    let agent_addr = format!("{}:{port}", link::far_host());
    let store = Store::open_sqlite(&data.database()).await?;
    let mk = |kind, addr| {
        tether_relay::tokens::create(
            &store,
            &data,
            addr,
            "localhost",
            kind,
            Duration::from_secs(600),
        )
    };
    let (agent_token, _) = mk(
        TokenKind::Agent {
            group: "bench".into(),
        },
        &agent_addr,
    )
    .await?;
    let (tech_token, _) = mk(
        TokenKind::Technician {
            name: "bench".into(),
            role: tether_protocol::identity::Role::Support,
            replace: false,
        },
        &addr,
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
    let agent_dir = tmp.join("agent");
    tether_net::client::enroll(&agent_token, &agent_dir, "bench", "bench").await?;
    let tech_dir = tmp.join("tech");
    tether_net::client::enroll(&tech_token, &tech_dir, "bench", "bench").await?;
    let agent_id = match Credentials::load(&agent_dir)?.identity {
        tether_protocol::identity::Identity::Device { id, .. } => id,
        _ => anyhow::bail!("not a device"),
    };
    let socket = tmp.join("agent.sock");
    let mut cmd = std::process::Command::new(workspace_bin("tether-agent")?);
    cmd.args(["run", "--state"])
        .arg(&agent_dir)
        .arg("--socket")
        .arg(&socket)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null());
    match &desktop {
        Desktop::X11(display) => {
            cmd.env("DISPLAY", display).args(["--desktop", "x11"]);
        }
        Desktop::Wayland(session) => {
            // The agent starts the helper from beside its own executable.
            workspace_bin("tether-wayland")?;
            cmd.envs(
                session
                    .env
                    .iter()
                    .filter(|(k, _)| k != "GDK_BACKEND" && k != "SWAYSOCK")
                    .map(|(k, v)| (k, v)),
            )
            .args(["--desktop", "wayland", "--desktop-user"])
            .arg(session.uid.to_string());
        }
    }
    let agent = Bg(cmd.spawn()?);
    let agent_pid = agent.0.id();

    let creds = Credentials::load(&tech_dir)?;
    let session = tether_technician::relay::Session::open(&creds).await?;
    // Wait for the agent to be online.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let online = session
            .devices()
            .await?
            .iter()
            .any(|d| d.id == agent_id && d.online);
        if online {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "agent did not come online");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The user at the desk approves every request.
    let _user = tether_tests::auto_approve(&socket);
    let remote = session
        .open_remote(&creds, &agent_id, Permissions::CONTROL, "benchmark", "")
        .await?;
    let (tx, mut rx) = remote.into_duplex();
    let mut viewer = Headless::default();
    // As `tether connect` does.
    let mut features = vec![
        tether_protocol::session::stream_feature::PALETTE.to_string(),
        tether_protocol::session::stream_feature::COPY_RECT.to_string(),
        tether_protocol::session::stream_feature::MOVE_RECT.to_string(),
        tether_protocol::session::stream_feature::RAW_PALETTE.to_string(),
        tether_protocol::session::stream_feature::COMPACT.to_string(),
    ];
    features.extend(opts.cap_kbps.map(tether_protocol::pace::announce));
    tx.send(ToAgent::StreamOptions(features))?;
    tx.send(ToAgent::StartStream {
        display: 0,
        max_in_flight: 2,
        h264: true,
    })?;
    if let Desktop::X11(_) = desktop {
        // Point into the terminal so it has the keyboard. (On Wayland the test client's entry
        // has it.)
        tx.send(ToAgent::Input(
            tether_protocol::session::InputEvent::MouseMove { x: 200, y: 200 },
        ))?;
    }
    // Settle: the first full frame.
    drain_frames(&mut rx, &tx, &mut viewer, 1.0).await;
    // The agent's helpers (on Wayland `tether-wayland`) run once the session has started.
    let agent_pids = with_descendants(agent_pid);
    if agent_pids.len() > 1 {
        let names: Vec<String> = agent_pids[1..]
            .iter()
            .filter_map(|&p| Some(format!("{} ({p})", parent_and_name(p)?.1)))
            .collect();
        eprintln!(
            "  agent CPU: tether-agent ({agent_pid}) and {}",
            names.join(", ")
        );
    }
    let compositor_pids = desktop.compositor();
    if !compositor_pids.is_empty() {
        let names: Vec<String> = compositor_pids
            .iter()
            .filter_map(|&p| Some(format!("{} ({p})", parent_and_name(p)?.1)))
            .collect();
        eprintln!("  compositor CPU: {}", names.join(", "));
    }

    let mut workloads = vec![];
    for i in 0..loads {
        let _load = start_load(i, &tx)?;
        let secs = WORKLOAD_SECS;
        let agent0 = cpu_snapshot(&agent_pids);
        let compositor0 = cpu_snapshot(&compositor_pids);
        let (bytes, frames, mut enc) = drain_frames(&mut rx, &tx, &mut viewer, secs).await;
        workloads.push(OurWorkload {
            bytes_per_s: bytes as f64 / secs,
            fps: frames as f64 / secs,
            agent_cpu: cpu_percent(&agent0, secs),
            compositor_cpu: if compositor_pids.is_empty() {
                f64::NAN
            } else {
                cpu_percent(&compositor0, secs)
            },
            encode_ms_p50: pctl(&mut enc, 0.5),
        });
        drop(_load);
        // Let the screen settle before the next workload.
        drain_frames(&mut rx, &tx, &mut viewer, 1.0).await;
    }

    // Key to pixels: from the moment this technician side sends a key until the first frame with
    // the changed pixels has arrived here and been decoded. Not included: drawing it on a real
    // screen (there is none here), like the peer's number, which ends when its bytes arrive.
    if let Desktop::X11(display) = desktop {
        // The keys go to the bitmap terminal (a workload may have focused another window).
        let term = wait_window(display, TERM_TITLE).await?;
        vnc::xdotool(display, &["windowfocus", &term]).await?;
    }
    let mut latency_ms = vec![];
    // With the screen kept busy the next frame says nothing about a key: only the real
    // viewer's glass-to-glass samples are taken then.
    let samples = if opts.viewer_load.is_some() {
        0
    } else {
        LATENCY_SAMPLES
    };
    for i in 0..samples {
        drain_frames(&mut rx, &tx, &mut viewer, 0.1).await;
        let c = (b'a' + (i % 26) as u8) as char;
        let t = Instant::now();
        tx.send(ToAgent::Input(tether_protocol::session::InputEvent::Text(
            c.to_string(),
        )))?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            let ToViewer::Frame(f) = viewer.read(msg) else {
                continue;
            };
            let _ = tx.send(ToAgent::FrameAck { seq: f.seq });
            latency_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            break;
        }
    }

    // This session ends (the agent's goodbye closes the channel); then the real viewer.
    let _ = tx.send(ToAgent::Bye);
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while rx.recv().await.is_some() {}
    })
    .await;
    let viewer = match (opts.viewer, &desktop) {
        (Some((w, h)), Desktop::X11(display)) => {
            eprintln!("  viewer: tether connect on a second Xvfb");
            let mut load = opts.viewer_load.map(|i| {
                let tx = tx.clone();
                move || start_load(i, &tx)
            });
            let load = load
                .as_mut()
                .map(|f| f as &mut dyn FnMut() -> Result<Box<dyn std::any::Any>>);
            Some(tether_viewer(display, (w, h), &tech_dir, &agent_id, opts, load).await?)
        }
        _ => None,
    };

    drop(agent);
    session.close().await;
    let _ = stop_tx.send(());
    let _ = relay_task.await;
    Ok(Ours {
        workloads,
        latency_ms,
        viewer,
    })
}

mod glass;
pub mod link;
mod vnc;
mod wayland;
pub use wayland::{WAYLAND_SIZE, screen_wayland};
