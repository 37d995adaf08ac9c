//! `tether push` and `tether pull`: copy files to or from a device with a progress bar,
//! reconnecting and resuming while the connection keeps breaking (see [`crate::ops`]).

use super::{AsRoot, CmdError, Why, WhyArgs, session_request, waiting};
use crate::ops::{self, Transferred};
use crate::outln;
use crate::relay::{RequestError, Session};
use crate::remote::RemoteSession;
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tether_net::client::{ClientError, Credentials};
use tether_protocol::session::{Activity, Permissions};

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

/// Copy a file or directory to a device (checksummed, resumed after a dropped connection).
#[derive(clap::Args)]
pub struct PushArgs {
    pub device: String,
    pub local: PathBuf,
    /// Absolute destination on the device; ending in / puts LOCAL inside that directory.
    pub remote: String,
    #[command(flatten)]
    pub root: AsRoot,
    #[command(flatten)]
    pub why: WhyArgs,
}

/// Copy a file or directory from a device (checksummed, resumed after a dropped connection).
#[derive(clap::Args)]
pub struct PullArgs {
    pub device: String,
    /// Absolute path on the device.
    pub remote: String,
    /// Where to put it (an existing directory keeps the remote name).
    pub local: PathBuf,
    #[command(flatten)]
    pub root: AsRoot,
    #[command(flatten)]
    pub why: WhyArgs,
}

/// `tether push DEVICE LOCAL REMOTE`.
pub async fn push(dir: &Path, a: PushArgs) -> Result<(), CmdError> {
    let op = Transfer::Push {
        local: a.local,
        remote: a.remote,
    };
    run(dir, &a.device, op, a.why.with_root(a.root)).await
}

/// `tether pull DEVICE REMOTE LOCAL`.
pub async fn pull(dir: &Path, a: PullArgs) -> Result<(), CmdError> {
    let op = Transfer::Pull {
        remote: a.remote,
        local: a.local,
    };
    run(dir, &a.device, op, a.why.with_root(a.root)).await
}

/// Runs a push or pull and prints its summary.
async fn run(dir: &Path, device: &str, op: Transfer, why: Why) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    outln!("{}", transfer_and_report(&creds, device, op, &why).await?);
    Ok(())
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
        RequestError::Session(m) => m != crate::remote::DEVICE_REVOKED,
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
    why: &Why,
    patience: Duration,
) -> Result<Transferred, CmdError> {
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
                        session_request(
                            device,
                            permissions,
                            op.activity(),
                            (&why.reason, &why.ticket),
                        ),
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
                        crate::safe::error_line(&e),
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
    why: &Why,
) -> Result<String, CmdError> {
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
