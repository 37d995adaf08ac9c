//! The agent's local socket, client side: how `tether-tray` and the `tether-agent` terminal
//! commands reach the agent service ([`tether_protocol::consent`] messages, length-prefixed like
//! every other channel, with the control limit). Blocking std I/O: the tray runs a GTK main loop
//! and the terminal commands make one request each, so neither needs a runtime.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use tether_protocol::consent::{LocalEvent, LocalRequest};
use tether_protocol::{codec, frame, limits};
use thiserror::Error;

/// File name of the socket inside a runtime directory.
pub const SOCKET_NAME: &str = "tether-agent.sock";

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
/// `$XDG_RUNTIME_DIR/tether-agent.sock`, else `/run/user/<uid>/tether-agent.sock`.
pub fn default_socket() -> PathBuf {
    if let Some(p) = std::env::var_os("TETHER_AGENT_SOCKET").filter(|p| !p.is_empty()) {
        return p.into();
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return Path::new(&dir).join(SOCKET_NAME);
    }
    runtime_socket(current_uid())
}

/// `/run/user/<uid>/tether-agent.sock`.
pub fn runtime_socket(uid: u32) -> PathBuf {
    PathBuf::from(format!("/run/user/{uid}")).join(SOCKET_NAME)
}

/// The effective uid of this process (owner of `/proc/self`), 0 if unknown.
pub fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

pub struct LocalClient {
    stream: UnixStream,
}

impl LocalClient {
    pub fn connect(path: &Path) -> Result<Self, LocalError> {
        let stream = UnixStream::connect(path).map_err(|source| LocalError::Connect {
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
    pub fn shutdown(&self) {
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
