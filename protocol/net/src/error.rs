//! Errors a user can act on.

use quinn::ConnectionError;
use tether_protocol::message::close_code;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetError {
    /// The relay's TLS stack rejected our client certificate.
    #[error("certificate not accepted by relay: {0}")]
    AuthRejected(String),
    /// We rejected the relay's certificate.
    #[error("relay certificate not trusted: {0}")]
    ServerUntrusted(String),
    #[error("cannot reach relay at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("relay refused: {0}")]
    Refused(String),
    /// The relay turned a new connection away before the handshake: too many new connections
    /// from this address. It is up; retrying in a few seconds helps.
    #[error(
        "relay is busy (too many new connections from this address); try again in a few seconds"
    )]
    Busy,
    #[error("relay closed the connection: {0}")]
    Closed(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Name of a TLS alert, for messages.
fn alert_name(code: u8) -> &'static str {
    match code {
        40 => "handshake failure",
        42 => "bad certificate",
        43 => "unsupported certificate",
        44 => "certificate revoked",
        45 => "certificate expired",
        46 => "certificate unknown",
        48 => "unknown CA (issued by another organisation's CA?)",
        49 => "access denied",
        51 => "decrypt error",
        116 => "certificate required",
        120 => "no application protocol",
        _ => "TLS alert",
    }
}

/// Alerts the server sends when it does not like the client's certificate.
///
/// `decrypt_error` is among them: a client certificate whose issuer has the same name as the
/// relay's CA but another key fails its signature check, and the relay answers with it.
fn is_client_cert_alert(code: u8) -> bool {
    matches!(code, 42 | 43 | 44 | 45 | 46 | 48 | 49 | 51 | 116)
}

impl NetError {
    /// Maps a quinn connection error.
    ///
    /// TLS 1.3 trap: a client whose certificate is refused still sees `connect()` succeed; the
    /// refusal arrives later as a CONNECTION_CLOSE carrying a crypto error. That is an
    /// authentication failure, and is reported as one.
    pub fn from_connection(e: &ConnectionError) -> Self {
        match e {
            ConnectionError::ConnectionClosed(close)
                if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
            {
                NetError::Busy
            }
            ConnectionError::ConnectionClosed(close) => {
                let code = u64::from(close.error_code);
                if (0x100..0x200).contains(&code) {
                    let alert = (code & 0xff) as u8;
                    let reason = String::from_utf8_lossy(&close.reason);
                    let detail = if reason.is_empty() {
                        alert_name(alert).to_string()
                    } else {
                        format!("{} ({reason})", alert_name(alert))
                    };
                    if is_client_cert_alert(alert) {
                        NetError::AuthRejected(detail)
                    } else {
                        NetError::Closed(format!("TLS failure: {detail}"))
                    }
                } else {
                    NetError::Closed(close.to_string())
                }
            }
            ConnectionError::ApplicationClosed(close) => {
                let reason = String::from_utf8_lossy(&close.reason).into_owned();
                match u32::try_from(close.error_code.into_inner()) {
                    Ok(close_code::REVOKED) => NetError::AuthRejected(format!("revoked: {reason}")),
                    Ok(close_code::REFUSED) => NetError::Refused(reason),
                    Ok(close_code::SHUTDOWN) => {
                        NetError::Closed(format!("relay is shutting down: {reason}"))
                    }
                    _ if reason.is_empty() => {
                        NetError::Closed(format!("code {}", close.error_code))
                    }
                    _ => NetError::Closed(reason),
                }
            }
            ConnectionError::TransportError(t) => {
                let code = u64::from(t.code);
                if (0x100..0x200).contains(&code) {
                    // Our own TLS stack refused the relay.
                    NetError::ServerUntrusted(t.reason.clone())
                } else {
                    NetError::Protocol(t.to_string())
                }
            }
            ConnectionError::TimedOut => {
                NetError::Timeout("no answer from the relay (is it running and reachable?)".into())
            }
            ConnectionError::Reset => NetError::Lost("reset by the relay".into()),
            ConnectionError::VersionMismatch => {
                NetError::Protocol("peer speaks no supported QUIC version".into())
            }
            ConnectionError::LocallyClosed => NetError::Closed("closed locally".into()),
            other => NetError::Lost(other.to_string()),
        }
    }

    /// True if the relay is up but turned the connection away for now (see [`NetError::Busy`]).
    pub fn is_busy(&self) -> bool {
        matches!(self, NetError::Busy)
    }

    /// True if retrying cannot help until an administrator acts (re-enroll, unrevoke…).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            NetError::AuthRejected(_) | NetError::ServerUntrusted(_)
        )
    }
}

impl From<quinn::ReadError> for NetError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => NetError::from_connection(&c),
            quinn::ReadError::Reset(code) => NetError::Lost(format!("stream reset (code {code})")),
            other => NetError::Lost(other.to_string()),
        }
    }
}

impl From<quinn::ReadExactError> for NetError {
    fn from(e: quinn::ReadExactError) -> Self {
        match e {
            quinn::ReadExactError::ReadError(r) => r.into(),
            quinn::ReadExactError::FinishedEarly(n) => {
                NetError::Protocol(format!("stream ended inside a frame ({n} bytes read)"))
            }
        }
    }
}

impl From<quinn::WriteError> for NetError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => NetError::from_connection(&c),
            other => NetError::Lost(other.to_string()),
        }
    }
}

impl From<ConnectionError> for NetError {
    fn from(e: ConnectionError) -> Self {
        NetError::from_connection(&e)
    }
}

impl From<tether_protocol::codec::CodecError> for NetError {
    fn from(e: tether_protocol::codec::CodecError) -> Self {
        NetError::Protocol(e.to_string())
    }
}
