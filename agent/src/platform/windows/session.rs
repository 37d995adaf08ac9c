//! The desktop helper in the signed-in user's session (FFI). A service runs in session 0, which
//! has no interactive desktop: GDI there captures nothing and `SendInput` reaches no one. So,
//! as remote-support agents do on Windows, the service starts `tether-agent desktop-helper` in
//! the console session **as the signed-in user** (`WTSQueryUserToken` + `CreateProcessAsUserW`,
//! on `winsta0\default`), and talks to it over anonymous pipes on its standard input and output
//! (`tether_protocol::helper`, as the Wayland helper on Linux).
//!
//! - Least privilege: the helper has the user's token, not SYSTEM's. So it cannot see or drive
//!   the secure desktop (UAC prompts, the sign-in screen); with nobody signed in there is no
//!   helper and screen requests fail saying so.
//! - Only the pipe ends it needs are inherited (`PROC_THREAD_ATTRIBUTE_HANDLE_LIST`), and its
//!   environment is the user's own (`CreateEnvironmentBlock`) plus `RUST_LOG`.
//! - It is created suspended and put in a kill-on-close job before it runs, so it ends with
//!   the desktop that started it, or with the agent.
#![allow(unsafe_code)]

use super::process::{Handle, kill_on_close_job};
use crate::platform::helper::client::{HelperIoError, HelperProcess, Launch, Launched};
use std::ffi::c_void;
use std::fs::File;
use std::os::windows::io::{FromRawHandle, OwnedHandle};
use windows_sys::Win32::Foundation::{
    DUPLICATE_SAME_ACCESS, DuplicateHandle, ERROR_NO_TOKEN, HANDLE, HANDLE_FLAG_INHERIT,
    SetHandleInformation, WAIT_OBJECT_0,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE};
use windows_sys::Win32::System::Environment::{CreateEnvironmentBlock, DestroyEnvironmentBlock};
use windows_sys::Win32::System::JobObjects::AssignProcessToJobObject;
use windows_sys::Win32::System::Pipes::CreatePipe;
use windows_sys::Win32::System::RemoteDesktop::{
    ProcessIdToSessionId, WTSGetActiveConsoleSessionId, WTSQueryUserToken,
};
use windows_sys::Win32::System::StationsAndDesktops::{
    GetProcessWindowStation, GetUserObjectInformationW, UOI_FLAGS, USEROBJECTFLAGS,
};
use windows_sys::Win32::System::Threading::{
    CREATE_NO_WINDOW, CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT, CreateProcessAsUserW,
    DeleteProcThreadAttributeList, EXTENDED_STARTUPINFO_PRESENT, GetCurrentProcess,
    GetCurrentProcessId, InitializeProcThreadAttributeList, LPPROC_THREAD_ATTRIBUTE_LIST,
    PROC_THREAD_ATTRIBUTE_HANDLE_LIST, PROCESS_INFORMATION, ResumeThread, STARTF_USESTDHANDLES,
    STARTUPINFOEXW, TerminateProcess, UpdateProcThreadAttribute, WaitForSingleObject,
};
use windows_sys::Win32::UI::WindowsAndMessaging::WSF_VISIBLE;

/// No session is attached to the console (`WTSGetActiveConsoleSessionId`).
const NO_SESSION: u32 = 0xFFFF_FFFF;

/// The session this process runs in; 0 is the services' session.
pub fn own_session() -> Option<u32> {
    let mut session = 0u32;
    // SAFETY: plain values in, `session` written on success.
    (unsafe { ProcessIdToSessionId(GetCurrentProcessId(), &mut session) } != 0).then_some(session)
}

