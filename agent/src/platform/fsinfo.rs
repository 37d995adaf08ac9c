//! What every platform's users and link-safe file access (`users`, `fs` in `linux/` and
//! `windows/`) answer with.

use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// Why a directory or file could not be opened without following a link.
#[derive(Debug, Error)]
pub enum LinkSafeError {
    #[error("not found")]
    NotFound,
    /// The name itself is a symbolic link.
    #[error("is a symlink")]
    Symlink,
    /// The name, or a directory on the way to it, is a symbolic link.
    #[error("is or passes through a symlink")]
    ThroughSymlink,
    #[error("not a directory")]
    NotDirectory,
    /// The system cannot open without following links (Linux before 5.6: no `openat2`).
    #[error("link-safe opening is not supported by this kernel")]
    Unsupported,
    #[error(transparent)]
    Io(io::Error),
}

/// What a name is, looked at without following it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Symlink,
    Other,
}

/// What the file system says about a file (never about a link's target).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    pub kind: Kind,
    pub size: u64,
    /// Permission bits (`0o777`; on Windows 0o444 for a read-only file, 0o666 otherwise,
    /// 0o777 for a directory).
    pub mode: u32,
    /// The owner's uid (on Windows always 0: the agent acts as no other account there).
    pub owner: u32,
    /// How many names the file has.
    pub links: u64,
}

/// A user's identity: on Linux from the user database (NSS: local files, LDAP, …); on Windows
/// the agent's own account (uid 0), the only one it acts as there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, primary included.
    pub groups: Vec<u32>,
    pub name: String,
    pub home: PathBuf,
    pub shell: PathBuf,
}
