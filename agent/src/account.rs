//! Who a session acts as on the device. The agent runs as root (it must, to serve any desktop),
//! but a session's shells, commands and file access run as the *session user* — the desktop's
//! user, or `tether-agent run --session-user` — and as root only when the relay-signed grant
//! carries the `root` permission (which the relay grants only where the device group's policy
//! allows it, and which the user saw in the prompt). An agent that does not run as root runs
//! everything as itself and refuses root sessions.
//!
//! How the switch is made:
//! - processes (shells on a PTY, commands) start through `setpriv --reuid --regid --init-groups`
//!   (util-linux): portable-pty offers no hook between fork and exec, and this crate forbids the
//!   `unsafe` a `pre_exec` would need, so a tiny exec-only helper does the switch. `setpriv` sets
//!   the user's real, effective and saved ids and their supplementary groups from the group
//!   database (std's `Command::uid` would drop every supplementary group), then execs the
//!   command: the command keeps the pid, so its process group is still the agent's to kill.
//! - file access runs on a fresh thread (never a pooled one) that switches its own credentials
//!   (Linux keeps credentials per thread at the syscall level; rustix calls the raw syscalls,
//!   not glibc's process-wide wrappers): supplementary groups, then gid, then the effective uid.
//!   The real and saved uid stay 0, so the session user can neither signal nor ptrace that
//!   thread (a fatal signal would take the whole agent down); the kernel checks every access as
//!   the user and files are created as theirs. The thread ends with the operation.

use std::ffi::CString;
use std::path::PathBuf;
use tether_protocol::session::Permissions;

/// A user's identity from the user database (NSS: local files, LDAP, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, primary included.
    pub groups: Vec<u32>,
    pub name: String,
    pub home: PathBuf,
    pub shell: PathBuf,
}

impl Account {
    pub fn lookup(uid: u32) -> Result<Account, String> {
        if uid == u32::MAX {
            return Err("uid -1 is not a user".into());
        }
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .map_err(|e| format!("looking up uid {uid}: {e}"))?
            .ok_or_else(|| format!("uid {uid} has no entry in the user database"))?;
        let gid = user.gid.as_raw();
        if gid == u32::MAX {
            return Err(format!("uid {uid} has gid -1"));
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
    ) -> Result<RunAs, String> {
        let me = tether_net::local::current_uid();
        if permissions.as_root() {
            if me != 0 {
                return Err(
                    "the agent on this device does not run as root, so the session cannot run as root"
                        .into(),
                );
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
        match session_user {
            Some(uid) if uid != 0 => Ok(RunAs {
                account: Account::lookup(uid)?,
                switch: true,
            }),
            _ => Err(NO_SESSION_USER.into()),
        }
    }

    /// "nobody (uid 65534)" or "root", for the audit record.
    pub fn describe(&self) -> String {
        if self.account.uid == 0 {
            "root".into()
        } else {
            format!("{} (uid {})", self.account.name, self.account.uid)
        }
    }

    /// `setpriv` and its arguments to put in front of a command, when switching.
    pub fn wrapper(&self) -> Result<Option<Vec<String>>, String> {
        if !self.switch {
            return Ok(None);
        }
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("setpriv (util-linux) is missing on the device; it is needed to run as the desktop user")?;
        Ok(Some(vec![
            setpriv.to_string(),
            format!("--reuid={}", self.account.uid),
            format!("--regid={}", self.account.gid),
            "--init-groups".to_string(),
            "--".to_string(),
        ]))
    }

    /// Runs `f` with this account's credentials on a fresh thread of its own (see the module
    /// docs), and waits for it.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let who = self.clone();
        std::thread::Builder::new()
            .name("tether-as-user".into())
            .spawn(move || {
                who.become_on_this_thread()?;
                f()
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?
            .join()
            .map_err(|_| "file operation failed unexpectedly".to_string())?
    }

    /// Only ever called on a thread that ends right after (see [`RunAs::run`]).
    fn become_on_this_thread(&self) -> Result<(), String> {
        use rustix::thread::{Gid, Uid};
        use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
        if !self.switch {
            return Ok(());
        }
        let groups: Vec<Gid> = self
            .account
            .groups
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        let gid = Gid::from_raw(self.account.gid);
        // Order matters: after the uid changes, the thread may no longer change its groups.
        set_thread_groups(&groups)
            .and_then(|()| set_thread_res_gid(gid, gid, gid))
            .and_then(|()| set_thread_res_uid(None, Uid::from_raw(self.account.uid), None))
            .map_err(|e| format!("cannot act as {}: {e}", self.describe()))
    }
}

/// Why a session without root cannot run on a root agent that knows no desktop user.
pub const NO_SESSION_USER: &str = "this device has no desktop user to run as (no X display owner); start its agent with --session-user NAME, or ask for --as-root where the group's policy allows it";

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
            RunAs::for_session(shell, None).unwrap_err(),
            NO_SESSION_USER
        );
        assert_eq!(
            RunAs::for_session(shell, Some(0)).unwrap_err(),
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
                Ok((
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