/// Whether this process's window station is the interactive one (`WinSta0` of a user's
/// session, `WSF_VISIBLE`). A service's is not, in session 0 on Windows and under Wine alike.
fn interactive_station() -> bool {
    // SAFETY: no arguments; the handle is the process's own and is not closed.
    let station = unsafe { GetProcessWindowStation() };
    if station.is_null() {
        return false;
    }
    // SAFETY: a zeroed USEROBJECTFLAGS is an out-parameter.
    let mut flags: USEROBJECTFLAGS = unsafe { std::mem::zeroed() };
    let mut needed = 0u32;
    // SAFETY: the pointer and size describe `flags`, alive for the call.
    let ok = unsafe {
        GetUserObjectInformationW(
            station,
            UOI_FLAGS,
            (&mut flags as *mut USEROBJECTFLAGS).cast(),
            size_of::<USEROBJECTFLAGS>() as u32,
            &mut needed,
        )
    };
    ok != 0 && flags.dwFlags & (WSF_VISIBLE as u32) != 0
}

/// Whether the desktop must be served by a helper in the user's session: in session 0 or
/// without an interactive window station (a service), or when `TETHER_DESKTOP_HELPER=always`
/// (`never` forces this process's own desktop).
pub fn needs_helper() -> bool {
    match std::env::var("TETHER_DESKTOP_HELPER").as_deref() {
        Ok("always") => true,
        Ok("never") => false,
        _ => own_session() == Some(0) || !interactive_station(),
    }
}

/// Starts the helper in the console session as its signed-in user.
pub struct InUserSession;

