//! `tether health` (once, or `--watch`) and `tether alerts`.

use super::CmdError;
use crate::health::{alerts_json, alerts_table, health_json, health_text, now_ms};
use crate::relay::{RequestError, Session};
use crate::{out, outln};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;
use tether_net::client::Credentials;
use tether_protocol::text::human_secs;

/// A machine's latest health report (CPU, memory, disks, top processes, failed units) and
/// open alerts.
#[derive(clap::Args)]
pub struct HealthArgs {
    /// Device id, unique id prefix, or hostname.
    pub device: String,
    /// Keep refreshing until Ctrl-C (redraws in place on a terminal).
    #[arg(long)]
    pub watch: bool,
    /// With --watch: how often to ask the relay.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, requires = "watch")]
    pub every: Duration,
    /// Print JSON (with --watch: one line per new report).
    #[arg(long)]
    pub json: bool,
}

/// Open alerts across all machines: full disks, memory pressure, failed units, silent agents.
#[derive(clap::Args)]
pub struct AlertsArgs {
    /// Also alerts closed in the last 7 days.
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub json: bool,
}

/// `tether health DEVICE [--watch [--every D]] [--json]`.
pub async fn health(dir: &Path, a: HealthArgs) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    if a.watch {
        watch(&creds, &a.device, a.json, a.every).await
    } else {
        show(&creds, &a.device, a.json).await
    }
}

/// `tether health DEVICE [--json]`.
async fn show(creds: &Credentials, device: &str, json: bool) -> Result<(), CmdError> {
    let session = Session::open(creds).await?;
    let h = session.health(device).await;
    session.close().await;
    let h = h?;
    if json {
        outln!("{}", crate::safe::json(&health_json(&h, now_ms())));
    } else {
        out!("{}", health_text(&h, now_ms()));
    }
    Ok(())
}

/// `tether health DEVICE --watch`: redraws every `every` until Ctrl-C. On a terminal the screen
/// is redrawn in place; into a pipe (and with --json, one line per report) only new reports are
/// written, so the output grows only when the device reports.
async fn watch(
    creds: &Credentials,
    device: &str,
    json: bool,
    every: Duration,
) -> Result<(), CmdError> {
    let tty = std::io::stdout().is_terminal() && !json;
    let mut session = Some(Session::open(creds).await?);
    let mut last: Option<i64> = None;
    let mut first = true;
    loop {
        if session.is_none() {
            session = Session::open(creds).await.ok();
        }
        let result = match &session {
            Some(s) => s.health(device).await,
            None => Err(RequestError::Unexpected),
        };
        let now = now_ms();
        let mut out = std::io::stdout().lock();
        match result {
            Ok(h) => {
                let new = last != Some(h.received_unix_ms);
                last = Some(h.received_unix_ms);
                if tty {
                    let screen = health_text(&h, now);
                    // Home, each line over the old one, then clear what is left below.
                    write!(out, "\x1b[H")?;
                    for line in screen.lines() {
                        writeln!(out, "{line}\x1b[K")?;
                    }
                    write!(
                        out,
                        "\nrefreshing every {} · Ctrl-C to stop\x1b[K\n\x1b[J",
                        human_secs(every.as_secs() as i64)
                    )?;
                } else if new && json {
                    writeln!(out, "{}", crate::safe::json_line(&health_json(&h, now)))?;
                } else if new {
                    writeln!(out, "{}", health_text(&h, now))?;
                }
            }
            Err(e) if first => return Err(e.into()),
            Err(e) => {
                if matches!(e, RequestError::Client(_)) {
                    // The connection is gone: open a new one next time.
                    session = None;
                }
                if tty {
                    writeln!(
                        out,
                        "\x1b[H\x1b[2Jerror: {} (retrying)",
                        crate::safe::error_line(&e)
                    )?;
                } else {
                    eprintln!("error: {} (retrying)", crate::safe::error_line(&e));
                }
            }
        }
        out.flush()?;
        drop(out);
        first = false;
        tokio::time::sleep(every).await;
    }
}

/// `tether alerts [--all] [--json]`.
pub async fn alerts(dir: &Path, a: AlertsArgs) -> Result<(), CmdError> {
    let (all, json) = (a.all, a.json);
    let creds = super::credentials(dir)?;
    let session = Session::open(&creds).await?;
    let rows = session.alerts(all).await;
    session.close().await;
    let rows = rows?;
    if json {
        outln!("{}", crate::safe::json(&alerts_json(&rows)));
    } else if rows.is_empty() {
        outln!(
            "{}",
            if all {
                "no alerts open or closed in the last 7 days"
            } else {
                "no open alerts"
            }
        );
    } else {
        out!("{}", alerts_table(&rows, now_ms()));
    }
    Ok(())
}
