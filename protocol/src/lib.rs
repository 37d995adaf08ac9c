//! Tether's wire protocol: the messages every peer exchanges, how they are framed and encoded,
//! and the connection state machines that drive them.
//!
//! This crate does no I/O and knows nothing of tokio or QUIC. Time is passed in, bytes are passed
//! in, and decisions come out, so every rule here is tested deterministically in memory (in the
//! style of `quinn-proto` and `rustls`). The QUIC glue lives in `tether-net`.
//!
//! Invariants:
//! * every frame is length-prefixed and its length is checked against a hard limit *before* any
//!   allocation ([`frame`]);
//! * bincode is confined to [`codec`]; decoding arbitrary bytes returns a typed error, never panics;
//! * every connection opens with a [`message::Hello`] whose first field is the protocol version, so
//!   any future version can still be refused with a clear reason.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod backoff;
pub mod codec;
pub mod conn;
pub mod consent;
pub mod decision;
pub mod device;
pub mod frame;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod helper;
pub mod history;
pub mod identity;
pub mod indexed;
pub mod inventory;
pub mod keys;
pub mod liveness;
pub mod message;
pub mod pace;
pub mod palette;
pub mod paths;
pub mod planes;
pub mod scroll;
pub mod session;
pub mod text;
pub mod tiles;
pub mod token;
pub mod version;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
/// ALPN identifier negotiated in the TLS handshake of every Tether QUIC connection.
pub const ALPN: &[u8] = b"tether/1";

/// Hard frame size limits, in bytes of payload.
pub mod limits {
    /// The `Hello` and its reply.
    pub const HELLO: usize = 4 * 1024;
    /// Control messages: heartbeats, requests, small replies.
    pub const CONTROL: usize = 64 * 1024;
    /// Enrollment (carries a CSR / certificates in PEM).
    pub const ENROLL: usize = 32 * 1024;
    /// Bulk replies and inventory payloads.
    pub const BULK: usize = 16 * 1024 * 1024;
}
