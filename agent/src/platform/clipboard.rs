//! The desktop's clipboard (text), through arboard (X11 today; arboard also serves Wayland's
//! data-control protocol and Windows). One thread owns the clipboard for the life of the agent:
//! on X11 the owner must stay alive to serve the text it set, after the session that set it has
//! ended.

use std::sync::OnceLock;
use std::sync::mpsc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClipboardError {
    #[error("no clipboard (is DISPLAY set?)")]
    NoClipboard,
    #[error("clipboard unavailable")]
    Poisoned,
    /// There is no desktop to have a clipboard (the reason).
    #[error("{0}")]
    Unavailable(String),
    #[error("clipboard thread ended")]
    ThreadEnded,
    #[error("{0}")]
    Failed(String),
}

enum Cmd {
    Get(mpsc::Sender<Result<String, ClipboardError>>),
    Set(String, mpsc::Sender<Result<(), ClipboardError>>),
}

fn worker() -> &'static Mutexed {
    static WORKER: OnceLock<Mutexed> = OnceLock::new();
    WORKER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Cmd>();
        let _ = std::thread::Builder::new()
            .name("clipboard".into())
            .spawn(move || {
                let mut clip: Option<arboard::Clipboard> = None;
                for cmd in rx {
                    if clip.is_none() {
                        clip = arboard::Clipboard::new().ok();
                    }
                    match (cmd, clip.as_mut()) {
                        (Cmd::Get(reply), Some(c)) => {
                            let _ = reply.send(
                                c.get_text()
                                    .map_err(|e| ClipboardError::Failed(e.to_string())),
                            );
                        }
                        (Cmd::Set(text, reply), Some(c)) => {
                            let _ = reply.send(
                                c.set_text(text)
                                    .map_err(|e| ClipboardError::Failed(e.to_string())),
                            );
                        }
                        (Cmd::Get(reply), None) => {
                            let _ = reply.send(Err(ClipboardError::NoClipboard));
                        }
                        (Cmd::Set(_, reply), None) => {
                            let _ = reply.send(Err(ClipboardError::NoClipboard));
                        }
                    }
                }
            });
        Mutexed(std::sync::Mutex::new(tx))
    })
}

struct Mutexed(std::sync::Mutex<mpsc::Sender<Cmd>>);

fn send(cmd: Cmd) -> Result<(), ClipboardError> {
    worker()
        .0
        .lock()
        .map_err(|_| ClipboardError::Poisoned)?
        .send(cmd)
        .map_err(|_| ClipboardError::ThreadEnded)
}

/// The clipboard through arboard, served by the agent's clipboard thread.
pub struct ArboardClipboard;

impl super::Clipboard for ArboardClipboard {
    fn get(&self) -> Result<String, ClipboardError> {
        let (tx, rx) = mpsc::channel();
        send(Cmd::Get(tx))?;
        rx.recv().map_err(|_| ClipboardError::ThreadEnded)?
    }

    fn set(&self, text: String) -> Result<(), ClipboardError> {
        let (tx, rx) = mpsc::channel();
        send(Cmd::Set(text, tx))?;
        rx.recv().map_err(|_| ClipboardError::ThreadEnded)?
    }
}
