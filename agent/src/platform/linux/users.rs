//! Accounts on Linux: the user database (NSS: local files, LDAP, …), `/etc/passwd` for names
//! given on the command line, `/etc/shells` for login shells.

use std::ffi::CString;
use std::path::PathBuf;
use thiserror::Error;

/// Why a user cannot be found.
#[derive(Debug, Error)]
pub enum UserError {
    #[error("{0}")]
    Passwd(std::io::Error),
    #[error("no user named {0}")]
    NoSuchName(String),
    #[error("uid -1 is not a user")]
    NotAUser,
    #[error("looking up uid {uid}: {source}")]
    Lookup { uid: u32, source: nix::errno::Errno },
    #[error("uid {0} has no entry in the user database")]
    NoEntry(u32),
    #[error("uid {0} has gid -1")]
    NoGid(u32),
}

/// A user name (looked up in `/etc/passwd`) or a numeric uid.
pub fn parse_user(s: &str) -> Result<u32, UserError> {
    if let Ok(uid) = s.parse() {
        return Ok(uid);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(UserError::Passwd)?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&s))
        .and_then(|f| f.get(2).and_then(|uid| uid.parse().ok()))
        .ok_or_else(|| UserError::NoSuchName(s.to_string()))
}

pub use crate::platform::fsinfo::Account;

impl Account {
    pub fn lookup(uid: u32) -> Result<Account, UserError> {
        if uid == u32::MAX {
            return Err(UserError::NotAUser);
        }
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .map_err(|source| UserError::Lookup { uid, source })?
            .ok_or(UserError::NoEntry(uid))?;
        let gid = user.gid.as_raw();
        if gid == u32::MAX {
            return Err(UserError::NoGid(uid));
        }
        let groups = CString::new(user.name.clone())
            .ok()
            .and_then(|n| nix::unistd::getgrouplist(&n, user.gid).ok())
            .map(|g| {
                g.into_iter()
                    .map(|g| g.as_raw())
                    .filter(|g| *g != u32::MAX)
                    .collect()
            })
            .unwrap_or_else(|| vec![gid]);
        Ok(Account {
            uid,
            gid,
            groups,
            name: user.name,
            home: user.dir,
            shell: user.shell,
        })
    }

    /// The user's login shell when it is a real one (listed in /etc/shells), else /bin/sh: a
    /// technician the user let in needs a shell even for an account set to `nologin`.
    pub fn login_shell(&self) -> PathBuf {
        let listed = std::fs::read_to_string("/etc/shells")
            .map(|s| {
                s.lines()
                    .any(|l| !l.starts_with('#') && std::path::Path::new(l.trim()) == self.shell)
            })
            .unwrap_or(false);
        if listed && self.shell.exists() {
            self.shell.clone()
        } else {
            PathBuf::from("/bin/sh")
        }
    }

    /// Where shells and commands start: the home directory, or `/` when it does not exist.
    pub fn start_dir(&self) -> PathBuf {
        if self.home.is_dir() {
            self.home.clone()
        } else {
            PathBuf::from("/")
        }
    }

    /// The environment a shell or command starts with (nothing inherited from the agent).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let path = if self.uid == 0 {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        } else {
            "/usr/local/bin:/usr/bin:/bin"
        };
        let mut env = vec![
            ("HOME", self.home.display().to_string()),
            ("USER", self.name.clone()),
            ("LOGNAME", self.name.clone()),
            ("SHELL", self.login_shell().display().to_string()),
            ("PATH", path.to_string()),
        ];
        for var in ["LANG", "LC_ALL", "TZ"] {
            if let Ok(v) = std::env::var(var) {
                env.push((var, v));
            }
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_by_name_or_number() {
        assert_eq!(parse_user("0").ok(), Some(0));
        assert_eq!(parse_user("root").ok(), Some(0));
        assert!(parse_user("no-such-user-here").is_err());
    }
}
