//! The files family of a session's messages: pushes (start, chunks), looking at a path, and
//! pulls, each reported to the audit record.

use super::{Audit, nobody};
use crate::account::RunAs;
use tether_protocol::session::{ToAgent, ToViewer};
use tokio::sync::mpsc;

/// The file side of a session: the push in progress and the pull being sent.
pub(super) struct Transfers {
    pub(super) put: Option<crate::files::Put>,
    pub(super) get: Option<tokio::task::JoinHandle<()>>,
    /// Whom file access runs as (`None` without the files permission).
    pub(super) who: Option<RunAs>,
}

impl Transfers {
    /// Stops the pull being sent, if any.
    pub(super) fn stop_pull(&mut self) {
        if let Some(g) = self.get.take() {
            g.abort();
        }
    }
}

/// Pushes (start, chunks), looking at a path, and pulls.
pub(super) async fn file_message(
    msg: ToAgent,
    files: &mut Transfers,
    audit: &Audit,
    out: &mpsc::Sender<ToViewer>,
) -> Option<ToViewer> {
    let who = || files.who.clone().ok_or_else(nobody);
    match msg {
        ToAgent::PutStart(p) => {
            let who = match who() {
                Ok(w) => w,
                Err(e) => return Some(e),
            };
            files.put = None;
            match tokio::task::block_in_place(|| crate::files::Put::start(&p, &who)) {
                Ok((mut started, offset)) => {
                    if started.is_complete() && offset == 0 {
                        // An empty file: nothing to send.
                        match tokio::task::block_in_place(|| started.finish()) {
                            Ok(d) => {
                                audit.note(started.describe());
                                Some(d)
                            }
                            Err(message) => Some(ToViewer::Error {
                                message: message.to_string(),
                            }),
                        }
                    } else {
                        files.put = Some(started);
                        Some(ToViewer::PutReady { offset })
                    }
                }
                Err(message) => {
                    audit.note(format!("push refused: {message}"));
                    Some(ToViewer::Error {
                        message: message.to_string(),
                    })
                }
            }
        }
        ToAgent::FileChunk(data) => match files.put.as_mut() {
            Some(p) => match tokio::task::block_in_place(|| p.chunk(&data)) {
                Ok(None) => None,
                Ok(Some(done)) => {
                    audit.note(p.describe());
                    files.put = None;
                    Some(done)
                }
                Err(message) => {
                    audit.note(format!("{} failed: {message}", p.describe()));
                    files.put = None;
                    Some(ToViewer::Error {
                        message: message.to_string(),
                    })
                }
            },
            None => Some(ToViewer::Error {
                message: "no push in progress".into(),
            }),
        },
        ToAgent::Stat { path } => {
            let who = match who() {
                Ok(w) => w,
                Err(e) => return Some(e),
            };
            Some(
                match tokio::task::spawn_blocking(move || crate::files::stat(&path, &who)).await {
                    Ok(Ok(entry)) => ToViewer::StatReply(entry),
                    Ok(Err(e)) => ToViewer::Error {
                        message: e.to_string(),
                    },
                    Err(e) => ToViewer::Error {
                        message: e.to_string(),
                    },
                },
            )
        }
        ToAgent::GetStart { path, offset } => {
            let who = match who() {
                Ok(w) => w,
                Err(e) => return Some(e),
            };
            files.stop_pull();
            let out = out.clone();
            let audit = audit.clone();
            files.get = Some(tokio::spawn(async move {
                match crate::files::get(path.clone(), offset, who, out.clone()).await {
                    Ok(ToViewer::FileEnd { size, sha256 }) => audit.note(format!(
                        "pull {path} ({size} bytes from offset {offset}, sha256 {sha256})"
                    )),
                    Ok(_) => {}
                    Err(message) => {
                        audit.note(format!("pull {path} failed: {message}"));
                        let _ = out
                            .send(ToViewer::Error {
                                message: message.to_string(),
                            })
                            .await;
                    }
                }
            }));
            None
        }
        // Other families are answered elsewhere.
        _ => None,
    }
}