pub(super) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn last_error(what: &str) -> HelperIoError {
    HelperIoError::Spawn(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// An anonymous pipe: (read end, write end); `child_reads` says which end the child inherits.
fn pipe(child_reads: bool) -> Result<(Handle, Handle), HelperIoError> {
    let sa = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: std::ptr::null_mut(),
        bInheritHandle: 1,
    };
    let (mut rd, mut wr): (HANDLE, HANDLE) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: out-pointers to locals; `sa` lives for the call.
    if unsafe { CreatePipe(&mut rd, &mut wr, &sa, 0) } == 0 {
        return Err(last_error("CreatePipe"));
    }
    let (rd, wr) = (Handle(rd), Handle(wr));
    let ours = if child_reads { &wr } else { &rd };
    // SAFETY: a handle just created; only its inherit flag changes.
    if unsafe { SetHandleInformation(ours.0, HANDLE_FLAG_INHERIT, 0) } == 0 {
        return Err(last_error("SetHandleInformation"));
    }
    Ok((rd, wr))
}

/// The user's environment block (UTF-16 `k=v\0…\0\0`) with the agent's `RUST_LOG` added.
fn environment(token: HANDLE) -> Result<Vec<u16>, HelperIoError> {
    user_environment(token)
        .map_err(|e| HelperIoError::Spawn(format!("CreateEnvironmentBlock: {e}")))
}

/// The environment block of the user whose primary token this is (`CreateEnvironmentBlock`,
/// without the caller's variables), as UTF-16 `k=v\0…\0\0`, with the agent's `RUST_LOG` added.
pub(super) fn user_environment(token: HANDLE) -> std::io::Result<Vec<u16>> {
    let mut block: *mut c_void = std::ptr::null_mut();
    // SAFETY: `token` is a valid primary token; the block is freed below.
    if unsafe { CreateEnvironmentBlock(&mut block, token, 0) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut env = Vec::new();
    let p = block as *const u16;
    let mut i = 0usize;
    // SAFETY: the block ends with two NULs (one ending its last entry); we read up to them.
    unsafe {
        while !(*p.add(i) == 0 && (i == 0 || *p.add(i - 1) == 0)) {
            env.push(*p.add(i));
            i += 1;
        }
        DestroyEnvironmentBlock(block);
    }
    if let Ok(log) = std::env::var("RUST_LOG") {
        env.extend(format!("RUST_LOG={log}").encode_utf16());
        env.push(0);
    }
    if env.is_empty() {
        env.push(0);
    }
    env.push(0);
    Ok(env)
}

/// The token of the user signed in to Windows session `session` (`WTSQueryUserToken`, which
/// needs SeTcbPrivilege: LocalSystem has it). Fails with `ERROR_NO_TOKEN` when nobody is signed
/// in there.
pub(super) fn session_user_token(session: u32) -> std::io::Result<Handle> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: out-pointer to a local; the handle returned is ours to close.
    if unsafe { WTSQueryUserToken(session, &mut token) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Handle(token))
}

/// Whether `e` (from [`session_user_token`]) means that nobody is signed in to that session.
pub(super) fn nobody_signed_in(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(ERROR_NO_TOKEN as i32)
}

/// The active console session, if one is attached.
pub(super) fn console_session() -> Option<u32> {
    // SAFETY: no arguments.
    let session = unsafe { WTSGetActiveConsoleSessionId() };
    (session != NO_SESSION).then_some(session)
}

/// The signed-in user's token in the console session.
fn user_token() -> Result<Handle, HelperIoError> {
    let Some(session) = console_session() else {
        return Err(HelperIoError::Unavailable(
            "nobody is signed in at this computer (no console session), so there is no desktop to share".into(),
        ));
    };
    session_user_token(session).map_err(|e| {
        if nobody_signed_in(&e) {
            HelperIoError::Unavailable(format!(
                "nobody is signed in at this computer (console session {session}), so there is no desktop to share"
            ))
        } else {
            HelperIoError::Spawn(format!("WTSQueryUserToken(session {session}): {e}"))
        }
    })
}

/// The agent's standard error, as an inheritable copy for the helper's; `None` without one
/// (a service has none).
fn inheritable_stderr() -> Option<Handle> {
    // SAFETY: plain calls; the duplicate is owned by the returned Handle.
    unsafe {
        let err = GetStdHandle(STD_ERROR_HANDLE);
        if err.is_null() || err == windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE {
            return None;
        }
        let mut dup: HANDLE = std::ptr::null_mut();
        let me = GetCurrentProcess();
        (DuplicateHandle(me, err, me, &mut dup, 0, 1, DUPLICATE_SAME_ACCESS) != 0)
            .then_some(Handle(dup))
    }
}

/// A proc-thread attribute list holding one handle list.
struct Attributes {
    buf: Vec<u8>,
    /// The handles the list points into; they must outlive the list.
    _handles: Box<[HANDLE]>,
}

impl Attributes {
    fn inherit_only(handles: Vec<HANDLE>) -> Result<Attributes, HelperIoError> {
        let handles = handles.into_boxed_slice();
        let mut size = 0usize;
        // SAFETY: a null list with a size pointer asks for the size needed (fails with
        // ERROR_INSUFFICIENT_BUFFER by design).
        unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut size) };
        let mut attrs = Attributes {
            buf: vec![0u8; size.max(64)],
            _handles: handles,
        };
        // SAFETY: `buf` has the size asked for.
        if unsafe { InitializeProcThreadAttributeList(attrs.list(), 1, 0, &mut size) } == 0 {
            return Err(last_error("InitializeProcThreadAttributeList"));
        }
        // SAFETY: the list was initialised; the handle array is boxed and lives in `attrs`.
        let ok = unsafe {
            UpdateProcThreadAttribute(
                attrs.list(),
                0,
                PROC_THREAD_ATTRIBUTE_HANDLE_LIST as usize,
                attrs._handles.as_ptr() as *const c_void,
                size_of_val(&*attrs._handles),
                std::ptr::null_mut(),
                std::ptr::null(),
            )
        };
        if ok == 0 {
            let e = last_error("UpdateProcThreadAttribute");
            // SAFETY: initialised above, deleted once.
            unsafe { DeleteProcThreadAttributeList(attrs.list()) };
            attrs.buf.clear();
            return Err(e);
        }
        Ok(attrs)
    }

    fn list(&mut self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.buf.as_mut_ptr() as LPPROC_THREAD_ATTRIBUTE_LIST
    }
}

impl Drop for Attributes {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            // SAFETY: initialised in `inherit_only`, deleted once.
            unsafe { DeleteProcThreadAttributeList(self.list()) };
        }
    }
}

/// The helper's process and the job it runs in (dropping the job kills it).
struct UserProcess {
    process: Handle,
    _job: Handle,
}

impl HelperProcess for UserProcess {
    fn exited(&mut self) -> bool {
        // SAFETY: a valid process handle; a zero timeout only polls.
        unsafe { WaitForSingleObject(self.process.0, 0) == WAIT_OBJECT_0 }
    }

