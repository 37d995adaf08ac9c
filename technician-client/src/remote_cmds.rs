//! `tether shell`, `exec`, `push` and `pull`: terminal and progress glue over
//! `tether_technician::ops`.

use anyhow::Result;
use std::collections::HashSet;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tether_net::client::{ClientError, Credentials};
use tether_protocol::message::SessionRequest;
use tether_protocol::session::{Activity, OutStream, Permissions, ToAgent, ToViewer};
use tether_technician::ops::{self, Transferred};
use tether_technician::outln;
use tether_technician::relay::{RequestError, Session};
use tether_technician::remote::RemoteSession;

/// The process should end with this code (a remote command's), after printing nothing more.
#[derive(Debug, thiserror::Error)]
#[error("remote exit {0}")]
pub struct RemoteExit(pub i32);

/// Why a session is opened, and whether it runs as root on the device.
#[derive(Debug, Clone, Copy)]
pub struct Why<'a> {
    pub reason: &'a str,
    pub ticket: &'a str,
    pub as_root: bool,
}

fn request(
    device: &str,
    permissions: Permissions,
    activity: Activity,
    why: (&str, &str),
) -> SessionRequest {
    SessionRequest {
        device: device.to_string(),
        permissions,
        reason: why.0.to_string(),
        ticket: why.1.to_string(),
        batch: false,
        activity,
    }
}

/// Tells a person at a terminal why nothing happens yet (the user's consent prompt is up; the
/// relay says when, see `Session::on_asking`).
fn waiting(device: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("asking the user at {device} to approve…");
    }
}

/// Puts the terminal in raw mode while alive (keystrokes go to the remote shell unchanged).
struct RawMode(bool);

