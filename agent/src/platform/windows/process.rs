//! Commands and their children on Windows. Each command or shell is put in a job object as soon
//! as it starts ([`adopt`]); killing "its group" or "its session" terminates the job, so what it
//! started in the background dies with it, and the job is closed with kill-on-close so nothing
//! survives the agent either.
//!
//! The process is assigned to its job just after it was created, not created suspended inside
//! it: a child it starts in that first instant would escape the job (std and tokio do not let a
//! caller resume a suspended process). Child processes inherit the job from then on.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject,
};
use windows_sys::Win32::System::Threading::{
    INFINITE, OpenProcess, PROCESS_SET_QUOTA, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE,
    TerminateProcess, WaitForSingleObject,
};

/// An owned kernel handle, closed on drop.
pub(super) struct Handle(pub(super) HANDLE);

// SAFETY: a kernel handle is a process-wide value, usable from any thread.
unsafe impl Send for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle is owned (opened by this module) and closed once.
        unsafe { CloseHandle(self.0) };
    }
}

// SAFETY: the handle is only passed to kernel calls, which are thread-safe.
unsafe impl Sync for Handle {}

fn open_process(pid: u32, access: u32) -> Option<Handle> {
    // SAFETY: OpenProcess takes plain values and returns a handle or null.
    let h = unsafe { OpenProcess(access, 0, pid) };
    (!h.is_null()).then_some(Handle(h))
}

/// The jobs of running commands and shells, by the pid of the process that was adopted.
static JOBS: Mutex<Option<HashMap<u32, Handle>>> = Mutex::new(None);

/// A new job whose processes are all killed when its last handle closes.
pub(super) fn kill_on_close_job() -> Option<Handle> {
    // SAFETY: null attributes and name make an anonymous job; the result is checked.
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        tracing::warn!(
            "cannot create a job object: {}",
            std::io::Error::last_os_error()
        );
        return None;
    }
    let job = Handle(job);
    // SAFETY: a zeroed JOBOBJECT_EXTENDED_LIMIT_INFORMATION is a valid "no limits" value.
    let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    // SAFETY: the pointer and size describe `limits`, alive for the call.
    let set = unsafe {
        SetInformationJobObject(
            job.0,
            JobObjectExtendedLimitInformation,
            (&limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
            std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    };
    if set == 0 {
        tracing::warn!(
            "cannot set the job's limits: {}",
            std::io::Error::last_os_error()
        );
    }
    Some(job)
}

/// Puts `pid` (just started) into a job of its own, killed when closed.
pub fn adopt(pid: u32) {
    let Some(job) = kill_on_close_job() else {
        return;
    };
    let Some(process) = open_process(pid, PROCESS_SET_QUOTA | PROCESS_TERMINATE) else {
        return;
    };
    // SAFETY: both handles are valid and owned for the call.
    if unsafe { AssignProcessToJobObject(job.0, process.0) } == 0 {
        tracing::warn!(
            pid,
            "cannot put the command in a job: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    if let Ok(mut jobs) = JOBS.lock() {
        jobs.get_or_insert_with(HashMap::new).insert(pid, job);
    }
}

/// Blocks until `pid` has exited (returns at once if it cannot be opened: it is gone).
pub fn wait_exited(pid: i32) {
    let Some(p) = u32::try_from(pid)
        .ok()
        .and_then(|pid| open_process(pid, PROCESS_SYNCHRONIZE))
    else {
        return;
    };
    // SAFETY: a valid process handle; INFINITE waits for its exit.
    unsafe { WaitForSingleObject(p.0, INFINITE) };
}

/// Kills everything in the job `pid` was adopted into (or `pid` alone if it has none).
fn kill_job(pid: i32) {
    let Ok(pid) = u32::try_from(pid) else {
        return;
    };
    let job = JOBS
        .lock()
        .ok()
        .and_then(|mut jobs| jobs.as_mut().and_then(|j| j.remove(&pid)));
    match job {
        // SAFETY: a valid job handle; closing it afterwards (drop) kills what is left too.
        Some(job) => unsafe {
            TerminateJobObject(job.0, 1);
        },
        None => {
            if let Some(p) = open_process(pid, PROCESS_TERMINATE) {
                // SAFETY: a valid process handle opened for termination.
                unsafe { TerminateProcess(p.0, 1) };
            }
        }
    }
}

/// Kills the shell's job (everything it started).
pub fn kill_session(sid: i32) {
    kill_job(sid);
}

/// Kills the command's job (everything it started).
pub fn kill_group(pgid: i32) {
    kill_job(pgid);
}

/// Commands start without a console window of their own.
pub fn own_process_group(cmd: &mut tokio::process::Command) -> &mut tokio::process::Command {
    const CREATE_NO_WINDOW: u32 = 0x0800_0000;
    cmd.creation_flags(CREATE_NO_WINDOW)
}

/// Windows has no signals: a killed command exits with the code it was terminated with.
pub fn exit_signal(_status: &std::process::ExitStatus) -> Option<i32> {
    None
}

/// `program` as a path, or found in `path` (`;`-separated) with one of `PATHEXT`'s extensions.
pub fn find_program(program: &str, path: &str) -> Result<PathBuf, std::io::Error> {
    let not_found = || std::io::Error::from(std::io::ErrorKind::NotFound);
    let exts: Vec<String> = std::env::var("PATHEXT")
        .unwrap_or_else(|_| ".COM;.EXE;.BAT;.CMD".into())
        .split(';')
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect();
    let candidates = |p: PathBuf| {
        let mut all = vec![p.clone()];
        all.extend(exts.iter().map(|e| {
            let mut s = p.clone().into_os_string();
            s.push(e);
            PathBuf::from(s)
        }));
        all
    };
    if program.contains(['\\', '/']) {
        return candidates(PathBuf::from(program))
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(not_found);
    }
    path.split(';')
        .filter(|d| !d.is_empty())
        .flat_map(|d| candidates(std::path::Path::new(d).join(program)))
        .find(|p| p.is_file())
        .ok_or_else(not_found)
}