    fn kill(&mut self) {
        // SAFETY: a valid process handle with terminate and synchronize rights.
        unsafe {
            TerminateProcess(self.process.0, 1);
            WaitForSingleObject(self.process.0, 5_000);
        }
    }
}

/// An owned handle as a `File` (pipes read and write through it).
fn file(h: Handle) -> File {
    let raw = h.0;
    std::mem::forget(h);
    // SAFETY: `raw` is an open handle we own; ownership moves to the File.
    File::from(unsafe { OwnedHandle::from_raw_handle(raw) })
}

impl Launch for InUserSession {
    fn describe(&self) -> String {
        "the signed-in user, in the console session".into()
    }

    fn launch(&self) -> Result<Launched, HelperIoError> {
        let exe = std::env::current_exe()
            .map_err(|e| HelperIoError::Spawn(format!("cannot find tether-agent.exe: {e}")))?;
        let token = user_token()?;
        let mut env = environment(token.0)?;
        let (child_in, our_in) = pipe(true)?;
        let (our_out, child_out) = pipe(false)?;
        let err = inheritable_stderr();
        let mut inherited = vec![child_in.0, child_out.0];
        inherited.extend(err.as_ref().map(|h| h.0));
        let mut attrs = Attributes::inherit_only(inherited)?;

        let mut desktop = wide(r"winsta0\default");
        // SAFETY: a zeroed STARTUPINFOEXW is valid before the fields below are set.
        let mut si: STARTUPINFOEXW = unsafe { std::mem::zeroed() };
        si.StartupInfo.cb = size_of::<STARTUPINFOEXW>() as u32;
        si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
        si.StartupInfo.hStdInput = child_in.0;
        si.StartupInfo.hStdOutput = child_out.0;
        si.StartupInfo.hStdError = err.as_ref().map_or(std::ptr::null_mut(), |h| h.0);
        si.StartupInfo.lpDesktop = desktop.as_mut_ptr();
        si.lpAttributeList = attrs.list();
        let app = wide(&exe.to_string_lossy());
        let mut cmdline = wide(&format!("\"{}\" desktop-helper", exe.to_string_lossy()));
        // SAFETY: a zeroed PROCESS_INFORMATION is an out-parameter.
        let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: every pointer is to a live, NUL-terminated buffer or struct of ours for the
        // call; the command line buffer is mutable as the API requires.
        let ok = unsafe {
            CreateProcessAsUserW(
                token.0,
                app.as_ptr(),
                cmdline.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                1,
                CREATE_UNICODE_ENVIRONMENT
                    | CREATE_NO_WINDOW
                    | CREATE_SUSPENDED
                    | EXTENDED_STARTUPINFO_PRESENT,
                env.as_mut_ptr() as *const c_void,
                std::ptr::null(),
                &si.StartupInfo,
                &mut pi,
            )
        };
        if ok == 0 {
            return Err(last_error("CreateProcessAsUserW"));
        }
        let process = Handle(pi.hProcess);
        let thread = Handle(pi.hThread);
        let Some(job) = kill_on_close_job() else {
            // SAFETY: the process we just created, never resumed.
            unsafe { TerminateProcess(process.0, 1) };
            return Err(HelperIoError::Spawn("cannot create a job object".into()));
        };
        // SAFETY: both handles valid; the process has not run yet (suspended).
        if unsafe { AssignProcessToJobObject(job.0, process.0) } == 0 {
            let e = last_error("AssignProcessToJobObject");
            // SAFETY: as above.
            unsafe { TerminateProcess(process.0, 1) };
            return Err(e);
        }
        // SAFETY: the suspended main thread of our child.
        if unsafe { ResumeThread(thread.0) } == u32::MAX {
            let e = last_error("ResumeThread");
            // SAFETY: as above.
            unsafe { TerminateProcess(process.0, 1) };
            return Err(e);
        }
        tracing::debug!(pid = pi.dwProcessId, "desktop helper created");
        // The child's ends close here, so its exit closes our pipes.
        drop((child_in, child_out, err, thread));
        Ok(Launched {
            process: Box::new(UserProcess { process, _job: job }),
            stdin: Box::new(file(our_in)),
            stdout: Box::new(file(our_out)),
        })
    }
}