impl RawMode {
    fn enable() -> Self {
        let on = std::io::stdin().is_terminal() && crossterm::terminal::enable_raw_mode().is_ok();
        RawMode(on)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if self.0 {
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

/// The shell permission, as root when asked for.
fn shell_permissions(as_root: bool) -> Permissions {
    Permissions {
        root: as_root,
        ..Permissions::SHELL
    }
}

pub async fn shell(
    creds: &Credentials,
    device: &str,
    as_root: bool,
    reason: &str,
    ticket: &str,
) -> Result<()> {
    let who = device.to_string();
    let session = Session::open(creds).await?.on_asking(move || waiting(&who));
    let mut remote = match session
        .open_remote_with(
            creds,
            request(
                device,
                shell_permissions(as_root),
                Activity::Shell,
                (reason, ticket),
            ),
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            session.close().await;
            return Err(e.into());
        }
    };
    let tty = std::io::stdin().is_terminal();
    let (cols, rows) = if tty {
        crossterm::terminal::size().unwrap_or((80, 24))
    } else {
        (80, 24)
    };
    remote
        .send(&ToAgent::ShellOpen {
            cols,
            rows,
            user: None,
        })
        .await?;
    let (tx, mut rx) = remote.into_duplex();
    let raw = RawMode::enable();
    let input = tx.clone();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    // Piped input ended: end the shell's input too (Ctrl-D).
                    let _ = input.send(ToAgent::ShellInput(vec![4]));
                    return;
                }
                Ok(n) => {
                    if input.send(ToAgent::ShellInput(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    if tty
        && let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    {
        let resize = tx.clone();
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Ok((cols, rows)) = crossterm::terminal::size()
                    && resize.send(ToAgent::ShellResize { cols, rows }).is_err()
                {
                    return;
                }
            }
        });
    }
    let mut stdout = std::io::stdout();
    let status = loop {
        match rx.recv().await {
            Some(ToViewer::Output { data, .. }) => {
                let _ = stdout.write_all(&data);
                let _ = stdout.flush();
            }
            Some(ToViewer::Exited {
                code,
                signal,
                timed_out,
            }) => {
                break Ok(ops::Exit {
                    code,
                    signal,
                    timed_out,
                }
                .status());
            }
            Some(ToViewer::Error { message }) => {
                break Err(anyhow::anyhow!(tether_protocol::text::clean(&message, 512)));
            }
            Some(ToViewer::Bye { reason }) => {
                break Err(anyhow::anyhow!(
                    "session ended: {}",
                    tether_protocol::text::clean(&reason, 200)
                ));
            }
            Some(_) => {}
            None => break Err(anyhow::anyhow!("session ended")),
        }
    };
    drop(raw);
    let _ = tx.send(ToAgent::Bye);
    drop(tx);
    session.close().await;
    match status? {
        0 => Ok(()),
        code => Err(RemoteExit(code).into()),
    }
}

pub struct ExecArgs {
    pub device: Option<String>,
    pub group: Option<String>,
    pub command: Vec<String>,
    pub timeout: Option<Duration>,
    pub json: bool,
    pub parallel: usize,
    pub as_root: bool,
    pub reason: String,
    pub ticket: String,
}

/// What one device's command produced (for `--json` and group runs).
struct Outcome {
    device: String,
    hostname: String,
    exit: Option<ops::Exit>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    error: Option<String>,
}

/// Output kept per device in a group run or with `--json`.
const MAX_CAPTURE: usize = 1024 * 1024;

fn keep(buf: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_CAPTURE.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

pub async fn exec(creds: &Credentials, a: ExecArgs) -> Result<()> {
    let session = Session::open(creds).await?;
    match (&a.device, &a.group) {
        (Some(device), _) => {
            let r = exec_one(&session, creds, device, &a).await;
            session.close().await;
            r
        }
        (None, Some(group)) => exec_group(session, creds, group, &a).await,
        (None, None) => {
            session.close().await;
            Err(anyhow::anyhow!("name a DEVICE or --group G"))
        }
    }
}

async fn exec_one(
    session: &Session,
    creds: &Credentials,
    device: &str,
    a: &ExecArgs,
) -> Result<()> {
    let opened = session
        .open_remote_with(
            creds,
            request(
                device,
                shell_permissions(a.as_root),
                Activity::command(&a.command),
                (&a.reason, &a.ticket),
            ),
        )
        .await;
    let mut remote = match opened {
        Ok(r) => r,
        Err(e) => return Err(e.into()),
    };
    let mut captured = (Vec::new(), Vec::new());
    let json = a.json;
    // The command's bytes go out unchanged into a pipe or a file; on a terminal they are
    // filtered, so a device cannot drive the technician's terminal (see `safe`).
    let mut out = Shown::new(std::io::stdout());
    let mut err = Shown::new(std::io::stderr());
    let exit = ops::exec(&mut remote, a.command.clone(), a.timeout, |stream, data| {
        if json {
            match stream {
                OutStream::Stderr => keep(&mut captured.1, data),
                _ => keep(&mut captured.0, data),
            }
        } else {
            match stream {
                OutStream::Stderr => err.write(data),
                _ => out.write(data),
            }
        }
    })
    .await;
    out.finish();
    err.finish();
    remote.close().await;
    let exit = exit?;
    if json {
        let o = Outcome {
            device: device.to_string(),
            hostname: String::new(),
            exit: Some(exit),
            stdout: captured.0,
            stderr: captured.1,
            error: None,
        };
        outln!("{}", tether_technician::safe::json(&outcome_json(&o)));
    }
    if exit.timed_out {
        eprintln!("error: timed out; the command was killed");
    }
    match exit.status() {
        0 => Ok(()),
        code => Err(RemoteExit(code).into()),
    }
}

/// Where a remote command's output goes: raw into a pipe or file, through
/// [`tether_technician::safe::TerminalFilter`] onto a terminal.
struct Shown<W: Write + IsTerminal> {
    to: W,
    filter: Option<tether_technician::safe::TerminalFilter>,
}

impl<W: Write + IsTerminal> Shown<W> {
    fn new(to: W) -> Self {
        let filter = to.is_terminal().then(Default::default);
        Shown { to, filter }
    }

    fn write(&mut self, data: &[u8]) {
        let _ = match &mut self.filter {
            Some(f) => self.to.write_all(&f.push(data)),
            None => self.to.write_all(data),
        };
        let _ = self.to.flush();
    }

    fn finish(&mut self) {
        if let Some(f) = &mut self.filter {
            let _ = self.to.write_all(&f.finish());
            let _ = self.to.flush();
        }
    }
}

fn outcome_json(o: &Outcome) -> serde_json::Value {
    serde_json::json!({
        "device": o.device,
        "hostname": o.hostname,
        "exit_code": o.exit.and_then(|e| e.code),
        "signal": o.exit.and_then(|e| e.signal),
        "timed_out": o.exit.is_some_and(|e| e.timed_out),
        "stdout": String::from_utf8_lossy(&o.stdout),
        "stderr": String::from_utf8_lossy(&o.stderr),
        "error": o.error,
    })
}

async fn exec_group(
    session: Session,
    creds: &Credentials,
    group: &str,
    a: &ExecArgs,
) -> Result<()> {
    let devices: Vec<_> = session
        .devices()
        .await?
        .into_iter()
        .filter(|d| d.group == group)
        .collect();
    if devices.is_empty() {
        session.close().await;
        anyhow::bail!("no devices in group {group}");
    }
    let session = Arc::new(session);
    let creds = Arc::new(creds.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(a.parallel.clamp(1, 64)));
    let mut tasks = tokio::task::JoinSet::new();
    for d in devices {
        let (session, creds, slots) = (session.clone(), creds.clone(), slots.clone());
        let (command, timeout) = (a.command.clone(), a.timeout);
        let mut req = request(
            &d.id,
            shell_permissions(a.as_root),
            Activity::command(&a.command),
            (&a.reason, &a.ticket),
        );
        req.batch = true;
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let mut o = Outcome {
                device: d.id.clone(),
                hostname: d.hostname.clone(),
                exit: None,
                stdout: Vec::new(),
                stderr: Vec::new(),
                error: None,
            };
            if !d.online {
                o.error = Some("offline".into());
                return o;
            }
            match session.open_remote_with(&creds, req).await {
                Ok(mut remote) => {
                    let (out, err) = (&mut o.stdout, &mut o.stderr);
                    let r = ops::exec(&mut remote, command, timeout, |stream, data| match stream {
                        OutStream::Stderr => keep(err, data),
                        _ => keep(out, data),
                    })
                    .await;
                    remote.close().await;
                    match r {
                        Ok(exit) => o.exit = Some(exit),
                        Err(e) => o.error = Some(e.to_string()),
                    }
                }
                Err(e) => o.error = Some(e.to_string()),
            }
            o
        });
    }
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(o) = r {
            results.push(o);
        }
    }
    results.sort_by(|x, y| x.hostname.cmp(&y.hostname).then(x.device.cmp(&y.device)));
    if let Ok(s) = Arc::try_unwrap(session) {
        s.close().await;
    }
    let failed = results
        .iter()
        .filter(|o| o.error.is_some() || o.exit.is_none_or(|e| e.status() != 0))
        .count();
    if a.json {
        let rows: Vec<_> = results.iter().map(outcome_json).collect();
        outln!(
            "{}",
            tether_technician::safe::json(&serde_json::Value::Array(rows))
        );
    } else {
        for o in &results {
            let host = tether_protocol::text::clean(&o.hostname, 64);
            let status = match (&o.error, o.exit) {
                (Some(e), _) => format!("error: {}", tether_protocol::text::clean(e, 300)),
                (None, Some(e)) if e.timed_out => "timed out".to_string(),
                (None, Some(e)) => format!("exit {}", e.status()),
                (None, None) => "no result".into(),
            };
            outln!(
                "== {host} ({}) — {status}",
                &o.device[..o.device.len().min(8)]
            );
            for (stream, bytes) in [("", &o.stdout), ("stderr: ", &o.stderr)] {
                for line in String::from_utf8_lossy(bytes).lines() {
                    outln!("   {stream}{}", tether_protocol::text::clean(line, 4096));
                }
            }
        }
        outln!(
            "{} devices, {} ok, {failed} failed",
            results.len(),
            results.len() - failed
        );
    }
    if failed > 0 {
        return Err(RemoteExit(1).into());
    }
    Ok(())
}

