//! Acting as the signed-in Windows user (FFI). In the agent's model (see [`super::ipc`]) uid
//! `N > 0` is the user signed in to Windows session `N - 1`; a session without root runs as the
//! user at the console ([`default_session_user`]) and never with the service's own rights.
//!
//! - Processes (shells on a ConPTY, commands) start through `tether-agent run-as-user --session
//!   K -- PROGRAM ARGS…` ([`switch_wrapper`], [`run_as_user`]): the wrapper runs as the agent
//!   (LocalSystem) inside the command's job, with the command's pipes or console as its own,
//!   and starts the program with the user's token (`WTSQueryUserToken`, duplicated as a primary
//!   token and moved into the wrapper's session so the program can use the wrapper's console),
//!   in the user's own environment (`CreateEnvironmentBlock`). The program inherits the job,
//!   so killing the session's job kills both; the wrapper exits with the program's exit code.
//! - File access runs on a fresh thread that impersonates the user (`ImpersonateLoggedOnUser`):
//!   Windows checks every access against the user's token and files are created as theirs.
//!   The impersonation ends with the thread.
#![allow(unsafe_code)]

use super::process::Handle;
use super::session::{
    console_session, nobody_signed_in, own_session, session_user_token, user_environment, wide,
};
use std::ffi::c_void;
use windows_sys::Win32::Foundation::{
    DUPLICATE_SAME_ACCESS, DuplicateHandle, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::{
    DuplicateTokenEx, GetTokenInformation, ImpersonateLoggedOnUser, SecurityImpersonation,
    SetTokenInformation, TokenPrimary, TokenSessionId,
};
use windows_sys::Win32::System::Console::{
    CONSOLE_MODE, GetConsoleMode, GetStdHandle, STD_ERROR_HANDLE, STD_HANDLE, STD_INPUT_HANDLE,
    STD_OUTPUT_HANDLE,
};
use windows_sys::Win32::System::JobObjects::IsProcessInJob;
use windows_sys::Win32::System::SystemServices::MAXIMUM_ALLOWED;
use windows_sys::Win32::System::Threading::{
    CREATE_NO_WINDOW, CREATE_UNICODE_ENVIRONMENT, CreateProcessAsUserW, GetCurrentProcess,
    GetExitCodeProcess, INFINITE, PROCESS_INFORMATION, STARTF_USESTDHANDLES, STARTUPINFOW,
    WaitForSingleObject,
};

/// Why a process cannot be started as another user.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("uid {0} is not a Windows session's user (users are numbered 1 + their session)")]
    NotAUser(u32),
    #[error("cannot find tether-agent.exe to start the command as the user: {0}")]
    NoExe(std::io::Error),
}

/// The Windows session whose user `uid` is.
fn session_of(uid: u32) -> Option<u32> {
    // u32::MAX is what `1 + ` "no session" saturates to.
    uid.checked_sub(1).filter(|_| uid != u32::MAX)
}

/// The token of the user signed in to `session`, with a one-line error for the technician.
pub(super) fn user_token(session: u32) -> std::io::Result<Handle> {
    session_user_token(session).map_err(|e| {
        if nobody_signed_in(&e) {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("nobody is signed in to Windows session {session}"),
            )
        } else {
            std::io::Error::new(
                e.kind(),
                format!("cannot get the token of Windows session {session}'s user: {e}"),
            )
        }
    })
}

/// Whom sessions without root run as when the agent was not told: the user signed in at the
/// console now (`1 + ` its session), if anyone is.
pub fn default_session_user() -> Option<u32> {
    let session = console_session()?;
    session_user_token(session).ok().map(|_| session + 1)
}

/// What to put in front of a command so that it runs as `uid` (the user of session `uid - 1`):
/// this program's `run-as-user` (see the module's documentation).
pub fn switch_wrapper(uid: u32, _gid: u32) -> Result<Vec<String>, CredentialsError> {
    let session = session_of(uid).ok_or(CredentialsError::NotAUser(uid))?;
    let exe = std::env::current_exe().map_err(CredentialsError::NoExe)?;
    Ok(vec![
        exe.display().to_string(),
        "run-as-user".into(),
        "--session".into(),
        session.to_string(),
        "--".into(),
    ])
}

