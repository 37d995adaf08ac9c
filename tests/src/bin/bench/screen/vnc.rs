//! The peer of the `screen` suite: x11vnc serving the same Xvfb display that Tether's agent
//! served, watched by a real TigerVNC viewer, running the same workloads for the same time.
//!
//! The set-up, per resolution:
//! * `x11vnc -display :N -listen 127.0.0.1 -rfbport P -nopw -forever -shared` on the remote
//!   display (`P` a free port; on an emulated link it listens on the link's far end,
//!   127.0.0.2, see `link.rs`); everything else is x11vnc's default.
//! * `xtigervncviewer -PreferredEncoding=Tight 127.0.0.1::Q` on a second, larger Xvfb, so its
//!   window shows the whole remote screen at 1:1 (checked). Tight is TigerVNC's default anyway;
//!   it is named so the encoding does not depend on the viewer's configuration. Its automatic
//!   quality selection (on by default) stays on, as a user would have it.
//! * `Q` is a counting TCP proxy in this process (127.0.0.1 only) that forwards to x11vnc.
//!
//! Bytes: the server→client payload bytes the proxy forwards, i.e. what the technician
//! downloads: every RFB message including its headers, no TCP/IP headers. This compares with
//! Tether's count of message bytes plus framing and TLS record overhead without QUIC/UDP/IP
//! headers. VNC's bytes have no encryption overhead at all (plain RFB on loopback).
//!
//! CPU: x11vnc's `utime + stime` from `/proc/PID/stat` over each workload window, like the agent;
//! the viewer's (`xtigervncviewer`'s) the same way for the viewer workloads (`viewer_run`), after glass-to-glass key-to-pixels
//! through it (`glass.rs`).
//!
//! Key to pixels: `xdotool key` on the viewer's display, into the focused viewer window, so the
//! real viewer sends an RFB KeyEvent. The proxy parses the client→server stream's message
//! boundaries and timestamps the read that carries the key-down KeyEvent (the moment the
//! technician side has sent the key). The end is the arrival at the proxy of the first
//! FramebufferUpdate that starts after it, up to its last read (reads that follow each other
//! within [`BURST_GAP`]; a typed character's update is one or two reads of under 100 bytes).
//! Before each key the stream has been quiet for [`QUIET`], so that update starts at a message
//! boundary and is the server's answer to the key (`BENCH_DEBUG=1` prints each sample's start,
//! end and size). Included: the proxy forwarding the key (microseconds), x11vnc injecting it, the
//! xterm echoing it, x11vnc noticing the change (its polling), encoding and sending it. Not
//! included: the viewer turning X input into the KeyEvent, the viewer decoding and drawing the
//! update. Tether's number likewise starts when the technician side sends the key, but ends only
//! when its frame has arrived *and been decoded*, so the comparison leans towards the peer.

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the peer is named in the report.
pub const PEER: &str = "x11vnc + TigerVNC viewer";
/// The viewer's program, from Debian's `tigervnc-viewer`.
const VIEWER: &str = "xtigervncviewer";
/// Reads of one update closer together than this belong to it.
const BURST_GAP: Duration = Duration::from_millis(5);
/// Silence on the server→client stream before each latency sample.
const QUIET: Duration = Duration::from_millis(200);

/// What the peer measured for one workload.
pub struct PeerWorkload {
    /// Server→client bytes per second (what the viewer downloads).
    pub bytes_per_s: f64,
    /// x11vnc's CPU, % of a core.
    pub server_cpu: f64,
}

/// What the peer measured at one resolution, workloads in the order they were given.
pub struct PeerRun {
    pub workloads: Vec<PeerWorkload>,
    pub latency_ms: Vec<f64>,
    /// The real viewer window (`xtigervncviewer`): glass to glass, and its CPU.
    pub viewer: ViewerRun,
}

