//! Processes on Linux: waiting for a child without reaping it, killing a process group or a
//! whole terminal session, finding a program on a search path.

/// Blocks until process `pid` (a child of the agent) has exited, without reaping it: while it
/// is a zombie its pid, and so its process group and session ids, cannot be reused.
pub fn wait_exited(pid: i32) {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    loop {
        match waitid(
            Id::Pid(nix::unistd::Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
    }
}

/// Kills every process of the terminal session led by `sid` (the shell and all its jobs,
/// background ones included). Processes that started a session of their own are not found.
pub fn kill_session(sid: i32) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the command name (which may hold spaces and parentheses):
        // state ppid pgrp session …
        let session = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(3))
            .and_then(|s| s.parse::<i32>().ok());
        if session == Some(sid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Where `program` would be found (a path, or a name searched in `path`), for a clear error
/// before anything starts.
pub fn find_program(program: &str, path: &str) -> Result<std::path::PathBuf, std::io::Error> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return if executable(&p) {
            Ok(p)
        } else {
            Err(std::io::Error::from(nix::errno::Errno::ENOENT))
        };
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| executable(p))
        .ok_or_else(|| std::io::Error::from(nix::errno::Errno::ENOENT))
}

pub fn kill_group(pgid: i32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Starts the command in a process group of its own.
pub fn own_process_group(cmd: &mut tokio::process::Command) -> &mut tokio::process::Command {
    cmd.process_group(0)
}

/// The signal that ended a process, if one did.
pub fn exit_signal(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// Nothing to do on Linux: a command's own process group (or a shell's session) already holds
/// everything it starts. (Windows puts it in a job object here.)
pub fn adopt(_pid: u32) {}
