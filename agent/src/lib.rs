//! The Tether agent: keeps one connection to the relay open for as long as the workstation runs,
//! reconnecting with backoff when the relay or the network goes away. `main.rs` is CLI glue.
// No unsafe code, except on Windows in the FFI modules of `platform::windows` (each allows it by
// name, keeps every block small with its reason, and wraps handles in owning types).
#![cfg_attr(not(windows), forbid(unsafe_code))]
#![cfg_attr(windows, deny(unsafe_code))]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod account;
pub mod collect;
pub mod consent;
pub mod files;
pub mod health;
pub mod input;
pub mod ipc;
pub mod platform;
pub mod reporter;
pub mod screen;
pub mod service;
pub mod session;
pub mod shell;
pub mod stream;

/// `name version` sent in hellos and status reports.
pub const SOFTWARE: &str = concat!("tether-agent ", env!("CARGO_PKG_VERSION"));

pub use platform::{default_state_dir, host};
