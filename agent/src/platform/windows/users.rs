//! Accounts on Windows. Windows names users by SID, not by number; the agent's model numbers
//! them by session (see [`super::ipc`]): uid 0 is the agent's own account (the service's,
//! LocalSystem), and uid `N > 0` the user signed in to Windows session `N - 1`, found through
//! that session's token ([`super::credentials`]).
#![allow(unsafe_code)]

use std::path::PathBuf;
use thiserror::Error;
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::Security::{
    GetTokenInformation, LookupAccountSidW, SID_NAME_USE, TOKEN_USER, TokenUser,
};
use windows_sys::Win32::UI::Shell::GetUserProfileDirectoryW;

#[derive(Debug, Error)]
pub enum UserError {
    #[error(
        "naming a desktop or session user is not supported on Windows (sessions without root run as the user signed in at the console)"
    )]
    NotSupported,
    #[error("{0}")]
    Session(std::io::Error),
    #[error("cannot name the user of Windows session {session}: {source}")]
    Name {
        session: u32,
        source: std::io::Error,
    },
}

pub fn parse_user(_s: &str) -> Result<u32, UserError> {
    Err(UserError::NotSupported)
}

pub use crate::platform::fsinfo::Account;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn windir() -> String {
    var("SystemRoot").unwrap_or_else(|| r"C:\Windows".into())
}

fn comspec() -> PathBuf {
    var("ComSpec")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(windir()).join(r"System32\cmd.exe"))
}

/// `DOMAIN\name` split in two, of the token's user (`TokenUser` + `LookupAccountSidW`).
fn token_user_name(token: HANDLE) -> std::io::Result<(String, String)> {
    let mut buf = vec![0u64; 64];
    let mut len = 0u32;
    // SAFETY: the buffer is 8-byte aligned (as TOKEN_USER needs) and its size is passed.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenUser,
            buf.as_mut_ptr().cast(),
            (buf.len() * 8) as u32,
            &mut len,
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: on success the buffer starts with a TOKEN_USER whose SID points into it.
    let sid = unsafe { (*(buf.as_ptr() as *const TOKEN_USER)).User.Sid };
    let mut name = vec![0u16; 256];
    let mut domain = vec![0u16; 256];
    let (mut n, mut d) = (name.len() as u32, domain.len() as u32);
    let mut kind: SID_NAME_USE = 0;
    // SAFETY: `sid` is valid while `buf` lives; the name buffers and their sizes match.
    let ok = unsafe {
        LookupAccountSidW(
            std::ptr::null(),
            sid,
            name.as_mut_ptr(),
            &mut n,
            domain.as_mut_ptr(),
            &mut d,
            &mut kind,
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((
        String::from_utf16_lossy(&domain[..d as usize]),
        String::from_utf16_lossy(&name[..n as usize]),
    ))
}

/// The token user's profile directory (`GetUserProfileDirectoryW`).
fn profile_dir(token: HANDLE) -> std::io::Result<PathBuf> {
    let mut buf = vec![0u16; 1024];
    let mut len = buf.len() as u32;
    // SAFETY: the buffer and its size (in characters) match.
    if unsafe { GetUserProfileDirectoryW(token, buf.as_mut_ptr(), &mut len) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let end = buf.iter().position(|c| *c == 0).unwrap_or(buf.len());
    Ok(PathBuf::from(String::from_utf16_lossy(&buf[..end])))
}

impl Account {
    /// uid 0: the agent's own account; uid `N > 0`: the user signed in to session `N - 1`.
    pub fn lookup(uid: u32) -> Result<Account, UserError> {
        if uid == 0 {
            return Ok(Account {
                uid: 0,
                gid: 0,
                groups: Vec::new(),
                name: var("USERNAME").unwrap_or_else(|| "SYSTEM".into()),
                home: var("USERPROFILE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(windir()).join("System32")),
                shell: comspec(),
            });
        }
        let session = uid.saturating_sub(1);
        let token = super::credentials::user_token(session).map_err(UserError::Session)?;
        let (_domain, name) =
            token_user_name(token.0).map_err(|source| UserError::Name { session, source })?;
        let home = profile_dir(token.0).map_err(|source| UserError::Name { session, source })?;
        Ok(Account {
            uid,
            gid: uid,
            groups: Vec::new(),
            name,
            home,
            shell: comspec(),
        })
    }

    /// The Windows session this account's user is signed in to (`None` for the agent's own).
    pub fn session(&self) -> Option<u32> {
        self.uid.checked_sub(1)
    }

    /// `%ComSpec%` (cmd.exe).
    pub fn login_shell(&self) -> PathBuf {
        self.shell.clone()
    }

    pub fn start_dir(&self) -> PathBuf {
        self.home.clone()
    }

    /// The environment a shell or command starts with: the system's variables Windows programs
    /// need (SystemRoot, PATH, TEMP, …), copied from the agent's; nothing else is inherited.
    /// A program started as a signed-in user (`run-as-user`) gets that user's own environment
    /// instead; these only reach the wrapper that starts it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        const KEPT: &[&str] = &[
            "SystemRoot",
            "windir",
            "SystemDrive",
            "PATH",
            "PATHEXT",
            "ComSpec",
            "TEMP",
            "TMP",
            "USERPROFILE",
            "USERNAME",
            "USERDOMAIN",
            "COMPUTERNAME",
            "ProgramData",
            "ProgramFiles",
            "ProgramFiles(x86)",
            "ProgramW6432",
            "CommonProgramFiles",
            "APPDATA",
            "LOCALAPPDATA",
            "PUBLIC",
            "OS",
            "NUMBER_OF_PROCESSORS",
            "PROCESSOR_ARCHITECTURE",
        ];
        KEPT.iter()
            .filter_map(|k| var(k).map(|v| (*k, v)))
            .collect()
    }
}
