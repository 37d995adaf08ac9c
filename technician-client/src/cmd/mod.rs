//! The `tether` commands, one module per command or family of commands, each with its
//! arguments (a clap `Args` struct) and what it does; `main.rs` only parses the arguments and
//! calls one of them.
//!
//! Most commands have the same shape: load the technician's credentials, open a connection to
//! the relay, make one request, close the connection, print the answer (a table for people,
//! `--json` or `--csv` for scripts). [`call`] is that shape up to the printing, and
//! [`on_device`] the same with a session on a device in between; [`print_json`] is the common
//! printing step. Errors are [`CmdError`]; the binary turns them into a message and an exit code.

pub mod admin;
pub mod connect;
pub mod desktop;
pub mod devices;
pub mod engagement;
pub mod enroll;
pub mod exec;
pub mod health;
pub mod sessions;
pub mod shell;
pub mod transfer;

use crate::relay::{RequestError, Session};
use crate::remote::RemoteSession;
use std::io::IsTerminal;
use std::path::Path;
use tether_net::NetError;
use tether_net::client::{ClientError, Credentials};
use tether_protocol::message::SessionRequest;
use tether_protocol::session::{Activity, Permissions};
use tether_protocol::token::TokenError;
use thiserror::Error;

/// Why a command failed. Most texts are those of the error inside; the binary prints the whole
/// chain of causes on one line (`{:#}` through [`crate::safe::error_line`]).
#[derive(Debug, Error)]
pub enum CmdError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The arguments do not say what to do (what clap cannot check).
    #[error("{0}")]
    Usage(&'static str),
    #[error("{} already holds technician credentials; pass --force to replace them", .0.display())]
    AlreadyEnrolled(std::path::PathBuf),
    #[error("enrolling with relay {relay}")]
    Enroll {
        relay: String,
        #[source]
        source: ClientError,
    },
    #[error("relay issued a certificate for {0}, not a technician")]
    NotTechnician(String),
    #[error("viewer window: {0}")]
    Viewer(String),
    #[error("cancelled")]
    Cancelled,
    /// What the agent said went wrong, or why the session ended (already cleaned).
    #[error("{0}")]
    Remote(String),
    /// The process should end with this code (a remote command's), after printing nothing more.
    #[error("remote exit {0}")]
    RemoteExit(i32),
    #[error("no devices in group {0}")]
    EmptyGroup(String),
    #[error("writing {}", .path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CmdError {
    /// The network error behind this one, if any (its kind decides the exit code).
    pub fn net(&self) -> Option<&NetError> {
        match self {
            CmdError::Request(RequestError::Client(ClientError::Net(n)))
            | CmdError::Client(ClientError::Net(n))
            | CmdError::Enroll {
                source: ClientError::Net(n),
                ..
            } => Some(n),
            _ => None,
        }
    }
}

/// The technician's credentials in `dir`.
pub fn credentials(dir: &Path) -> Result<Credentials, CmdError> {
    Ok(Credentials::load(dir)?)
}

/// One connection to the relay for `f`: opens it, runs `f`, closes it whatever `f` returned.
pub async fn call<T>(
    creds: &Credentials,
    f: impl AsyncFnOnce(&Session) -> Result<T, RequestError>,
) -> Result<T, CmdError> {
    let session = Session::open(creds).await?;
    using(session, f).await
}

/// [`call`] on a connection already open (e.g. one with an [`Session::on_asking`] hook).
pub async fn using<T>(
    session: Session,
    f: impl AsyncFnOnce(&Session) -> Result<T, RequestError>,
) -> Result<T, CmdError> {
    let r = f(&session).await;
    session.close().await;
    Ok(r?)
}

/// Why a session on a device is opened (recorded by the relay and shown to the user), and
/// whether it runs as root there.
#[derive(Debug, Clone, Default)]
pub struct Why {
    pub reason: String,
    /// Ticket reference, e.g. HD-1042.
    pub ticket: String,
    pub as_root: bool,
}

/// Why a session is opened, as given on the command line: recorded by the relay and shown to
/// the user.
#[derive(clap::Args, Debug, Clone)]
pub struct WhyArgs {
    /// Why you need the session (shown to the user, kept in the audit trail).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Ticket reference, e.g. HD-1042.
    #[arg(long, default_value = "")]
    pub ticket: String,
}

/// Who the session acts as on the device: the desktop user, or root when asked for.
#[derive(clap::Args, Debug)]
pub struct AsRoot {
    /// Run as root instead of the desktop user. The user sees it in the prompt, the audit
    /// record keeps it, and the relay refuses unless the device group's policy allows it
    /// (`tether policy --group G --allow-root on`).
    #[arg(long)]
    pub as_root: bool,
}

impl WhyArgs {
    /// With `--as-root` (or not).
    pub fn with_root(self, root: AsRoot) -> Why {
        Why {
            as_root: root.as_root,
            ..self.into()
        }
    }
}

impl From<WhyArgs> for Why {
    fn from(w: WhyArgs) -> Self {
        Why {
            reason: w.reason,
            ticket: w.ticket,
            as_root: false,
        }
    }
}

/// [`call`] with a session on `device` in between: opens it (the user may be asked), runs `f`
/// on it, closes it and the connection whatever `f` returned.
pub async fn on_device<T>(
    creds: &Credentials,
    device: &str,
    permissions: Permissions,
    activity: Activity,
    why: &Why,
    f: impl AsyncFnOnce(&mut RemoteSession) -> Result<T, RequestError>,
) -> Result<T, CmdError> {
    call(creds, async move |session| {
        let mut remote = session
            .open_remote_as(
                creds,
                device,
                permissions,
                activity,
                &why.reason,
                &why.ticket,
            )
            .await?;
        let r = f(&mut remote).await;
        remote.close().await;
        r
    })
    .await
}

/// Prints `value` as pretty JSON, escaped for a terminal ([`crate::safe::json`]).
pub fn print_json(value: &serde_json::Value) {
    crate::outln!("{}", crate::safe::json(value));
}

/// Milliseconds since the epoch, `ago` before now.
pub fn since_ms(ago: std::time::Duration) -> i64 {
    std::time::SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The request for a session on `device`, `why` being its reason and ticket.
pub(crate) fn session_request(
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
pub(crate) fn waiting(device: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("asking the user at {device} to approve…");
    }
}

/// The shell permission, as root when asked for.
pub(crate) fn shell_permissions(as_root: bool) -> Permissions {
    Permissions {
        root: as_root,
        ..Permissions::SHELL
    }
}
