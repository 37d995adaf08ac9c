//! Acting as another user on Linux.
//!
//! - Processes (shells on a PTY, commands) start through `setpriv --reuid --regid
//!   --init-groups` (util-linux): portable-pty offers no hook between fork and exec, and this
//!   crate forbids the `unsafe` a `pre_exec` would need, so a tiny exec-only helper does the
//!   switch. `setpriv` sets the user's real, effective and saved ids and their supplementary
//!   groups from the group database (std's `Command::uid` would drop every supplementary group),
//!   then execs the command: the command keeps the pid, so its process group is still the
//!   agent's to kill.
//! - File access runs on a thread that switches its own credentials (Linux keeps credentials
//!   per thread at the syscall level; rustix calls the raw syscalls, not glibc's process-wide
//!   wrappers): supplementary groups, then gid, then the effective uid. The real and saved uid
//!   stay as they were (0), so the user can neither signal nor ptrace that thread.

/// Why a process cannot be started as another user.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "setpriv (util-linux) is missing on the device; it is needed to run as the desktop user"
    )]
    NoSetpriv,
}

/// The program and arguments to put in front of a command so that it runs as `uid`/`gid` with
/// the user's supplementary groups.
pub fn switch_wrapper(uid: u32, gid: u32) -> Result<Vec<String>, CredentialsError> {
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or(CredentialsError::NoSetpriv)?;
    Ok(vec![
        setpriv.to_string(),
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--init-groups".to_string(),
        "--".to_string(),
    ])
}

/// Gives the calling thread (only it) the groups, gid and effective uid of a user. Only ever
/// call it on a thread that ends with the work it does as that user.
pub fn become_on_this_thread(uid: u32, gid: u32, groups: &[u32]) -> std::io::Result<()> {
    use rustix::thread::{Gid, Uid};
    use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
    let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let gid = Gid::from_raw(gid);
    // Order matters: after the uid changes, the thread may no longer change its groups.
    set_thread_groups(&groups)
        .and_then(|()| set_thread_res_gid(gid, gid, gid))
        .and_then(|()| set_thread_res_uid(None, Uid::from_raw(uid), None))
        .map_err(Into::into)
}
