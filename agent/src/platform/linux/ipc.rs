//! Local IPC on Linux: a Unix socket anyone may connect to, whose peers the kernel names
//! (`SO_PEERCRED`), bound so that a desktop user who owns its directory cannot turn the
//! agent's mode change on the socket against another file.

use std::path::{Path, PathBuf};

/// A connection to the local socket.
pub type LocalStream = tokio::net::UnixStream;

/// The local socket, accepting connections.
pub struct LocalListener(tokio::net::UnixListener);

/// Binds `path` ([`bind`]) for accepting on the runtime.
pub fn listen(path: &Path, desktop_uid: u32) -> std::io::Result<LocalListener> {
    let listener = bind(path, desktop_uid)?;
    listener.set_nonblocking(true)?;
    Ok(LocalListener(tokio::net::UnixListener::from_std(listener)?))
}

impl LocalListener {
    pub async fn accept(&self) -> std::io::Result<LocalStream> {
        self.0.accept().await.map(|(s, _)| s)
    }
}

/// The uid of the process at the other end, as the kernel says (`SO_PEERCRED`).
pub fn peer_uid(stream: &LocalStream) -> std::io::Result<u32> {
    stream.peer_cred().map(|c| c.uid())
}

/// Binds the local socket at `path` so that any local user can connect (mode 0666: who may
/// *answer* is decided per peer from its credentials, so a refused user gets a clear message
/// instead of EACCES).
///
/// The directory usually belongs to the desktop user (`/run/user/<uid>`), who can replace any
/// name in it at any moment. So no mode is ever changed by path there: the socket is bound in
/// a private directory the agent makes and holds open (`/proc/self/fd/N/s`), its mode set
/// inside that directory, which nobody else can write, and then renamed into place, which
/// replaces whatever stands at `path` (a stale socket, or a symlink an attacker put there)
/// without following it.
pub fn bind(path: &Path, desktop_uid: u32) -> std::io::Result<std::os::unix::net::UnixListener> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a socket path", path.display()),
        ));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let parent = open_or_make_dir(dir, desktop_uid)?;
    let me = rustix::process::geteuid();
    let mut attempt = 0u32;
    let (private, private_name) = loop {
        let private_name = format!(
            ".{}.{}.{}",
            name.to_string_lossy(),
            std::process::id(),
            rand::random::<u32>()
        );
        match rustix::fs::mkdirat(&parent, private_name.as_str(), Mode::RWXU) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) if attempt < 8 => {
                attempt += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let fd = rustix::fs::openat(
            &parent,
            private_name.as_str(),
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Swapped for someone else's directory between mkdir and open: refuse it.
        let st = rustix::fs::fstat(&fd)?;
        if st.st_uid != me.as_raw() || st.st_mode & 0o077 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{}: the agent's private directory was replaced while binding; refusing",
                    dir.display()
                ),
            ));
        }
        break (fd, private_name);
    };
    let result = (|| {
        let inner = PathBuf::from(format!(
            "/proc/self/fd/{}/s",
            std::os::fd::AsRawFd::as_raw_fd(&private)
        ));
        let listener = std::os::unix::net::UnixListener::bind(&inner)?;
        rustix::fs::chmodat(&private, "s", Mode::from_raw_mode(0o666), AtFlags::empty())?;
        #[cfg(test)]
        tests::hook_before_rename(path);
        rustix::fs::renameat(&private, "s", &parent, name)?;
        Ok(listener)
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(&private, "s", AtFlags::empty());
    }
    // Empty now; if the user renamed it meanwhile this removes nothing of anyone else's
    // (rmdir takes only an empty directory).
    let _ = rustix::fs::unlinkat(&parent, private_name.as_str(), AtFlags::REMOVEDIR);
    result
}

