//! The agent's local endpoint on Windows: a named pipe (`\\.\pipe\tether-agent`).
//!
//! * The service creates the first instance with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so a process
//!   that took the name first (to pose as the agent) makes the agent fail loudly instead of
//!   sharing the name; remote clients are rejected.
//! * Its DACL lets SYSTEM and Administrators do anything and interactive users read and write.
//! * Who connected is read from the client's process token, the Windows counterpart of
//!   `SO_PEERCRED` ([`peer_uid`]). The agent's model names local peers by a number: here 0 is an
//!   elevated administrator (or SYSTEM), and any other peer is `1 + its Terminal Services
//!   session id`, which the desktop's owner ([`interactive_uid`]) is compared with: only the
//!   user signed in at the console, or an administrator, may answer for the desktop.
#![allow(unsafe_code)]

use super::acl::Descriptor;
use std::ffi::c_void;
use std::os::windows::io::AsRawHandle;
use std::path::Path;
use std::sync::Mutex;
use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::Security::{
    GetTokenInformation, SECURITY_ATTRIBUTES, TOKEN_QUERY, TokenElevation, TokenSessionId,
};
use windows_sys::Win32::System::Pipes::GetNamedPipeClientProcessId;
use windows_sys::Win32::System::RemoteDesktop::WTSGetActiveConsoleSessionId;
use windows_sys::Win32::System::Threading::{
    OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

pub type LocalStream = NamedPipeServer;

/// SYSTEM and Administrators: all; interactive users: read and write.
const PIPE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGW;;;IU)";

pub struct LocalListener {
    name: String,
    next: Mutex<Option<NamedPipeServer>>,
}

fn create(name: &str, first: bool) -> std::io::Result<NamedPipeServer> {
    let sd = Descriptor::from_sddl(PIPE_SDDL)?;
    let mut attrs = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd.0,
        bInheritHandle: 0,
    };
    let mut opts = ServerOptions::new();
    opts.first_pipe_instance(first).reject_remote_clients(true);
    // SAFETY: `attrs` and the descriptor it points to outlive the call, which copies them into
    // the new pipe.
    unsafe {
        opts.create_with_security_attributes_raw(
            name,
            (&mut attrs as *mut SECURITY_ATTRIBUTES).cast::<c_void>(),
        )
    }
}

/// Creates the pipe `path` (`\\.\pipe\NAME`). `desktop_uid` is unused here: the DACL admits
/// interactive users and [`peer_uid`] tells them apart.
pub fn listen(path: &Path, _desktop_uid: u32) -> std::io::Result<LocalListener> {
    let name = path.to_string_lossy().into_owned();
    if !name.starts_with(r"\\.\pipe\") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(r"{name} is not a pipe name (\\.\pipe\NAME)"),
        ));
    }
    let first = create(&name, true).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("{name}: {e} (is another agent, or something posing as one, using it?)"),
        )
    })?;
    Ok(LocalListener {
        name,
        next: Mutex::new(Some(first)),
    })
}

impl LocalListener {
    /// The next client. A new instance is made at once for the one after.
    pub async fn accept(&self) -> std::io::Result<LocalStream> {
        let server = match self.next.lock().ok().and_then(|mut n| n.take()) {
            Some(s) => s,
            None => create(&self.name, false)?,
        };
        server.connect().await?;
        if let Ok(mut next) = self.next.lock() {
            *next = create(&self.name, false).ok();
        }
        Ok(server)
    }
}

struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: owned by this module, closed once.
        unsafe { CloseHandle(self.0) };
    }
}

fn token_u32(token: &Handle, class: i32) -> std::io::Result<u32> {
    let mut value = 0u32;
    let mut len = 0u32;
    // SAFETY: both token classes asked for here (TokenElevation, TokenSessionId) are one DWORD;
    // the buffer is a local u32 of that size.
    let ok = unsafe {
        GetTokenInformation(
            token.0,
            class,
            (&mut value as *mut u32).cast(),
            std::mem::size_of::<u32>() as u32,
            &mut len,
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(value)
}

/// The connected client, as the agent's model numbers it (see the module's documentation).
pub fn peer_uid(stream: &LocalStream) -> std::io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: a connected pipe handle; `pid` is a local.
    if unsafe { GetNamedPipeClientProcessId(stream.as_raw_handle(), &mut pid) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: plain values in, a handle or null out.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    let process = Handle(process);
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: a valid process handle; `token` receives a handle we own.
    if unsafe { OpenProcessToken(process.0, TOKEN_QUERY, &mut token) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let token = Handle(token);
    if token_u32(&token, TokenElevation)? != 0 {
        return Ok(0);
    }
    Ok(1 + token_u32(&token, TokenSessionId)?)
}

/// The number of the user at the console: `1 + ` the active console session's id.
pub fn interactive_uid() -> u32 {
    // SAFETY: no arguments; returns 0xFFFFFFFF when no session is attached.
    let id = unsafe { WTSGetActiveConsoleSessionId() };
    id.saturating_add(1)
}