/// Makes the calling thread (only it) impersonate the user of session `uid - 1`. Only ever call
/// it on a thread that ends with the work it does as that user.
pub fn become_on_this_thread(uid: u32, _gid: u32, _groups: &[u32]) -> std::io::Result<()> {
    let session = session_of(uid).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            CredentialsError::NotAUser(uid),
        )
    })?;
    let token = user_token(session)?;
    // SAFETY: a valid token handle; the thread keeps its own reference to the token, so ours
    // may close when this returns.
    if unsafe { ImpersonateLoggedOnUser(token.0) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A one-DWORD token information class (`TokenSessionId`).
fn token_u32(token: HANDLE, class: i32) -> std::io::Result<u32> {
    let (mut value, mut len) = (0u32, 0u32);
    // SAFETY: the class asked for is one DWORD; the buffer is a local u32.
    let ok = unsafe {
        GetTokenInformation(
            token,
            class,
            (&mut value as *mut u32).cast(),
            size_of::<u32>() as u32,
            &mut len,
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(value)
}

/// A primary token for the user of `session`, in this process's own session (so that the
/// program can use this process's console and standard handles).
fn primary_token_here(session: u32) -> std::io::Result<Handle> {
    let token = user_token(session)?;
    let mut dup: HANDLE = std::ptr::null_mut();
    // SAFETY: a valid token; `dup` receives a new handle we own.
    let ok = unsafe {
        DuplicateTokenEx(
            token.0,
            MAXIMUM_ALLOWED,
            std::ptr::null(),
            SecurityImpersonation,
            TokenPrimary,
            &mut dup,
        )
    };
    if ok == 0 {
        return Err(os_error("DuplicateTokenEx"));
    }
    let dup = Handle(dup);
    let here = own_session().unwrap_or(0);
    if token_u32(dup.0, TokenSessionId)? != here {
        // SAFETY: the pointer and size describe a local DWORD; needs SeTcbPrivilege, which
        // LocalSystem has.
        let ok = unsafe {
            SetTokenInformation(
                dup.0,
                TokenSessionId,
                (&here as *const u32).cast(),
                size_of::<u32>() as u32,
            )
        };
        if ok == 0 {
            return Err(os_error("SetTokenInformation(TokenSessionId)"));
        }
    }
    Ok(dup)
}

fn os_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// This process's standard handle `which`, and whether it is a console.
fn std_handle(which: STD_HANDLE) -> (HANDLE, bool) {
    // SAFETY: plain value in; the handle is the process's own and is not closed here.
    let h = unsafe { GetStdHandle(which) };
    let mut mode: CONSOLE_MODE = 0;
    // SAFETY: `mode` is a local out-parameter; a handle that is no console just fails.
    let console =
        !h.is_null() && h != INVALID_HANDLE_VALUE && unsafe { GetConsoleMode(h, &mut mode) } != 0;
    (h, console)
}

/// An inheritable duplicate of `h` (null stays null).
fn inheritable(h: HANDLE) -> std::io::Result<Option<Handle>> {
    if h.is_null() || h == INVALID_HANDLE_VALUE {
        return Ok(None);
    }
    let mut dup: HANDLE = std::ptr::null_mut();
    // SAFETY: our own process and a handle of it; the duplicate is owned by the Handle.
    let ok = unsafe {
        let me = GetCurrentProcess();
        DuplicateHandle(me, h, me, &mut dup, 0, 1, DUPLICATE_SAME_ACCESS)
    };
    if ok == 0 {
        return Err(os_error("DuplicateHandle"));
    }
    Ok(Some(Handle(dup)))
}

/// Waits (a few seconds at most) until this process is in a job: the agent puts its commands
/// in one just after starting them, and a program started before that would escape it.
fn wait_for_job() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut in_job = 0;
        // SAFETY: our own process's pseudo-handle; a null job asks about any job.
        let ok = unsafe { IsProcessInJob(GetCurrentProcess(), std::ptr::null_mut(), &mut in_job) };
        if ok == 0 || in_job != 0 || std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// `tether-agent run-as-user --session K -- PROGRAM ARGS…`: runs the program as the user signed
/// in to session `K`, with this process's standard handles (or console), and returns its exit
/// code. `PROGRAM` is looked up in `PATH` (with `PATHEXT`) as the agent did before starting
/// this.
pub fn run_as_user(session: u32, argv: &[String]) -> std::io::Result<u32> {
    let Some(program) = argv.first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no program to run",
        ));
    };
    let path = std::env::var("PATH").unwrap_or_default();
    let resolved = super::process::find_program(program, &path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| program.clone());
    let mut full = vec![resolved];
    full.extend(argv[1..].iter().cloned());
    let mut cmdline = wide(&crate::platform::wincmdline::command_line(&full));

    let token = primary_token_here(session)?;
    let mut env = user_environment(token.0)
        .map_err(|e| std::io::Error::new(e.kind(), format!("CreateEnvironmentBlock: {e}")))?;

    let handles = [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE].map(std_handle);
    let on_console = handles.iter().all(|(_, console)| *console);
    // SAFETY: a zeroed STARTUPINFOW is valid before the fields below are set.
    let mut si: STARTUPINFOW = unsafe { std::mem::zeroed() };
    si.cb = size_of::<STARTUPINFOW>() as u32;
    // An empty desktop name: the user gets a window station and desktop of their own logon
    // session (the service's are not open to them), as Windows documents for lpDesktop.
    let mut desktop = wide("");
    si.lpDesktop = desktop.as_mut_ptr();
    // Kept alive until the program was created.
    let mut inherited: Vec<Handle> = Vec::new();
    let flags = if on_console {
        // The program attaches to this process's console (a ConPTY), as any console child.
        CREATE_UNICODE_ENVIRONMENT
    } else {
        si.dwFlags = STARTF_USESTDHANDLES;
        let [i, o, e] = handles.map(|(h, _)| inheritable(h));
        let (i, o, e) = (i?, o?, e?);
        si.hStdInput = i.as_ref().map_or(std::ptr::null_mut(), |h| h.0);
        si.hStdOutput = o.as_ref().map_or(std::ptr::null_mut(), |h| h.0);
        si.hStdError = e.as_ref().map_or(std::ptr::null_mut(), |h| h.0);
        inherited.extend([i, o, e].into_iter().flatten());
        CREATE_UNICODE_ENVIRONMENT | CREATE_NO_WINDOW
    };
    wait_for_job();
    // SAFETY: a zeroed PROCESS_INFORMATION is an out-parameter.
    let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: every pointer is to a live buffer or struct of ours for the call; the command
    // line is mutable and NUL-terminated as the API requires; the environment block is
    // UTF-16 and double-NUL-terminated (CREATE_UNICODE_ENVIRONMENT).
    let ok = unsafe {
        CreateProcessAsUserW(
            token.0,
            std::ptr::null(),
            cmdline.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            1,
            flags,
            env.as_mut_ptr() as *const c_void,
            std::ptr::null(),
            &si,
            &mut pi,
        )
    };
    if ok == 0 {
        return Err(os_error(&format!("cannot start {program} as the user")));
    }
    drop(inherited);
    let process = Handle(pi.hProcess);
    drop(Handle(pi.hThread));
    let mut code = 1u32;
    // SAFETY: a valid process handle of our child; `code` is a local out-parameter.
    unsafe {
        WaitForSingleObject(process.0, INFINITE);
        if GetExitCodeProcess(process.0, &mut code) == 0 {
            return Err(os_error("GetExitCodeProcess"));
        }
    }
    Ok(code)
}