/// Runs the peer on `display` (`w`×`h`, the typing terminal already on it): the workloads for
/// `secs` each, then `samples` key-to-pixels samples, then its viewer (with `viewer_load`, the
/// index of a workload kept running meanwhile: then no headless samples). Fails, with the
/// reason, when the peer cannot be installed or run.
pub async fn measure(
    display: &str,
    (w, h): (u32, u32),
    loads: &[Workload],
    secs: f64,
    samples: u32,
    viewer_load: Option<usize>,
) -> Result<PeerRun> {
    install().map_err(anyhow::Error::msg)?;
    let logs = tempfile::tempdir()?;
    let server = X11vnc::start(display, &logs.path().join("x11vnc.log")).await?;
    let mut proxy = CountingProxy::start(server.port).await?;
    // Room around the remote screen so the viewer's window holds all of it at 1:1.
    let viewer_x = xvfb(w + 100, h + 100)?;
    let viewer = start_viewer(&viewer_x.display, proxy.port)?;
    let window = wait_window(&viewer_x.display, " - TigerVNC$").await?;
    let size = window_size(&viewer_x.display, &window).await?;
    anyhow::ensure!(
        size == (w, h),
        "the viewer window is {}x{}, not the whole {w}x{h} screen",
        size.0,
        size.1
    );
    // The first full update.
    proxy.quiet(Duration::from_secs(1)).await;

    let mut workloads = vec![];
    for load in loads {
        let _load = match &load.cmd {
            Some(c) => Some(x_spawn(display, c)?),
            None => None,
        };
        let (down0, up0) = proxy.bytes();
        let cpu0 = cpu_seconds(server.pid());
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let (down1, up1) = proxy.bytes();
        workloads.push(PeerWorkload {
            bytes_per_s: (down1 - down0) as f64 / secs,
            server_cpu: (cpu_seconds(server.pid()) - cpu0) / secs * 100.0,
        });
        eprintln!(
            "    {}: x11vnc sent {:.0} B/s, the viewer {:.0} B/s",
            load.name,
            (down1 - down0) as f64 / secs,
            (up1 - up0) as f64 / secs
        );
        drop(_load);
        // Let the screen settle before the next workload, as for Tether.
        proxy.quiet(Duration::from_secs(1)).await;
    }

    // Keys go to the typing terminal on the remote display and to the viewer on its own.
    xdotool(display, &["search", "--name", TERM_TITLE, "windowfocus"]).await?;
    xdotool(&viewer_x.display, &["windowfocus", "--sync", &window]).await?;
    let mut latency_ms = vec![];
    let samples = if viewer_load.is_some() { 0 } else { samples };
    for i in 0..samples {
        proxy.quiet(QUIET).await;
        let key = ((b'a' + (i % 26) as u8) as char).to_string();
        xdotool(&viewer_x.display, &["key", &key]).await?;
        if let Some(ms) = proxy.key_to_update().await {
            latency_ms.push(ms);
        }
    }
    if latency_ms.len() < samples as usize {
        eprintln!(
            "    x11vnc: {} of {samples} keys got no update within 2 s",
            samples as usize - latency_ms.len()
        );
    }
    proxy.check().await?;
    // The viewer: glass to glass, then its own CPU, idle and typing.
    let mut load = viewer_load
        .and_then(|i| loads[i].cmd.clone())
        .map(|c| move || -> Result<Box<dyn std::any::Any>> { Ok(Box::new(x_spawn(display, &c)?)) });
    let load = load
        .as_mut()
        .map(|f| f as &mut dyn FnMut() -> Result<Box<dyn std::any::Any>>);
    let seen = viewer_run(viewer.0.id(), &viewer_x.display, &window, display, load).await?;
    proxy.check().await?;
    Ok(PeerRun {
        workloads,
        latency_ms,
        viewer: seen,
    })
}

/// Installs x11vnc and TigerVNC's viewer when missing (as `ensure_tool` does); the reason when
/// they cannot be.
fn install() -> std::result::Result<(), String> {
    crate::agent::ensure_tool("x11vnc", "x11vnc")?;
    crate::agent::ensure_tool(VIEWER, "tigervnc-viewer")
}

/// A running x11vnc, killed (with its process group) on drop.
struct X11vnc {
    process: Bg,
    port: u16,
}

impl X11vnc {
    /// Starts x11vnc on `display` with its log in `log`, and waits until it listens (it prints
    /// `PORT=P` on stdout then).
    async fn start(display: &str, log: &Path) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let port = free_port()?;
        let mut child = std::process::Command::new("x11vnc")
            .args(["-display", display, "-listen", link::far_host(), "-rfbport"])
            .arg(port.to_string())
            .args(["-nopw", "-forever", "-shared"])
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .context("x11vnc")?;
        let stdout = child.stdout.take().context("x11vnc stdout")?;
        let process = Bg(child);
        let listening = tokio::time::timeout(Duration::from_secs(20), port_line(stdout)).await;
        match listening {
            Ok(Some(p)) if p == port => Ok(X11vnc { process, port }),
            Ok(Some(p)) => anyhow::bail!("x11vnc listens on port {p}, not {port}"),
            _ => anyhow::bail!(
                "x11vnc did not start listening: {}",
                last_line(log).unwrap_or_default()
            ),
        }
    }

    fn pid(&self) -> u32 {
        self.process.0.id()
    }
}

/// The port of x11vnc's `PORT=P` line, read on a thread that then drains the pipe until x11vnc
/// exits (so that x11vnc never writes into a closed pipe); None if it exits first.
async fn port_line(stdout: std::process::ChildStdout) -> Option<u16> {
    use std::io::BufRead;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(p) = line
                .strip_prefix("PORT=")
                .and_then(|p| p.trim().parse().ok())
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(p);
            }
        }
    });
    rx.await.ok()
}

