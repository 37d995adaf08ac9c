//! What a Linux machine gives the service: local IPC with peer identity, the state directory,
//! shells and commands on pseudo-terminals and in process groups, and file access that never
//! follows a symbolic link.

pub mod fs;
pub mod ipc;
pub mod paths;
pub mod process;
pub mod pty;
pub mod users;
