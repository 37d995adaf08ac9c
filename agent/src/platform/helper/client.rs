//! A desktop helper process: started on first use (by its [`Launch`]: as the session's user on
//! Wayland, in the signed-in user's session on Windows), one request at a time over its
//! standard input and output, restarted after it failed (not more often than every few
//! seconds), ended when the desktop is dropped.

use std::io::{BufReader, Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tether_protocol::codec;
use tether_protocol::helper::serve::{ServeError, read_message};
use tether_protocol::helper::{
    FrameCheckError, FrameHeader, FromHelper, HELPER_VERSION, MESSAGE_LIMIT, ToHelper,
};
use thiserror::Error;

/// After a failed start, requests fail at once for this long instead of starting it again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum HelperIoError {
    /// Why the helper cannot be started at all (missing program, nobody signed in …), as a
    /// whole sentence.
    #[error("{0}")]
    Unavailable(String),
    #[error("cannot start the desktop helper: {0}")]
    Spawn(String),
    #[error("the desktop helper stopped: {0}")]
    Io(#[from] std::io::Error),
    #[error("the desktop helper sent a bad message: {0}")]
    Message(#[from] ServeError),
    #[error("the desktop helper sent a bad message: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("the desktop helper sent a bad frame: {0}")]
    BadFrame(#[from] FrameCheckError),
    #[error("the desktop helper speaks version {0}, this agent {HELPER_VERSION}")]
    Version(u16),
    #[error("the desktop helper did not greet")]
    NoHello,
    #[error("{0} (retrying in a few seconds)")]
    Failed(String),
}

/// A reply: a message, or a frame with its pixels.
#[derive(Debug)]
pub enum Reply {
    Message(FromHelper),
    Frame(FrameHeader, Vec<u8>),
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Message(m) => write!(f, "{m:?}"),
            Reply::Frame(h, _) => write!(f, "frame {}×{}", h.width, h.height),
        }
    }
}

/// The helper's process, as the agent holds it.
pub trait HelperProcess: Send {
    /// Whether it has exited.
    fn exited(&mut self) -> bool;
    /// Ends it now and reaps it.
    fn kill(&mut self);
}

impl HelperProcess for std::process::Child {
    fn exited(&mut self) -> bool {
        !matches!(self.try_wait(), Ok(None))
    }

    fn kill(&mut self) {
        let _ = std::process::Child::kill(self);
        let _ = self.wait();
    }
}

/// A started helper: its process and both ends of its standard input and output.
pub struct Launched {
    pub process: Box<dyn HelperProcess>,
    pub stdin: Box<dyn Write + Send>,
    pub stdout: Box<dyn Read + Send>,
}

/// How a platform starts its helper where the user's desktop is.
pub trait Launch: Send + Sync {
    fn launch(&self) -> Result<Launched, HelperIoError>;
    /// Who it runs as, for the log.
    fn describe(&self) -> String;
}

struct Running {
    /// The backend the helper said it uses ("gnome", "wlroots", "portal", "windows").
    backend: String,
    process: Box<dyn HelperProcess>,
    stdin: Box<dyn Write + Send>,
    stdout: BufReader<Box<dyn Read + Send>>,
}

enum State {
    Idle,
    Running(Running),
    Failed(Instant, String),
}

pub struct Helper {
    launch: Box<dyn Launch>,
    state: Mutex<State>,
}

fn next(rd: &mut impl Read) -> Result<FromHelper, HelperIoError> {
    read_message(rd)?.ok_or_else(|| {
        HelperIoError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "it closed its output",
        ))
    })
}