/// The last non-empty line of a log file.
fn last_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_string)
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts TigerVNC's viewer on `display`, connecting to 127.0.0.1:`port`.
fn start_viewer(display: &str, port: u16) -> Result<Bg> {
    use std::os::unix::process::CommandExt;
    Ok(Bg(std::process::Command::new(VIEWER)
        .arg("-PreferredEncoding=Tight")
        .arg(format!("127.0.0.1::{port}"))
        .process_group(0)
        .env("DISPLAY", display)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context(VIEWER)?))
}

/// Runs xdotool on `display` and waits for it.
pub async fn xdotool(display: &str, args: &[&str]) -> Result<()> {
    let status = tokio::process::Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "xdotool {args:?} failed on {display}");
    Ok(())
}

/// Width and height of an X window.
async fn window_size(display: &str, window: &str) -> Result<(u32, u32)> {
    let out = tokio::process::Command::new("xdotool")
        .args(["getwindowgeometry", "--shell", window])
        .env("DISPLAY", display)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.trim().parse().ok())
    };
    match (field("WIDTH"), field("HEIGHT")) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => anyhow::bail!("no geometry for window {window}: {text}"),
    }
}

/// What the proxy saw, with the time it read it.
enum Wire {
    /// A read from the viewer that carried a key-down KeyEvent.
    Key(Instant),
    /// A read from x11vnc of `len` bytes; `first` is its first byte.
    Down { at: Instant, first: u8, len: usize },
}

/// A one-connection TCP proxy on 127.0.0.1 between the viewer and x11vnc, counting the bytes
/// it forwards each way and reporting keys and server reads with their times.
struct CountingProxy {
    port: u16,
    down: Arc<AtomicU64>,
    up: Arc<AtomicU64>,
    events: tokio::sync::mpsc::UnboundedReceiver<Wire>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CountingProxy {
    async fn start(server_port: u16) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (down, up) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(proxy_one(
            listener,
            server_port,
            down.clone(),
            up.clone(),
            tx,
        ));
        Ok(CountingProxy {
            port,
            down,
            up,
            events,
            task,
        })
    }

    /// Bytes forwarded so far: (server→client, client→server).
    fn bytes(&self) -> (u64, u64) {
        (
            self.down.load(Ordering::Relaxed),
            self.up.load(Ordering::Relaxed),
        )
    }

    /// Fails if the viewer's connection through the proxy has ended: numbers taken since
    /// would be short.
    async fn check(&mut self) -> Result<()> {
        if !self.task.is_finished() {
            return Ok(());
        }
        match (&mut self.task).await {
            Ok(Ok(())) => anyhow::bail!("the viewer's connection closed during the run"),
            Ok(Err(e)) => Err(e.context("the counting proxy failed")),
            Err(e) => anyhow::bail!("the counting proxy failed: {e}"),
        }
    }

    /// Waits until x11vnc has sent nothing for `gap` (at most 10 s), dropping what was seen.
    async fn quiet(&mut self, gap: Duration) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match tokio::time::timeout(gap, self.events.recv()).await {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Milliseconds from the next key-down the viewer sends to the end of the first update
    /// x11vnc starts after it; None if either does not come within 2 s.
    async fn key_to_update(&mut self) -> Option<f64> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let key = loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Wire::Key(at))) => break at,
                Ok(Some(_)) => continue,
                _ => return None,
            }
        };
        // RFB server message type 0 is FramebufferUpdate.
        let (start, mut bytes) = loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Wire::Down { at, first: 0, len })) if at >= key => break (at, len),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        };
        let mut end = start;
        while let Ok(Some(Wire::Down { at, len, .. })) =
            tokio::time::timeout(BURST_GAP, self.events.recv()).await
        {
            end = at;
            bytes += len;
        }
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!(
                "    key: update starts after {:.2} ms, ends after {:.2} ms, {bytes} B",
                (start - key).as_secs_f64() * 1000.0,
                (end - key).as_secs_f64() * 1000.0
            );
        }
        Some((end - key).as_secs_f64() * 1000.0)
    }
}

