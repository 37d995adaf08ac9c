//! The agent's local socket, client side: how `tether-tray` and the `tether-agent` terminal
//! commands reach the agent service ([`tether_protocol::consent`] messages, length-prefixed like
//! every other channel, with the control limit). Blocking std I/O: the tray runs a GTK main loop
//! and the terminal commands make one request each, so neither needs a runtime.
//!
//! On Unix the socket is a Unix-domain socket; on Windows it is a named pipe
//! (`\\.\pipe\tether-agent`), which std opens as a file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[cfg(unix)]
type Stream = std::os::unix::net::UnixStream;
#[cfg(windows)]
type Stream = std::fs::File;
use tether_protocol::consent::{LocalEvent, LocalRequest};
use tether_protocol::{codec, frame, limits};
use thiserror::Error;

/// File name of the socket inside a runtime directory.
pub const SOCKET_NAME: &str = "tether-agent.sock";

/// The agent service's named pipe on Windows (one per machine: the service serves the
/// interactive session's user and administrators).
pub const PIPE_NAME: &str = r"\\.\pipe\tether-agent";

#[derive(Debug, Error)]
pub enum LocalError {
    #[error(
        "cannot reach the Tether agent at {path}: {source} (is `tether-agent run` running for this desktop? set TETHER_AGENT_SOCKET to its --socket)"
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("agent connection broken: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad message from the agent: {0}")]
    Protocol(String),
    #[error("the agent closed the connection")]
    Closed,
}

/// The socket the current user's tools use: `$TETHER_AGENT_SOCKET`, else
/// `$XDG_RUNTIME_DIR/tether-agent.sock`, else `/run/user/<uid>/tether-agent.sock`; on Windows
/// the service's named pipe, [`PIPE_NAME`].
pub fn default_socket() -> PathBuf {
    if let Some(p) = std::env::var_os("TETHER_AGENT_SOCKET").filter(|p| !p.is_empty()) {
        return p.into();
    }
    if cfg!(windows) {
        return PathBuf::from(PIPE_NAME);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return Path::new(&dir).join(SOCKET_NAME);
    }
    runtime_socket(current_uid())
}

/// `/run/user/<uid>/tether-agent.sock` (on Windows, the service's pipe).
pub fn runtime_socket(uid: u32) -> PathBuf {
    if cfg!(windows) {
        return PathBuf::from(PIPE_NAME);
    }
    PathBuf::from(format!("/run/user/{uid}")).join(SOCKET_NAME)
}

/// The effective uid of this process (owner of `/proc/self`), 0 if unknown (and on Windows,
/// which has no uids: the agent's Windows code names users by their token, not a number).
pub fn current_uid() -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0)
    }
    #[cfg(not(unix))]
    {
        0
    }
}

pub struct LocalClient {
    stream: Stream,
}

#[cfg(unix)]
fn open(path: &Path) -> std::io::Result<Stream> {
    Stream::connect(path)
}

#[cfg(windows)]
fn open(path: &Path) -> std::io::Result<Stream> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
}

impl LocalClient {
    pub fn connect(path: &Path) -> Result<Self, LocalError> {
        let stream = open(path).map_err(|source| LocalError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self { stream })
    }

    pub fn try_clone(&self) -> Result<Self, LocalError> {
        Ok(Self {
            stream: self.stream.try_clone()?,
        })
    }

    pub fn send(&mut self, req: &LocalRequest) -> Result<(), LocalError> {
        let bytes = codec::to_frame(req, limits::CONTROL)
            .map_err(|e| LocalError::Protocol(e.to_string()))?;
        self.stream.write_all(&bytes)?;
        Ok(())
    }

    /// The next event; blocks. [`LocalError::Closed`] when the agent hung up between messages.
    pub fn recv(&mut self) -> Result<LocalEvent, LocalError> {
        let mut header = [0u8; frame::HEADER_LEN];
        match self.stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(LocalError::Closed);
            }
            Err(e) => return Err(e.into()),
        }
        let len = frame::payload_len(header, limits::CONTROL)
            .map_err(|e| LocalError::Protocol(e.to_string()))?;
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload)?;
        codec::from_payload(&payload).map_err(|e| LocalError::Protocol(e.to_string()))
    }

    /// Closes the connection both ways (wakes a thread blocked in [`LocalClient::recv`]).
    /// A pipe handle cannot be shut down while another thread reads it: on Windows the
    /// connection ends when the last clone is dropped.
    pub fn shutdown(&self) {
        #[cfg(unix)]
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// One request, one answer.
pub fn request(path: &Path, req: &LocalRequest) -> Result<LocalEvent, LocalError> {
    let mut c = LocalClient::connect(path)?;
    let sent = c.send(req);
    // A refused peer is told why and disconnected at once, possibly before our request is
    // written: the refusal waiting to be read is the useful error, not the broken pipe.
    match (c.recv(), sent) {
        (Ok(ev), _) => Ok(ev),
        (Err(_), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
    }
}
