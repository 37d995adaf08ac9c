//! QUIC + mutual TLS glue shared by the relay, the agent and the technician client.
//!
//! * [`client`] — connecting to a relay: enrollment, stored credentials, the hello handshake.
//! * [`pki`] — fingerprints, PEM files, identities read from certificates, owner-only key files.
//! * [`tls`] — quinn/rustls configurations: TLS 1.3 only, ring, our ALPN, the org CA as the only
//!   root, and the CA-pinning verifier used during enrollment.
//! * [`framed`] — reading and writing length-prefixed messages on QUIC streams with hard limits.
//! * [`local`] — the agent's local socket, as the tray app and terminal commands use it.
//! * [`error`] — turning transport failures into errors a user can act on (a refused client
//!   certificate is reported as such, not as "connection lost").
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod framed;
pub mod local;
pub mod logging;
pub mod pki;
pub mod plain_udp;
pub mod tls;

pub use error::NetError;
