//! Finding the user's Wayland session: its runtime directory, Wayland socket and session bus.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A Wayland session the helper can join: whose it is and the variables that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnv {
    pub uid: u32,
    /// `XDG_RUNTIME_DIR`, `WAYLAND_DISPLAY`, `DBUS_SESSION_BUS_ADDRESS` (when known).
    pub vars: Vec<(String, String)>,
}

impl SessionEnv {
    /// The session this process's environment names (`WAYLAND_DISPLAY` with
    /// `XDG_RUNTIME_DIR`), owned by whoever owns its Wayland socket.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Option<SessionEnv> {
        let display = var("WAYLAND_DISPLAY").filter(|v| !v.is_empty())?;
        let runtime = var("XDG_RUNTIME_DIR").filter(|v| !v.is_empty());
        let socket = if display.starts_with('/') {
            PathBuf::from(&display)
        } else {
            PathBuf::from(runtime.as_deref()?).join(&display)
        };
        let uid = socket_owner(&socket)?;
        let mut vars = vec![("WAYLAND_DISPLAY".to_string(), display)];
        if let Some(r) = runtime {
            vars.push(("XDG_RUNTIME_DIR".into(), r));
        }
        if let Some(bus) = var("DBUS_SESSION_BUS_ADDRESS").filter(|v| !v.is_empty()) {
            vars.push(("DBUS_SESSION_BUS_ADDRESS".into(), bus));
        }
        Some(SessionEnv { uid, vars })
    }

    /// The session of `uid` as systemd-logind lays it out: `/run/user/<uid>`, the first
    /// `wayland-N` socket there that the user owns, and the bus socket `bus`.
    pub fn for_user(uid: u32) -> Option<SessionEnv> {
        Self::in_runtime_dir(uid, &PathBuf::from(format!("/run/user/{uid}")))
    }

    fn in_runtime_dir(uid: u32, dir: &Path) -> Option<SessionEnv> {
        // The directory must be the user's: a socket planted elsewhere is not their session.
        let meta = std::fs::symlink_metadata(dir).ok()?;
        if !meta.is_dir() || meta.uid() != uid {
            return None;
        }
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                n.strip_prefix("wayland-")
                    .is_some_and(|rest| !rest.is_empty() && !rest.ends_with(".lock"))
            })
            .filter(|n| socket_owner(&dir.join(n)) == Some(uid))
            .collect();
        names.sort();
        let display = names.into_iter().next()?;
        let mut vars = vec![
            ("WAYLAND_DISPLAY".to_string(), display),
            ("XDG_RUNTIME_DIR".to_string(), dir.display().to_string()),
        ];
        let bus = dir.join("bus");
        if socket_owner(&bus) == Some(uid) {
            vars.push((
                "DBUS_SESSION_BUS_ADDRESS".into(),
                format!("unix:path={}", bus.display()),
            ));
        }
        Some(SessionEnv { uid, vars })
    }

    #[cfg(test)]
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The owner of a Unix socket (not following a link).
fn socket_owner(path: &Path) -> Option<u32> {
    let m = std::fs::symlink_metadata(path).ok()?;
    m.file_type().is_socket().then_some(m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_session_is_found_from_the_environment_or_the_runtime_dir() {
        let dir = tempfile::tempdir().unwrap();
        let me = rustix::process::getuid().as_raw();
        let _l = UnixListener::bind(dir.path().join("wayland-1")).unwrap();
        let _b = UnixListener::bind(dir.path().join("bus")).unwrap();
        std::fs::write(dir.path().join("wayland-1.lock"), b"").unwrap();
        let runtime = dir.path().display().to_string();
        let env = |n: &str| match n {
            "WAYLAND_DISPLAY" => Some("wayland-1".to_string()),
            "XDG_RUNTIME_DIR" => Some(runtime.clone()),
            "DBUS_SESSION_BUS_ADDRESS" => Some("unix:path=/x".to_string()),
            _ => None,
        };
        let s = SessionEnv::from_env(env).unwrap();
        assert_eq!(s.uid, me);
        assert_eq!(s.var("DBUS_SESSION_BUS_ADDRESS"), Some("unix:path=/x"));
        // No socket there: no session.
        let none = |n: &str| match n {
            "WAYLAND_DISPLAY" => Some("wayland-9".to_string()),
            "XDG_RUNTIME_DIR" => Some(runtime.clone()),
            _ => None,
        };
        assert_eq!(SessionEnv::from_env(none), None);
        assert_eq!(SessionEnv::from_env(|_| None), None);

        let s = SessionEnv::in_runtime_dir(me, dir.path()).unwrap();
        assert_eq!(s.var("WAYLAND_DISPLAY"), Some("wayland-1"));
        let bus = format!("unix:path={}/bus", runtime);
        assert_eq!(s.var("DBUS_SESSION_BUS_ADDRESS"), Some(bus.as_str()));
        // Another user's directory is not this user's session.
        assert_eq!(SessionEnv::in_runtime_dir(me + 1, dir.path()), None);
    }

    #[test]
    fn a_regular_file_named_like_a_socket_is_not_a_session() {
        let dir = tempfile::tempdir().unwrap();
        let me = rustix::process::getuid().as_raw();
        std::fs::write(dir.path().join("wayland-0"), b"").unwrap();
        assert_eq!(SessionEnv::in_runtime_dir(me, dir.path()), None);
    }
}
