//! The device's clipboard (text), through arboard. One thread owns the clipboard for the life of
//! the agent: on X11 the owner must stay alive to serve the text it set, after the session that
//! set it has ended.

use std::sync::OnceLock;
use std::sync::mpsc;

enum Cmd {
    Get(mpsc::Sender<Result<String, String>>),
    Set(String, mpsc::Sender<Result<(), String>>),
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
                            let _ = reply.send(c.get_text().map_err(|e| e.to_string()));
                        }
                        (Cmd::Set(text, reply), Some(c)) => {
                            let _ = reply.send(c.set_text(text).map_err(|e| e.to_string()));
                        }
                        (Cmd::Get(reply), None) => {
                            let _ = reply.send(Err("no clipboard (is DISPLAY set?)".into()));
                        }
                        (Cmd::Set(_, reply), None) => {
                            let _ = reply.send(Err("no clipboard (is DISPLAY set?)".into()));
                        }
                    }
                }
            });
        Mutexed(std::sync::Mutex::new(tx))
    })
}

struct Mutexed(std::sync::Mutex<mpsc::Sender<Cmd>>);

fn send(cmd: Cmd) -> Result<(), String> {
    worker()
        .0
        .lock()
        .map_err(|_| "clipboard unavailable".to_string())?
        .send(cmd)
        .map_err(|_| "clipboard thread ended".to_string())
}

/// Blocking: call from a blocking context.
pub fn get() -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    send(Cmd::Get(tx))?;
    rx.recv()
        .map_err(|_| "clipboard thread ended".to_string())?
}

/// Blocking: call from a blocking context.
pub fn set(text: String) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    send(Cmd::Set(text, tx))?;
    rx.recv()
        .map_err(|_| "clipboard thread ended".to_string())?
}
