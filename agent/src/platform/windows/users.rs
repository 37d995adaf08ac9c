//! Accounts on Windows. Windows names users by SID, not by number: the agent knows one account
//! here, its own (uid 0 in the agent's model: the service account), and does not switch to
//! others yet ([`super::credentials`]).

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum UserError {
    #[error(
        "naming a desktop or session user is not supported on Windows yet (the agent serves the interactive session)"
    )]
    NotSupported,
}

pub fn parse_user(_s: &str) -> Result<u32, UserError> {
    Err(UserError::NotSupported)
}

pub use crate::platform::fsinfo::Account;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Account {
    /// The agent's own account (the only one, `uid` 0).
    pub fn lookup(uid: u32) -> Result<Account, UserError> {
        if uid != 0 {
            return Err(UserError::NotSupported);
        }
        let windir = var("SystemRoot").unwrap_or_else(|| r"C:\Windows".into());
        Ok(Account {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            name: var("USERNAME").unwrap_or_else(|| "SYSTEM".into()),
            home: var("USERPROFILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(&windir).join("System32")),
            shell: var("ComSpec")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(&windir).join(r"System32\cmd.exe")),
        })
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