fn progress_bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:30!} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// A push or a pull.
pub enum Transfer {
    Push { local: PathBuf, remote: String },
    Pull { remote: String, local: PathBuf },
}

impl Transfer {
    fn activity(&self) -> Activity {
        match self {
            Transfer::Push { remote, .. } => Activity::Push {
                path: remote.clone(),
            },
            Transfer::Pull { remote, .. } => Activity::Pull {
                path: remote.clone(),
            },
        }
    }
}

/// Errors worth another attempt: the connection or the session channel broke.
fn retryable(e: &RequestError) -> bool {
    match e {
        // A revoked device does not come back.
        RequestError::Session(m) => m != tether_technician::remote::DEVICE_REVOKED,
        // The device may be reconnecting too (after a relay restart).
        RequestError::Offline(_) => true,
        RequestError::Client(ClientError::Net(n)) => !n.is_auth(),
        _ => false,
    }
}

/// Runs a transfer, reconnecting and resuming (each attempt is a new session the user
/// approves) while the connection keeps breaking, for up to `patience`.
pub async fn transfer(
    creds: &Credentials,
    device: &str,
    op: Transfer,
    why: Why<'_>,
    patience: Duration,
) -> Result<Transferred> {
    let permissions = Permissions {
        root: why.as_root,
        ..Permissions::FILES
    };
    let bar = progress_bar(false);
    let started = std::time::Instant::now();
    let mut done = HashSet::new();
    let mut attempt = 0u32;
    let mut resumed_total = 0u64;
    loop {
        attempt += 1;
        bar.reset();
        let result = async {
            let (hook_bar, who) = (bar.clone(), device.to_string());
            let session = Session::open(creds)
                .await?
                .on_asking(move || hook_bar.suspend(|| waiting(&who)));
            let r = async {
                let mut remote = session
                    .open_remote_with(
                        creds,
                        request(device, permissions, op.activity(), (why.reason, why.ticket)),
                    )
                    .await?;
                let r = match &op {
                    Transfer::Push { local, remote: to } => {
                        ops::push(&mut remote, local, to, &mut done, &bar).await
                    }
                    Transfer::Pull {
                        remote: from,
                        local,
                    } => ops::pull(&mut remote, from, local, &bar).await,
                };
                close_quietly(remote, r.is_ok()).await;
                r
            }
            .await;
            session.close().await;
            r
        }
        .await;
        match result {
            Ok(mut t) => {
                bar.finish_and_clear();
                t.resumed += resumed_total;
                return Ok(t);
            }
            Err(e) if retryable(&e) && started.elapsed() < patience => {
                let delay = Duration::from_millis(500 * u64::from(attempt.min(10)));
                bar.suspend(|| {
                    eprintln!(
                        "connection lost ({}); resuming in {:.1} s (attempt {})…",
                        tether_technician::safe::error_line(&e),
                        delay.as_secs_f32(),
                        attempt + 1
                    )
                });
                resumed_total = 0;
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                bar.finish_and_clear();
                return Err(e.into());
            }
        }
    }
}

