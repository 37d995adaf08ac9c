//! The connection to the agent service. A reader thread connects (retrying every second while the
//! agent is down, and again after it restarts), subscribes, and hands every event to the UI's
//! main loop; a writer thread sends the user's answers on the same connection. Both block on the
//! socket so the UI thread never does: a stuck agent cannot freeze a dialog.
//!
//! On Windows the answers go on a connection of their own each (the agent takes them from any
//! client it admits): the pipe is opened for synchronous I/O, and Windows serialises synchronous
//! I/O on one file object, so a write would wait behind the reader's blocked read until the agent
//! next said something.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;
use tether_net::local::{LocalClient, LocalError};
use tether_protocol::consent::{LocalEvent, LocalRequest};
use tracing::{debug, info, warn};

/// How long to wait before trying to reach the agent again.
const RETRY: Duration = Duration::from_secs(1);

/// What the reader thread reports to the UI.
#[derive(Debug)]
pub enum Update {
    /// Subscribed; the [`LocalEvent::Snapshot`] follows.
    Connected,
    /// The agent cannot be reached (or went away); retrying.
    Disconnected,
    /// The agent is there but refused us; retrying.
    Refused(String),
    Event(LocalEvent),
}

enum Job {
    Send(LocalRequest),
    /// Answered once everything queued before it has been written.
    Flush(mpsc::Sender<()>),
}

/// The connection currently used for writing; `None` while disconnected.
type Slot = Arc<Mutex<Option<LocalClient>>>;

/// Handle for sending requests to the agent; cheap to clone into button handlers.
#[derive(Clone)]
pub struct Ipc {
    jobs: mpsc::Sender<Job>,
}

impl Ipc {
    /// Starts both threads. `deliver` runs on the reader thread and returns false once the UI is
    /// gone, which ends the thread.
    pub fn start(
        socket: PathBuf,
        deliver: impl Fn(Update) -> bool + Send + 'static,
    ) -> std::io::Result<Self> {
        let slot: Slot = Arc::new(Mutex::new(None));
        let (jobs, rx) = mpsc::channel();
        let writer_slot = slot.clone();
        let writer_socket = socket.clone();
        thread::Builder::new()
            .name("agent-writer".into())
            .spawn(move || write_loop(&rx, &writer_slot, &writer_socket))?;
        thread::Builder::new()
            .name("agent-reader".into())
            .spawn(move || read_loop(&socket, &slot, &deliver))?;
        Ok(Self { jobs })
    }

    /// Queues a request; its `Done`/`Error` answer arrives as an ordinary event.
    pub fn send(&self, req: LocalRequest) {
        // The writer thread only ends with the process, so a failed send cannot really happen.
        if self.jobs.send(Job::Send(req)).is_err() {
            warn!("the agent connection thread has stopped; restart tether-tray");
        }
    }

    /// Waits (at most `timeout`) until the requests queued so far have been written, so that
    /// answers given just before quitting are not lost.
    pub fn flush(&self, timeout: Duration) {
        let (tx, rx) = mpsc::channel();
        if self.jobs.send(Job::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(timeout);
        }
    }
}

