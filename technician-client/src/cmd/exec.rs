//! `tether exec`: run a command on one device (its output streamed here) or on every device of
//! a group (output collected per device), and exit with its exit code.

use super::{AsRoot, CmdError, WhyArgs, session_request, shell_permissions};
use crate::ops;
use crate::outln;
use crate::relay::Session;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tether_net::client::Credentials;
use tether_protocol::session::{Activity, OutStream};

/// Run a command on a device (or every device of a group) and exit with its exit code.
#[derive(clap::Args)]
pub struct ExecArgs {
    /// The device (id, prefix or hostname); or use --group.
    #[arg(required_unless_present = "group")]
    pub device: Option<String>,
    /// Run on every device of this group (admins, where the group allows unattended access).
    #[arg(long, conflicts_with = "device")]
    pub group: Option<String>,
    #[command(flatten)]
    pub root: AsRoot,
    /// Kill the command after this long (exit code 124).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Devices at once in a group run.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Print JSON (exit code, stdout, stderr per device).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub why: WhyArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
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

/// `tether exec DEVICE|--group G -- COMMAND…`: ends with the command's exit code (with a
/// group, 1 if any device failed).
pub async fn exec(dir: &Path, a: ExecArgs) -> Result<(), CmdError> {
    let creds = &super::credentials(dir)?;
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
            Err(CmdError::Usage("name a DEVICE or --group G"))
        }
    }
}

async fn exec_one(
    session: &Session,
    creds: &Credentials,
    device: &str,
    a: &ExecArgs,
) -> Result<(), CmdError> {
    let opened = session
        .open_remote_with(
            creds,
            session_request(
                device,
                shell_permissions(a.root.as_root),
                Activity::command(&a.command),
                (&a.why.reason, &a.why.ticket),
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
        outln!("{}", crate::safe::json(&outcome_json(&o)));
    }
    if exit.timed_out {
        eprintln!("error: timed out; the command was killed");
    }
    match exit.status() {
        0 => Ok(()),
        code => Err(CmdError::RemoteExit(code)),
    }
}

/// Where a remote command's output goes: raw into a pipe or file, through
/// [`crate::safe::TerminalFilter`] onto a terminal.
struct Shown<W: Write + IsTerminal> {
    to: W,
    filter: Option<crate::safe::TerminalFilter>,
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
) -> Result<(), CmdError> {
    let devices: Vec<_> = session
        .devices()
        .await?
        .into_iter()
        .filter(|d| d.group == group)
        .collect();
    if devices.is_empty() {
        session.close().await;
        return Err(CmdError::EmptyGroup(group.to_string()));
    }
    let session = Arc::new(session);
    let creds = Arc::new(creds.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(a.parallel.clamp(1, 64)));
    let mut tasks = tokio::task::JoinSet::new();
    for d in devices {
        let (session, creds, slots) = (session.clone(), creds.clone(), slots.clone());
        let (command, timeout) = (a.command.clone(), a.timeout);
        let mut req = session_request(
            &d.id,
            shell_permissions(a.root.as_root),
            Activity::command(&a.command),
            (&a.why.reason, &a.why.ticket),
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
        outln!("{}", crate::safe::json(&serde_json::Value::Array(rows)));
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
        return Err(CmdError::RemoteExit(1));
    }
    Ok(())
}
