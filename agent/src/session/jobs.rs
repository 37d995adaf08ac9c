//! The shell family of a session's messages: a login shell on a pseudo-terminal (opened,
//! typed into, resized, recorded when the grant says so) or one command; their ends go to the
//! audit record.

use super::{Audit, nobody};
use crate::account::RunAs;
use tether_net::framed::write_msg;
use tether_protocol::limits;
use tether_protocol::session::{ToAgent, ToViewer, command_line};
use tokio::sync::mpsc;
use tracing::warn;

/// The shell side of a session: at most one shell or command at a time (its end is reported
/// to the audit trail; dropping it ends it).
pub(super) struct Shells {
    pub(super) job: Option<Job>,
    /// Whom shells and commands run as (`None` without the shell permission).
    pub(super) who: Option<RunAs>,
    /// Where a recorded shell's transcript goes: the relay, for this session.
    pub(super) record: Option<(quinn::Connection, String)>,
}

impl Shells {
    fn busy(&self) -> bool {
        self.job.as_ref().is_some_and(|j| !j.finished())
    }
}

/// Opening a shell, typing into it and resizing it, and running one command.
pub(super) async fn shell_message(
    msg: ToAgent,
    shells: &mut Shells,
    audit: &Audit,
    out: &mpsc::Sender<ToViewer>,
) -> Option<ToViewer> {
    match msg {
        ToAgent::ShellOpen { cols, rows, user } => {
            if shells.busy() {
                return Some(busy());
            }
            if let Some(message) = chosen_user(user.as_deref(), shells.who.as_ref()) {
                return Some(ToViewer::Error { message });
            }
            let Some(who) = &shells.who else {
                return Some(nobody());
            };
            let transcript = shells
                .record
                .as_ref()
                .map(|(relay, session_id)| record(relay.clone(), session_id.clone()));
            match crate::shell::Shell::open(cols, rows, who, out.clone(), transcript) {
                Ok((shell, ended)) => {
                    audit.note(format!("shell opened as {}", who.describe()));
                    shells.job = Some(Job::Shell(shell, watch_end(ended, audit, "shell".into())));
                    None
                }
                Err(e) => Some(ToViewer::Error {
                    message: e.to_string(),
                }),
            }
        }
        ToAgent::ShellInput(bytes) => match &shells.job {
            Some(Job::Shell(shell, _)) => {
                let input = shell.input();
                let _ = input.send(bytes).await;
                None
            }
            _ => Some(ToViewer::Error {
                message: "no shell is open".into(),
            }),
        },
        ToAgent::ShellResize { cols, rows } => {
            if let Some(Job::Shell(shell, _)) = &shells.job {
                shell.resize(cols, rows);
            }
            None
        }
        ToAgent::Exec { argv, timeout_ms } => {
            if shells.busy() {
                return Some(busy());
            }
            let Some(who) = &shells.who else {
                return Some(nobody());
            };
            let timeout = timeout_ms.map(std::time::Duration::from_millis);
            match crate::shell::exec(&argv, timeout, who, out.clone()) {
                Ok((exec, ended)) => {
                    let line = command_line(&argv);
                    shells.job = Some(Job::Exec(
                        exec,
                        watch_end(ended, audit, format!("exec {line}")),
                    ));
                    None
                }
                Err(message) => {
                    audit.note(format!("exec {} failed: {message}", command_line(&argv)));
                    Some(ToViewer::Error {
                        message: message.to_string(),
                    })
                }
            }
        }
        // Other families are answered elsewhere.
        _ => None,
    }
}

/// Sends a recorded shell's output to the relay on a stream of its own.
fn record(relay: quinn::Connection, session_id: String) -> mpsc::Sender<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        let sent = async {
            let (mut send, _recv) = relay.open_bi().await?;
            write_msg(
                &mut send,
                &tether_protocol::message::AgentStream::Transcript {
                    session_id: session_id.clone(),
                },
                limits::CONTROL,
            )
            .await?;
            while let Some(chunk) = rx.recv().await {
                write_msg(
                    &mut send,
                    &tether_protocol::message::TranscriptChunk(chunk),
                    limits::CONTROL,
                )
                .await?;
            }
            let _ = send.finish();
            let _ = send.stopped().await;
            Ok::<_, tether_net::NetError>(())
        };
        if let Err(e) = sent.await {
            warn!(session = %session_id, "shell transcript not delivered: {e}");
        }
    });
    tx
}

/// A shell or command running in a session.
pub(super) enum Job {
    Shell(crate::shell::Shell, tokio::task::JoinHandle<()>),
    /// The command is held only to kill its process group when dropped.
    Exec(
        #[allow(dead_code)] crate::shell::Exec,
        tokio::task::JoinHandle<()>,
    ),
}

impl Job {
    fn finished(&self) -> bool {
        match self {
            Job::Shell(_, w) | Job::Exec(_, w) => w.is_finished(),
        }
    }
}

/// The technician may not pick an account: a session runs as the desktop user, or as root
/// with the root permission (a `user` naming that same account is accepted, for older clients).
fn chosen_user(user: Option<&str>, who: Option<&RunAs>) -> Option<String> {
    match (user, who) {
        (None, _) => None,
        (Some(""), _) => None,
        (Some(u), Some(w)) if u == w.account.name => None,
        (Some(u), _) => Some(format!(
            "a shell cannot be opened as {}: sessions run as the desktop user, or as root when asked for with --as-root",
            tether_protocol::text::clean(u, 64)
        )),
    }
}

fn busy() -> ToViewer {
    ToViewer::Error {
        message: "a shell or command is already running in this session".into(),
    }
}

/// Records how a shell or command ended on the session's audit record.
fn watch_end(
    ended: crate::shell::Ended,
    audit: &Audit,
    what: String,
) -> tokio::task::JoinHandle<()> {
    let audit = audit.clone();
    tokio::spawn(async move {
        let how = match ended.await {
            Ok(ToViewer::Exited {
                code,
                signal,
                timed_out,
                ..
            }) => match (code, signal, timed_out) {
                (_, _, true) => "timed out, killed".to_string(),
                (Some(c), _, _) => format!("exit {c}"),
                (None, Some(s), _) => format!("killed by signal {s}"),
                _ => "ended".to_string(),
            },
            _ => "ended with the session".to_string(),
        };
        audit.note(format!("{what} → {how}"));
    })
}