async fn close_quietly(remote: RemoteSession, ok: bool) {
    if ok {
        remote.close().await;
    }
}

/// How long a transfer keeps reconnecting and resuming after its connection breaks.
const PATIENCE: Duration = Duration::from_secs(120);

/// `tether push` / `tether pull`: runs the transfer and returns its one-line summary.
pub async fn transfer_and_report(
    creds: &Credentials,
    device: &str,
    op: Transfer,
    why: Why<'_>,
) -> Result<String> {
    let (what, to) = match &op {
        Transfer::Push { remote, .. } => ("pushed", remote.clone()),
        Transfer::Pull { local, .. } => ("pulled", local.display().to_string()),
    };
    let t = transfer(creds, device, op, why, PATIENCE).await?;
    Ok(summary(&t, what, &to))
}

/// One line per transfer for the terminal.
pub fn summary(t: &Transferred, what: &str, to: &str) -> String {
    let mut s = format!(
        "{what} {} file{} ({} bytes) to {to}",
        t.files,
        if t.files == 1 { "" } else { "s" },
        t.bytes,
    );
    if t.resumed > 0 {
        s.push_str(&format!(", {} bytes resumed", t.resumed));
    }
    if let [(_, sha)] = t.checksums.as_slice() {
        s.push_str(&format!(", sha256 {sha}"));
    }
    s
}
