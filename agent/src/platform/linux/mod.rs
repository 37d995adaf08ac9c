//! What a Linux machine gives the service: local IPC with peer identity, the state directory,
//! users and acting as one (per-thread credentials, `setpriv`), commands in process groups, file access that never follows a symbolic link, mounted
//! filesystems, failed service units (systemd), host facts, and the inventory's sources
//! (`/proc`, `/sys`, package databases).

pub mod credentials;
pub mod fs;
pub mod host;
pub mod inventory;
pub mod ipc;
pub mod mounts;
pub mod paths;
pub mod process;
pub mod units;
pub mod users;