impl Running {
    fn start(launch: &dyn Launch) -> Result<Running, HelperIoError> {
        let Launched {
            process,
            stdin,
            stdout,
        } = launch.launch()?;
        let mut running = Running {
            backend: String::new(),
            process,
            stdin,
            stdout: BufReader::with_capacity(1 << 20, stdout),
        };
        match next(&mut running.stdout) {
            Ok(FromHelper::Hello {
                version,
                backend,
                compositor,
            }) => {
                if version != HELPER_VERSION {
                    running.stop();
                    return Err(HelperIoError::Version(version));
                }
                tracing::info!(who = %launch.describe(), %backend, %compositor, "desktop helper started");
                running.backend = backend;
                Ok(running)
            }
            Ok(_) => {
                running.stop();
                Err(HelperIoError::NoHello)
            }
            Err(e) => {
                // Most often the helper found no way to share this desktop and said why on
                // its standard error (in the agent's log); its exit closes the pipe.
                running.stop();
                Err(e)
            }
        }
    }

    fn exchange(&mut self, req: &ToHelper) -> Result<Reply, HelperIoError> {
        self.stdin
            .write_all(&codec::to_frame(req, MESSAGE_LIMIT)?)?;
        self.stdin.flush()?;
        match next(&mut self.stdout)? {
            FromHelper::Frame(mut header) => {
                let len = header.check()?;
                let mut pixels = vec![0u8; len];
                self.stdout.read_exact(&mut pixels)?;
                Ok(Reply::Frame(header, pixels))
            }
            FromHelper::Clipboard(t) if t.len() > tether_protocol::helper::MAX_CLIPBOARD => {
                Ok(Reply::Message(FromHelper::Error(
                    tether_protocol::helper::HelperError::Clipboard(
                        "the clipboard text is too long".into(),
                    ),
                )))
            }
            m => Ok(Reply::Message(m)),
        }
    }

    /// Closes its input (it stops sharing and exits), and reaps it off this thread: it may
    /// take a moment, and the caller may be an async task.
    fn stop(self) {
        let Running {
            mut process, stdin, ..
        } = self;
        drop(stdin);
        let _ = std::thread::Builder::new()
            .name("desktop-helper-exit".into())
            .spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(5);
                while !process.exited() {
                    if Instant::now() >= deadline {
                        process.kill();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
    }
}

impl Helper {
    pub fn new(launch: Box<dyn Launch>) -> Self {
        Helper {
            launch,
            state: Mutex::new(State::Idle),
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(
            *self.state.lock().unwrap_or_else(|p| p.into_inner()),
            State::Running(_)
        )
    }

    /// The running helper, started when it is not running (and did not fail just now).
    fn running<'a>(&self, state: &'a mut State) -> Result<&'a mut Running, HelperIoError> {
        if let State::Failed(at, why) = &*state {
            if at.elapsed() < RETRY_AFTER {
                return Err(HelperIoError::Failed(why.clone()));
            }
            *state = State::Idle;
        }
        if matches!(*state, State::Idle) {
            match Running::start(self.launch.as_ref()) {
                Ok(r) => *state = State::Running(r),
                Err(e) => {
                    tracing::warn!("{e}");
                    *state = State::Failed(Instant::now(), e.to_string());
                    return Err(e);
                }
            }
        }
        match state {
            State::Running(r) => Ok(r),
            _ => Err(HelperIoError::NoHello),
        }
    }

    /// The backend of the helper, starting it if needed; `None` when it cannot start.
    pub fn backend(&self) -> Option<String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.running(&mut state).ok().map(|r| r.backend.clone())
    }

    /// One request and its reply, starting the helper when it is not running.
    pub fn request(&self, req: &ToHelper) -> Result<Reply, HelperIoError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let running = self.running(&mut state)?;
        match running.exchange(req) {
            Ok(r) => Ok(r),
            Err(e) => {
                tracing::warn!("{e}");
                if let State::Running(r) =
                    std::mem::replace(&mut *state, State::Failed(Instant::now(), e.to_string()))
                {
                    r.stop();
                }
                Err(e)
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let state = std::mem::replace(
            self.state.get_mut().unwrap_or_else(|p| p.into_inner()),
            State::Idle,
        );
        if let State::Running(r) = state {
            r.stop();
        }
    }
}