/// Opens the socket's directory; when it does not exist, makes it (0700, owned by the desktop
/// user, as logind would have made the runtime dir), changing modes only through the handle of
/// the directory just made, never by a path that could have been swapped.
fn open_or_make_dir(dir: &Path, desktop_uid: u32) -> std::io::Result<rustix::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    match rustix::fs::open(dir, flags, Mode::empty()) {
        Ok(fd) => return Ok(fd),
        Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(up) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(up)?;
    }
    let made = match rustix::fs::mkdir(dir, Mode::RWXU) {
        Ok(()) => true,
        Err(rustix::io::Errno::EXIST) => false,
        Err(e) => return Err(e.into()),
    };
    let fd = rustix::fs::open(dir, flags | OFlags::NOFOLLOW, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    if made && st.st_uid == rustix::process::geteuid().as_raw() {
        rustix::fs::fchmod(&fd, Mode::RWXU)?;
        if rustix::process::geteuid().is_root() {
            rustix::fs::fchown(&fd, Some(rustix::fs::Uid::from_raw(desktop_uid)), None)?;
        }
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    type Hook = Box<dyn Fn() + Send>;
    /// Test-only: run at the worst moment of [`bind`] (socket bound, mode set, not yet in
    /// place) for the socket path it is keyed by.
    static HOOKS: Mutex<Vec<(PathBuf, Hook)>> = Mutex::new(Vec::new());

    pub(super) fn hook_before_rename(path: &Path) {
        let hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
        for (p, hook) in hooks.iter() {
            if p == path {
                hook();
            }
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// Puts a symlink to `target` at `link` atomically (a rename over whatever is there), as
    /// the owner of the directory can at any moment.
    fn swap_in_symlink(target: &Path, link: &Path, n: u64) {
        let tmp = link.with_extension(format!("evil{n}"));
        let _ = std::fs::remove_file(&tmp);
        if std::os::unix::fs::symlink(target, &tmp).is_ok() {
            let _ = std::fs::rename(&tmp, link);
        }
    }

    #[test]
    fn the_socket_is_connectable_by_everyone_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let first = bind(&path, tether_net::local::current_uid()).unwrap();
        drop(first);
        let l = bind(&path, tether_net::local::current_uid()).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o666);
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        drop(l);
        // Nothing of the agent's private directories is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    /// The reviewer's local root: the desktop user owns the socket's directory and swaps the
    /// socket for a symlink to a root-only file between bind and chmod, so the agent's chmod
    /// made that file 0666. Here the swap happens deterministically at the worst moment.
    #[test]
    fn a_symlink_swapped_in_before_the_socket_is_in_place_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret_dir = tempfile::tempdir().unwrap();
        let secret = secret_dir.path().join("shadow");
        std::fs::write(&secret, "root only").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.path().join("agent.sock");
        {
            let (secret, path) = (secret.clone(), path.clone());
            HOOKS.lock().unwrap().push((
                path.clone(),
                Box::new(move || swap_in_symlink(&secret, &path, 0)),
            ));
        }
        let l = bind(&path, tether_net::local::current_uid()).unwrap();
        assert_eq!(
            mode(&secret),
            0o600,
            "the agent changed the mode of another file"
        );
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_socket()
        );
        drop(l);
    }

    /// The same attack as a race, as the reviewer ran it: an attacker thread keeps swapping
    /// the socket's name for a symlink while the agent binds again and again. Bounded in time;
    /// it must never win (the old bind-then-chmod-by-path lost within a few tries).
    #[test]
    fn an_attacker_racing_the_bind_never_changes_another_files_mode() {
        let dir = tempfile::tempdir().unwrap();
        let secret_dir = tempfile::tempdir().unwrap();
        let secret = secret_dir.path().join("shadow");
        std::fs::write(&secret, "root only").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.path().join("agent.sock");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let attacker = {
            let (secret, path, stop) = (secret.clone(), path.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    swap_in_symlink(&secret, &path, n % 2);
                    n += 1;
                }
            })
        };
        let start = Instant::now();
        let mut binds = 0;
        while start.elapsed() < Duration::from_secs(2) && mode(&secret) == 0o600 {
            if bind(&path, tether_net::local::current_uid()).is_ok() {
                binds += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        attacker.join().unwrap();
        assert_eq!(mode(&secret), 0o600, "attacker won after {binds} binds");
        assert!(binds > 10, "only {binds} binds in 2 s");
    }
}
