//! Where the desktop portal's restore token is kept between helper runs.
//!
//! With `persist_mode` "until explicitly revoked" the portal answers a started session with a
//! restore token; handing it back next time restores the user's earlier choice without the
//! portal's dialog. Tokens are single-use: every started session returns a fresh one, which
//! replaces the stored one.
//!
//! The file is `$XDG_STATE_HOME/tether/portal-restore-token` (`~/.local/state/tether/…` by
//! default): directory 0700, file 0600. Everything below happens relative to a descriptor of
//! that directory opened with `O_NOFOLLOW`, so a symbolic link planted at the directory, the
//! file or the temporary file is never followed: writes go to a new file created with
//! `O_EXCL | O_NOFOLLOW` and renamed over the final name (a rename replaces a link, it does not
//! write through it), reads open with `O_NOFOLLOW` and accept only a regular file. What is read
//! is bounded and checked: anything longer than [`MAX_TOKEN`], not UTF-8 or holding control
//! characters is ignored (and logged), never handed to the portal.

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The stored token's file name inside the state directory.
pub const FILE_NAME: &str = "portal-restore-token";
/// Longest token accepted (the portals hand out UUIDs, 36 bytes).
pub const MAX_TOKEN: usize = 4096;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("{path}: {errno}")]
    Io { path: PathBuf, errno: Errno },
    #[error("{0}: is a symbolic link or not a directory")]
    NotADirectory(PathBuf),
    #[error("{0}: not a regular file")]
    NotAFile(PathBuf),
    #[error("{0}: longer than {MAX_TOKEN} bytes")]
    TooLong(PathBuf),
    #[error("{0}: not a valid token (not UTF-8, or control characters)")]
    Invalid(PathBuf),
    #[error("no state directory: neither XDG_STATE_HOME nor HOME is an absolute path")]
    NoStateDir,
}

/// The restore token's home on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStore {
    dir: PathBuf,
}

/// `$XDG_STATE_HOME/tether`, or `$HOME/.local/state/tether`. Relative values are ignored, as
/// the XDG base directory specification asks.
pub fn state_dir(xdg_state_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    absolute(xdg_state_home)
        .or_else(|| absolute(home).map(|h| h.join(".local").join("state")))
        .map(|d| d.join("tether"))
}

/// Names for the temporary file: hidden, unlikely to be taken, a few of them.
fn temp_names() -> impl Iterator<Item = String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (0..8u32).map(move |n| {
        format!(
            ".{FILE_NAME}.{}.{:x}",
            std::process::id(),
            nanos.wrapping_add(n)
        )
    })
}

/// A token fit to store and hand to the portal.
pub fn valid_token(t: &str) -> bool {
    !t.is_empty() && t.len() <= MAX_TOKEN && !t.chars().any(char::is_control)
}

impl TokenStore {
    /// The store in the user's state directory (from the environment).
    pub fn from_env() -> Result<TokenStore, TokenError> {
        state_dir(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
            .map(TokenStore::at)
            .ok_or(TokenError::NoStateDir)
    }

    /// A store in `dir` (created on the first save).
    pub fn at(dir: impl Into<PathBuf>) -> TokenStore {
        TokenStore { dir: dir.into() }
    }

    /// The token file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    fn io(&self, name: Option<&str>, errno: Errno) -> TokenError {
        TokenError::Io {
            path: name.map_or_else(|| self.dir.clone(), |n| self.dir.join(n)),
            errno,
        }
    }

