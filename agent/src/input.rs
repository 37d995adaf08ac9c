//! Remote input for a session: one thread applies the viewer's events, in order, to the
//! desktop's input ([`crate::platform::InputSink`]).

use crate::platform::{Desktop, InputError};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;
use tether_protocol::session::{HELD_KEYS_SILENCE_MS, InputEvent};

enum Job {
    Event(
        InputEvent,
        tokio::sync::oneshot::Sender<Result<(), InputError>>,
    ),
    /// The viewer is still there (it holds keys down).
    KeepAlive,
}

/// A session's input: one thread holding one connection to the desktop for the whole session,
/// applying events in order. When the session ends (this is dropped), every key still held is
/// released and the keymap restored.
pub struct Input {
    tx: std::sync::mpsc::Sender<Job>,
}

impl Input {
    pub fn spawn(desktop: Arc<dyn Desktop>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("session-input".into())
            .spawn(move || {
                let mut devices = desktop.input();
                let silence = Duration::from_millis(HELD_KEYS_SILENCE_MS);
                loop {
                    match rx.recv_timeout(silence) {
                        Ok(Job::Event(ev, reply)) => {
                            let _ = reply.send(devices.apply(&ev));
                        }
                        Ok(Job::KeepAlive) => {}
                        // Keys held and the viewer silent: it is gone (killed, cut off), so its
                        // keys must not stay down on the user's desktop until the relay notices.
                        Err(RecvTimeoutError::Timeout) => devices.release_if_held(),
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                // Dropping the devices releases held keys and restores the keymap.
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the input thread: {e}");
        }
        Self { tx }
    }

    /// The viewer said it is still there.
    pub fn keep_alive(&self) {
        let _ = self.tx.send(Job::KeepAlive);
    }

    /// Applies one event; returns once the desktop has it.
    pub async fn apply(&self, ev: InputEvent) -> Result<(), InputError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.tx
            .send(Job::Event(ev, reply))
            .map_err(|_| InputError::Failed("the input thread is gone".into()))?;
        done.await
            .map_err(|_| InputError::Failed("the input thread is gone".into()))?
    }
}
