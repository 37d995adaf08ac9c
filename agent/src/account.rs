//! Who a session acts as on the device. The agent runs as root (it must, to serve any desktop),
//! but a session's shells, commands and file access run as the *session user* — the desktop's
//! user, or `tether-agent run --session-user` — and as root only when the relay-signed grant
//! carries the `root` permission (which the relay grants only where the device group's policy
//! allows it, and which the user saw in the prompt). An agent that does not run as root runs
//! everything as itself and refuses root sessions.
//!
//! How the switch is made is the platform's ([`crate::platform::credentials`]): processes start
//! through a wrapper that switches before it execs the command (`setpriv` on Linux), and file
//! access runs on a fresh thread (never a pooled one) that takes the user's credentials for
//! itself alone, keeping real and saved ids the agent's, so the session user can neither signal
//! nor ptrace it (a fatal signal would take the whole agent down); the kernel checks every
//! access as the user and files are created as theirs. The thread ends with the operation.

use crate::platform::credentials::{self, CredentialsError};
use crate::platform::users::UserError;
use tether_protocol::session::Permissions;
use thiserror::Error;

/// Why a session cannot act as its account. Each is one line for the technician.
#[derive(Debug, Error)]
pub enum AccountError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error("the agent on this device does not run as root, so the session cannot run as root")]
    AgentNotRoot,
    #[error("{NO_SESSION_USER}")]
    NoSessionUser,
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("cannot act as {who}: {source}")]
    Become { who: String, source: std::io::Error },
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("file operation failed unexpectedly")]
    Panicked,
}

pub use crate::platform::users::Account;

/// Who one session acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub account: Account,
    /// The agent is root and the account is not: every process and file operation switches.
    pub switch: bool,
}

impl RunAs {
    /// Decides from the signed grant's permissions and the configured session user (a uid that
    /// is not 0, or none). Errors are one line for the technician.
    pub fn for_session(
        permissions: Permissions,
        session_user: Option<u32>,
    ) -> Result<RunAs, AccountError> {
        let me = tether_net::local::current_uid();
        if permissions.as_root() {
            if me != 0 {
                return Err(AccountError::AgentNotRoot);
            }
            return Ok(RunAs {
                account: Account::lookup(0)?,
                switch: false,
            });
        }
        if me != 0 {
            return Ok(RunAs {
                account: Account::lookup(me)?,
                switch: false,
            });
        }
        // Windows: the user signed in at the console now, unless the agent was told.
        #[cfg(windows)]
        let session_user = session_user.or_else(credentials::default_session_user);
        match session_user {
            Some(uid) if uid != 0 => Ok(RunAs {
                account: Account::lookup(uid)?,
                switch: true,
            }),
            _ => Err(AccountError::NoSessionUser),
        }
    }

    /// "nobody (uid 65534)" or "root" (on Windows "alice (session 1)"), for the audit record.
    pub fn describe(&self) -> String {
        if self.account.uid == 0 {
            "root".into()
        } else if cfg!(windows) {
            let session = self.account.uid - 1;
            format!("{} (session {session})", self.account.name)
        } else {
            format!("{} (uid {})", self.account.name, self.account.uid)
        }
    }

    /// What to put in front of a command so that it runs as this account, when switching
    /// (`setpriv` and its arguments on Linux).
    pub fn wrapper(&self) -> Result<Option<Vec<String>>, AccountError> {
        if !self.switch {
            return Ok(None);
        }
        Ok(Some(credentials::switch_wrapper(
            self.account.uid,
            self.account.gid,
        )?))
    }

    /// Runs `f` with this account's credentials on a fresh thread of its own (see the module
    /// docs), and waits for it.
    pub fn run<T: Send + 'static, E: From<AccountError> + Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, E> + Send + 'static,
    ) -> Result<T, E> {
        let who = self.clone();
        std::thread::Builder::new()
            .name("tether-as-user".into())
            .spawn(move || {
                who.become_on_this_thread()?;
                f()
            })
            .map_err(AccountError::Thread)?
            .join()
            .map_err(|_| AccountError::Panicked)?
    }

    /// Only ever called on a thread that ends right after (see [`RunAs::run`]).
    fn become_on_this_thread(&self) -> Result<(), AccountError> {
        if !self.switch {
            return Ok(());
        }
        credentials::become_on_this_thread(self.account.uid, self.account.gid, &self.account.groups)
            .map_err(|source| AccountError::Become {
                who: self.describe(),
                source,
            })
    }
}

/// Why a session without root cannot run on a root agent that knows no desktop user.
#[cfg(not(windows))]
pub const NO_SESSION_USER: &str = "this device has no desktop user to run as (no X display owner); start its agent with --session-user NAME, or ask for --as-root where the group's policy allows it";
/// Why a session without root cannot run on Windows: nobody is signed in at the console.
#[cfg(windows)]
pub const NO_SESSION_USER: &str = "nobody is signed in at this Windows computer's console, so there is no user to run as; ask for --as-root where the group's policy allows it";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_needs_the_permission_and_a_user_otherwise() {
        if tether_net::local::current_uid() != 0 {
            return;
        }
        let shell = Permissions::SHELL;
        let root = Permissions {
            root: true,
            ..Permissions::SHELL
        };
        assert_eq!(
            RunAs::for_session(root, Some(65534)).unwrap().account.uid,
            0
        );
        let user = RunAs::for_session(shell, Some(65534)).unwrap();
        assert_eq!(user.account.uid, 65534);
        assert!(user.switch);
        assert_eq!(
            RunAs::for_session(shell, None).unwrap_err().to_string(),
            NO_SESSION_USER
        );
        assert_eq!(
            RunAs::for_session(shell, Some(0)).unwrap_err().to_string(),
            NO_SESSION_USER
        );
        // Root alone (without shell or files) is not a way in.
        let odd = Permissions {
            root: true,
            ..Permissions::VIEW
        };
        assert!(RunAs::for_session(odd, None).is_err());
    }

    #[test]
    fn file_access_runs_with_the_users_credentials_on_its_own_thread() {
        if tether_net::local::current_uid() != 0 {
            return;
        }
        let who = RunAs::for_session(Permissions::FILES, Some(65534)).unwrap();
        let (euid, denied) = who
            .run(|| {
                Ok::<_, AccountError>((
                    nix::unistd::geteuid().as_raw(),
                    std::fs::read("/etc/shadow").is_err(),
                ))
            })
            .unwrap();
        assert_eq!(euid, 65534);
        assert!(denied);
        // This thread (and so the agent) is still root.
        assert_eq!(nix::unistd::geteuid().as_raw(), 0);
    }
}
