//! The `tether-wayland` process: started on first use as the session's user, one request at a
//! time over its standard input and output, restarted after it failed (not more often than
//! every few seconds), ended when the desktop is dropped.

use super::SessionEnv;
use std::io::{BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tether_protocol::helper::{
    FrameCheckError, FrameHeader, FromHelper, HELPER_VERSION, MESSAGE_LIMIT, ToHelper,
};
use tether_protocol::{codec, frame};
use thiserror::Error;

/// After a failed start, requests fail at once for this long instead of starting it again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum HelperIoError {
    #[error(
        "the Wayland helper {0} is missing (it is installed next to tether-agent, or named by TETHER_WAYLAND_HELPER)"
    )]
    NotFound(PathBuf),
    #[error("cannot start the Wayland helper: {0}")]
    Spawn(String),
    #[error("the Wayland helper stopped: {0}")]
    Io(#[from] std::io::Error),
    #[error("the Wayland helper sent a bad message: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("the Wayland helper sent a bad message: {0}")]
    Frame(#[from] frame::FrameError),
    #[error("the Wayland helper sent a bad frame: {0}")]
    BadFrame(#[from] FrameCheckError),
    #[error("the Wayland helper speaks version {0}, this agent {HELPER_VERSION}")]
    Version(u16),
    #[error("the Wayland helper did not greet")]
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

struct Running {
    /// The backend the helper said it uses ("gnome", "wlroots", "portal").
    backend: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

enum State {
    Idle,
    Running(Running),
    Failed(Instant, String),
}

pub struct Helper {
    env: SessionEnv,
    state: Mutex<State>,
}

/// The helper's executable: `TETHER_WAYLAND_HELPER`, else `tether-wayland` beside this one.
fn program() -> Result<PathBuf, HelperIoError> {
    let path = match std::env::var_os("TETHER_WAYLAND_HELPER") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("tether-wayland")))
            .unwrap_or_else(|| PathBuf::from("/usr/local/bin/tether-wayland")),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(HelperIoError::NotFound(path))
    }
}

fn read_message(rd: &mut impl Read) -> Result<FromHelper, HelperIoError> {
    let mut header = [0u8; frame::HEADER_LEN];
    rd.read_exact(&mut header)?;
    let len = frame::payload_len(header, MESSAGE_LIMIT)?;
    let mut payload = vec![0u8; len];
    rd.read_exact(&mut payload)?;
    Ok(codec::from_payload(&payload)?)
}

impl Running {
    fn start(env: &SessionEnv) -> Result<Running, HelperIoError> {
        let program = program()?;
        let account = crate::platform::users::Account::lookup(env.uid)
            .map_err(|e| HelperIoError::Spawn(e.to_string()))?;
        let mut cmd = if env.uid == tether_net::local::current_uid() {
            Command::new(&program)
        } else {
            let wrapper = crate::platform::credentials::switch_wrapper(env.uid, account.gid)
                .map_err(|e| HelperIoError::Spawn(e.to_string()))?;
            let mut c = Command::new(&wrapper[0]);
            c.args(&wrapper[1..]).arg(&program);
            c
        };
        // Nothing of the agent's environment: the user's account and the session's names.
        cmd.env_clear();
        for (k, v) in account.env() {
            cmd.env(k, v);
        }
        for (k, v) in &env.vars {
            cmd.env(k, v);
        }
        for k in ["RUST_LOG", "TETHER_WAYLAND_BACKEND"] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        let mut child = cmd
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| HelperIoError::Spawn(format!("{}: {e}", program.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HelperIoError::Spawn("no pipes".into()));
        };
        let mut running = Running {
            backend: String::new(),
            child,
            stdin,
            stdout: BufReader::with_capacity(1 << 20, stdout),
        };
        match read_message(&mut running.stdout) {
            Ok(FromHelper::Hello {
                version,
                backend,
                compositor,
            }) => {
                if version != HELPER_VERSION {
                    running.stop();
                    return Err(HelperIoError::Version(version));
                }
                tracing::info!(uid = env.uid, %backend, %compositor, "Wayland helper started");
                running.backend = backend;
                Ok(running)
            }
            Ok(_) => {
                running.stop();
                Err(HelperIoError::NoHello)
            }
            Err(e) => {
                // Most often the helper found no way to share this desktop and said why on
                // its standard error (in the agent's log); its exit status closes the pipe.
                running.stop();
                Err(e)
            }
        }
    }

    fn exchange(&mut self, req: &ToHelper) -> Result<Reply, HelperIoError> {
        self.stdin
            .write_all(&codec::to_frame(req, MESSAGE_LIMIT)?)?;
        self.stdin.flush()?;
        match read_message(&mut self.stdout)? {
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
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let _ = std::thread::Builder::new()
            .name("wayland-helper-exit".into())
            .spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) => return,
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            return;
                        }
                    }
                }
            });
    }
}

impl Helper {
    pub fn new(env: SessionEnv) -> Self {
        Helper {
            env,
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
            match Running::start(&self.env) {
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