/// Accepts the viewer's connection, connects it to x11vnc, and forwards both ways until either
/// side closes.
async fn proxy_one(
    listener: TcpListener,
    server_port: u16,
    down: Arc<AtomicU64>,
    up: Arc<AtomicU64>,
    events: tokio::sync::mpsc::UnboundedSender<Wire>,
) -> Result<()> {
    let (client, _) = listener.accept().await?;
    let server = TcpStream::connect((link::far_host(), server_port)).await?;
    // The proxy must not hold back small writes (keys, small updates) for coalescing.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let key_events = events.clone();
    let upstream = async move {
        let mut parser = ClientStream::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = client_rx.read(&mut buf).await?;
            let at = Instant::now();
            if n == 0 {
                return Ok::<_, anyhow::Error>(());
            }
            up.fetch_add(n as u64, Ordering::Relaxed);
            if parser.feed(&buf[..n])? > 0 {
                let _ = key_events.send(Wire::Key(at));
            }
            server_tx.write_all(&buf[..n]).await?;
        }
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = server_rx.read(&mut buf).await?;
            let at = Instant::now();
            if n == 0 {
                return Ok::<_, anyhow::Error>(());
            }
            down.fetch_add(n as u64, Ordering::Relaxed);
            let _ = events.send(Wire::Down {
                at,
                first: buf[0],
                len: n,
            });
            client_tx.write_all(&buf[..n]).await?;
        }
    };
    tokio::try_join!(upstream, downstream)?;
    Ok(())
}

/// Where the client→server stream is: the handshake, then messages.
#[derive(Default, Clone, Copy, PartialEq)]
enum Stage {
    /// "RFB 003.00x\n".
    #[default]
    Version,
    /// The security type the client chose (RFB 3.7 and later).
    Security,
    /// ClientInit: the shared flag.
    Init,
    Messages,
}

/// Splits the viewer's client→server byte stream into RFB messages, to find its KeyEvents.
#[derive(Default)]
struct ClientStream {
    stage: Stage,
    buf: Vec<u8>,
}

impl ClientStream {
    /// Takes the next bytes; returns how many key-down KeyEvents were completed by them.
    fn feed(&mut self, data: &[u8]) -> Result<usize> {
        self.buf.extend_from_slice(data);
        let mut keys = 0;
        while let Some(len) = self.next_len()? {
            if self.stage == Stage::Messages && is_key_down(&self.buf[..len]) {
                keys += 1;
            }
            self.advance();
            self.buf.drain(..len);
        }
        Ok(keys)
    }

    /// Length of the next complete unit in the buffer, None until it has all arrived.
    fn next_len(&self) -> Result<Option<usize>> {
        let b = &self.buf;
        let need = match self.stage {
            Stage::Version => 12,
            Stage::Security | Stage::Init => 1,
            Stage::Messages => match client_message_len(b)? {
                Some(n) => n,
                None => return Ok(None),
            },
        };
        Ok((b.len() >= need).then_some(need))
    }

    /// Moves past the unit at the front of the buffer.
    fn advance(&mut self) {
        self.stage = match self.stage {
            Stage::Version => {
                // "RFB 003.008\n": the minor version is in bytes 8..11.
                let minor: u8 = std::str::from_utf8(&self.buf[8..11])
                    .ok()
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(3);
                if minor >= 7 {
                    Stage::Security
                } else {
                    // RFB 3.3: the server picks the security type; the client sends nothing.
                    Stage::Init
                }
            }
            // With -nopw the only type is None, which has no further client bytes.
            Stage::Security => Stage::Init,
            Stage::Init | Stage::Messages => Stage::Messages,
        }
    }
}

/// Whether a complete client message is a KeyEvent with its down flag set.
fn is_key_down(msg: &[u8]) -> bool {
    msg.len() == 8 && msg[0] == 4 && msg[1] != 0
}

/// Length of the client message at the start of `b` (None until enough of it has arrived to
/// tell), from RFB 6.4 and the extensions TigerVNC's viewer sends.
fn client_message_len(b: &[u8]) -> Result<Option<usize>> {
    let Some(&kind) = b.first() else {
        return Ok(None);
    };
    let u16_at = |i: usize| {
        b.get(i..i + 2)
            .map(|v| usize::from(u16::from_be_bytes([v[0], v[1]])))
    };
    Ok(match kind {
        0 => Some(20),                                     // SetPixelFormat
        2 => u16_at(2).map(|n| 4 + 4 * n),                 // SetEncodings
        3 => Some(10),                                     // FramebufferUpdateRequest
        4 => Some(8),                                      // KeyEvent
        5 => Some(6),                                      // PointerEvent
        150 => Some(10),                                   // EnableContinuousUpdates
        248 => b.get(8).map(|&n| 9 + usize::from(n)),      // Fence
        251 => b.get(6).map(|&n| 8 + 16 * usize::from(n)), // SetDesktopSize
        6 => b.get(4..8).map(|v| {
            // ClientCutText; a negative length is the extended clipboard's, of |length| bytes.
            let len = i32::from_be_bytes([v[0], v[1], v[2], v[3]]);
            8 + len.unsigned_abs() as usize
        }),
        other => anyhow::bail!("unknown RFB client message type {other}"),
    })
}
