//! The technician client library behind the `tether` command: where its configuration lives,
//! requests to the relay, and how results are shown (tables for people, JSON for scripts).
#![forbid(unsafe_code)]

pub mod cmd;
pub mod health;
pub mod keymap;
pub mod ops;
pub mod output;
pub mod relay;
pub mod remote;
pub mod safe;
pub mod viewer;

use std::path::PathBuf;

pub const SOFTWARE: &str = concat!("tether ", env!("CARGO_PKG_VERSION"));

/// `$XDG_CONFIG_HOME/tether`, else `~/.config/tether`.
pub fn default_config_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("tether");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".config/tether"),
        None => PathBuf::from(".tether"),
    }
}