fn lock(slot: &Slot) -> MutexGuard<'_, Option<LocalClient>> {
    // A panic elsewhere while holding the lock leaves a usable Option behind.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_loop(socket: &Path, slot: &Slot, deliver: &dyn Fn(Update) -> bool) {
    // Say why the agent is unavailable once per outage (and when the reason changes), not every
    // second.
    let mut reported: Option<String> = None;
    loop {
        let (mut client, snapshot) = match subscribe(socket) {
            Ok(subscribed) => subscribed,
            Err(failure) => {
                let (line, update) = match failure {
                    Failure::Unreachable(e) => (e.to_string(), Update::Disconnected),
                    Failure::Refused(message) => (
                        format!("the Tether agent refused this tray app: {message}"),
                        Update::Refused(message),
                    ),
                };
                if reported.as_ref() != Some(&line) {
                    warn!("{line}; retrying every second");
                    reported = Some(line);
                    if !deliver(update) {
                        return;
                    }
                }
                thread::sleep(RETRY);
                continue;
            }
        };
        match client.try_clone() {
            Ok(writer) => *lock(slot) = Some(writer),
            Err(e) => {
                warn!("cannot use the agent connection: {e}; reconnecting");
                thread::sleep(RETRY);
                continue;
            }
        }
        info!(socket = %socket.display(), "connected to the Tether agent");
        reported = None;
        if !deliver(Update::Connected) || !deliver(Update::Event(snapshot)) {
            return;
        }
        loop {
            match client.recv() {
                Ok(event) => {
                    debug!(?event, "from the agent");
                    if !deliver(Update::Event(event)) {
                        return;
                    }
                }
                Err(e) => {
                    // Also on a malformed message: the stream cannot be trusted to be in step.
                    warn!("{e}; reconnecting");
                    break;
                }
            }
        }
        if let Some(old) = lock(slot).take() {
            old.shutdown();
        }
        if !deliver(Update::Disconnected) {
            return;
        }
        thread::sleep(RETRY);
    }
}

enum Failure {
    Unreachable(LocalError),
    /// The agent answered the subscription with an error (e.g. this user does not own the
    /// desktop): retrying will not help until something changes, so it is reported as such.
    Refused(String),
}

/// Connects and subscribes; the agent's answer to a subscription is a snapshot.
fn subscribe(socket: &Path) -> Result<(LocalClient, LocalEvent), Failure> {
    let mut client = LocalClient::connect(socket).map_err(Failure::Unreachable)?;
    client
        .send(&LocalRequest::Subscribe)
        .map_err(Failure::Unreachable)?;
    match client.recv().map_err(Failure::Unreachable)? {
        snapshot @ LocalEvent::Snapshot { .. } => Ok((client, snapshot)),
        LocalEvent::Error { message } => Err(Failure::Refused(message)),
        other => Err(Failure::Refused(format!(
            "unexpected first message {other:?} (is the agent the same version as the tray?)"
        ))),
    }
}

fn write_loop(jobs: &mpsc::Receiver<Job>, slot: &Slot, socket: &Path) {
    for job in jobs {
        match job {
            Job::Send(req) if cfg!(windows) => send_alone(socket, &req),
            Job::Send(req) => send_subscribed(slot, &req),
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Sends `req` on the subscribed connection.
fn send_subscribed(slot: &Slot, req: &LocalRequest) {
    let mut guard = lock(slot);
    let Some(client) = guard.as_mut() else {
        warn!(
            "not connected to the Tether agent; could not {}",
            describe(req)
        );
        return;
    };
    match client.send(req) {
        Ok(()) => info!("sent: {}", describe(req)),
        Err(e) => {
            warn!("could not {}: {e}", describe(req));
            // Wakes the reader, which reconnects.
            client.shutdown();
            *guard = None;
        }
    }
}

/// Sends `req` on a connection of its own and logs the agent's answer (Windows: see the module
/// documentation; used there only).
fn send_alone(socket: &Path, req: &LocalRequest) {
    match tether_net::local::request(socket, req) {
        Ok(LocalEvent::Error { message }) => {
            warn!("the agent refused to {}: {message}", describe(req));
        }
        Ok(LocalEvent::Done { message }) => {
            info!("sent: {}", describe(req));
            info!("agent: {message}");
        }
        Ok(other) => {
            info!("sent: {}", describe(req));
            debug!(?other, "agent answered");
        }
        Err(e) => warn!("could not {}: {e}", describe(req)),
    }
}

/// For logs: what a request does (without the rating comment, which is the user's own words).
pub fn describe(req: &LocalRequest) -> String {
    match req {
        LocalRequest::Subscribe => "subscribe".into(),
        LocalRequest::List => "list".into(),
        LocalRequest::Approve { id } => format!("approve {id}"),
        LocalRequest::Deny { id } => format!("deny {id}"),
        LocalRequest::End { id } => format!("end {id}"),
        LocalRequest::Rate { id, rating, .. } => format!("rate {id} {rating}/5"),
        LocalRequest::Reply { id, .. } => format!("reply to message {id}"),
    }
}