    /// The directory, opened without following a link at its last component; `create` makes it
    /// (and missing parents) first. Its mode is set to 0700 — which also fails on a directory
    /// someone else owns, so such a directory is refused.
    fn open_dir(&self, create: bool) -> Result<Option<OwnedFd>, TokenError> {
        if create {
            use std::os::unix::fs::DirBuilderExt;
            if let Err(e) = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
            {
                return Err(self.io(None, Errno::from_io_error(&e).unwrap_or(Errno::IO)));
            }
        }
        let fd = match rustix::fs::open(
            &self.dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if !create => return Ok(None),
            // ELOOP: a symbolic link; ENOTDIR: something else.
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Err(TokenError::NotADirectory(self.dir.clone()));
            }
            Err(e) => return Err(self.io(None, e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.io(None, e))?;
        if st.st_mode & 0o7777 != 0o700 {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700)).map_err(|e| self.io(None, e))?;
        }
        Ok(Some(fd))
    }

    /// The stored token: `Ok(None)` when there is none, an error when what is there cannot be
    /// trusted.
    pub fn read(&self) -> Result<Option<String>, TokenError> {
        let Some(dir) = self.open_dir(false)? else {
            return Ok(None);
        };
        // O_NONBLOCK: a FIFO planted at the name must not hang the helper.
        let fd = match rustix::fs::openat(
            &dir,
            FILE_NAME,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => return Err(TokenError::NotAFile(self.path())),
            Err(e) => return Err(self.io(Some(FILE_NAME), e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.io(Some(FILE_NAME), e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(TokenError::NotAFile(self.path()));
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(MAX_TOKEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                self.io(
                    Some(FILE_NAME),
                    Errno::from_io_error(&e).unwrap_or(Errno::IO),
                )
            })?;
        if bytes.len() > MAX_TOKEN {
            return Err(TokenError::TooLong(self.path()));
        }
        let text = String::from_utf8(bytes).map_err(|_| TokenError::Invalid(self.path()))?;
        let token = text.trim_end_matches('\n');
        if token.is_empty() {
            return Ok(None);
        }
        if !valid_token(token) {
            return Err(TokenError::Invalid(self.path()));
        }
        Ok(Some(token.to_string()))
    }

    /// The stored token, or `None` — problems are logged, and an untrustworthy file is treated as
    /// no token (the portal then simply asks the user).
    pub fn load(&self) -> Option<String> {
        match self.read() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("ignoring the stored portal restore token: {e}");
                None
            }
        }
    }

    /// Stores `token` atomically (temporary file in the same directory, then rename).
    pub fn save(&self, token: &str) -> Result<(), TokenError> {
        self.save_with(token, temp_names())
    }

    fn save_with(
        &self,
        token: &str,
        names: impl Iterator<Item = String>,
    ) -> Result<(), TokenError> {
        if !valid_token(token) {
            return Err(TokenError::Invalid(self.path()));
        }
        let dir = self
            .open_dir(true)?
            .ok_or_else(|| self.io(None, Errno::NOENT))?;
        let (tmp_name, fd) = self.create_temp(&dir, names)?;
        let written = (|| {
            let mut f = std::fs::File::from(fd);
            f.write_all(token.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        })();
        let renamed = written
            .map_err(|e| {
                self.io(
                    Some(&tmp_name),
                    Errno::from_io_error(&e).unwrap_or(Errno::IO),
                )
            })
            .and_then(|()| {
                rustix::fs::renameat(&dir, tmp_name.as_str(), &dir, FILE_NAME)
                    .map_err(|e| self.io(Some(FILE_NAME), e))
            });
        if renamed.is_err() {
            let _ = rustix::fs::unlinkat(&dir, tmp_name.as_str(), AtFlags::empty());
        }
        renamed
    }

    /// A new temporary file, created exclusively (never opening something already there, link
    /// or not); a name that is taken gives way to the next.
    fn create_temp(
        &self,
        dir: &OwnedFd,
        names: impl Iterator<Item = String>,
    ) -> Result<(String, OwnedFd), TokenError> {
        let mut last = Errno::EXIST;
        for name in names {
            match rustix::fs::openat(
                dir,
                name.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => {
                    // The umask cannot widen 0600, but make the mode exact anyway.
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600))
                        .map_err(|e| self.io(Some(&name), e))?;
                    return Ok((name, fd));
                }
                Err(Errno::EXIST) => last = Errno::EXIST,
                Err(e) => return Err(self.io(Some(&name), e)),
            }
        }
        Err(self.io(Some(FILE_NAME), last))
    }

    /// Removes the stored token (the portal refused it). A link at the name is removed, not
    /// followed.
    pub fn forget(&self) -> Result<(), TokenError> {
        let Some(dir) = self.open_dir(false)? else {
            return Ok(());
        };
        match rustix::fs::unlinkat(&dir, FILE_NAME, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.io(Some(FILE_NAME), e)),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// A fresh directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!(
                "tether-portal-token-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn round_trip_creates_the_missing_directory_with_private_modes() {
        let s = Scratch::new("roundtrip");
        let store = TokenStore::at(s.0.join("state").join("tether"));
        assert_eq!(store.read(), Ok(None), "nothing stored, no directory yet");
        store.save("6f1c4d0e-4bb4-4e1b-9d7a-0c1b2a3d4e5f").unwrap();
        assert_eq!(
            store.read().unwrap().as_deref(),
            Some("6f1c4d0e-4bb4-4e1b-9d7a-0c1b2a3d4e5f")
        );
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.path()), 0o600);
        store.save("second").unwrap();
        assert_eq!(store.load().as_deref(), Some("second"), "replaced");
        let left: Vec<_> = std::fs::read_dir(store.dir()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
        store.forget().unwrap();
        assert_eq!(store.read(), Ok(None));
        store.forget().unwrap();
    }

    #[test]
    fn an_existing_directory_is_made_private() {
        let s = Scratch::new("chmod");
        let dir = s.0.join("tether");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        TokenStore::at(&dir).save("t").unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn a_link_at_the_file_is_neither_read_nor_written_through() {
        let s = Scratch::new("filelink");
        let dir = s.0.join("tether");
        std::fs::create_dir(&dir).unwrap();
        let victim = s.0.join("victim");
        std::fs::write(&victim, "secret-but-token-shaped").unwrap();
        symlink(&victim, dir.join(FILE_NAME)).unwrap();
        let store = TokenStore::at(&dir);
        assert!(matches!(store.read(), Err(TokenError::NotAFile(_))));
        assert_eq!(store.load(), None, "an untrusted file is no token");
        store.save("fresh").unwrap();
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "secret-but-token-shaped",
            "the link's target is untouched"
        );
        assert!(
            std::fs::symlink_metadata(store.path())
                .unwrap()
                .file_type()
                .is_file(),
            "the link was replaced by a regular file"
        );
        assert_eq!(store.read().unwrap().as_deref(), Some("fresh"));
        // forget removes a link itself, never its target.
        std::fs::remove_file(store.path()).unwrap();
        symlink(&victim, store.path()).unwrap();
        store.forget().unwrap();
        assert!(victim.exists());
    }

    #[test]
    fn a_linked_directory_is_refused() {
        let s = Scratch::new("dirlink");
        let elsewhere = s.0.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::write(elsewhere.join(FILE_NAME), "planted").unwrap();
        let dir = s.0.join("tether");
        symlink(&elsewhere, &dir).unwrap();
        let store = TokenStore::at(&dir);
        assert!(matches!(store.read(), Err(TokenError::NotADirectory(_))));
        assert!(matches!(store.save("x"), Err(TokenError::NotADirectory(_))));
        assert_eq!(
            std::fs::read_to_string(elsewhere.join(FILE_NAME)).unwrap(),
            "planted"
        );
    }

    #[test]
    fn temporary_names_that_are_taken_are_skipped_not_opened() {
        let s = Scratch::new("tmplink");
        let dir = s.0.join("tether");
        let store = TokenStore::at(&dir);
        store.save("first").unwrap();
        let victim = s.0.join("victim");
        std::fs::write(&victim, "v").unwrap();
        symlink(&victim, dir.join(".planted-link")).unwrap();
        std::fs::write(dir.join(".planted-file"), "f").unwrap();
        let names = [".planted-link", ".planted-file", ".free"].map(String::from);
        store.save_with("second", names.into_iter()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "v",
            "not written through"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(".planted-file")).unwrap(),
            "f"
        );
        assert_eq!(store.read().unwrap().as_deref(), Some("second"));
        assert!(!dir.join(".free").exists(), "renamed into place");
        // Every name taken: the save fails and the stored token stays.
        let names = [".planted-link", ".planted-file"].map(String::from);
        assert!(matches!(
            store.save_with("third", names.into_iter()),
            Err(TokenError::Io {
                errno: Errno::EXIST,
                ..
            })
        ));
        assert_eq!(store.read().unwrap().as_deref(), Some("second"));
    }

    #[test]
    fn oversize_binary_and_control_characters_are_ignored() {
        let s = Scratch::new("bad");
        let dir = s.0.join("tether");
        let store = TokenStore::at(&dir);
        store.save("ok").unwrap();
        std::fs::write(store.path(), "a".repeat(MAX_TOKEN + 1)).unwrap();
        assert!(matches!(store.read(), Err(TokenError::TooLong(_))));
        assert_eq!(store.load(), None);
        std::fs::write(store.path(), "a".repeat(MAX_TOKEN)).unwrap();
        assert_eq!(store.read().unwrap().map(|t| t.len()), Some(MAX_TOKEN));
        std::fs::write(store.path(), [0x66, 0xff, 0x66]).unwrap();
        assert!(matches!(store.read(), Err(TokenError::Invalid(_))));
        std::fs::write(store.path(), "line1\nline2\n").unwrap();
        assert!(matches!(store.read(), Err(TokenError::Invalid(_))));
        std::fs::write(store.path(), "").unwrap();
        assert_eq!(store.read(), Ok(None));
        assert!(matches!(
            store.save(&"b".repeat(MAX_TOKEN + 1)),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            store.save("a\u{1b}b"),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(store.save(""), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn a_fifo_is_not_a_token() {
        let s = Scratch::new("fifo");
        let dir = s.0.join("tether");
        let store = TokenStore::at(&dir);
        store.save("x").unwrap();
        std::fs::remove_file(store.path()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            store.path().as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(matches!(store.read(), Err(TokenError::NotAFile(_))));
    }

    #[test]
    fn the_state_directory_follows_xdg() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            state_dir(os("/x/state"), os("/home/u")),
            Some(PathBuf::from("/x/state/tether"))
        );
        assert_eq!(
            state_dir(None, os("/home/u")),
            Some(PathBuf::from("/home/u/.local/state/tether"))
        );
        assert_eq!(
            state_dir(os("relative"), os("/home/u")),
            Some(PathBuf::from("/home/u/.local/state/tether")),
            "a relative XDG_STATE_HOME is ignored"
        );
        assert_eq!(state_dir(None, os("")), None);
        assert_eq!(state_dir(None, None), None);
    }
}
