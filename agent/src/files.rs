//! File transfer for a session (files permission). A pushed file is written to a part file
//! beside its destination (`.NAME.SHA12.tether-part`), resumed from its length after a dropped
//! connection, checked against the SHA-256 the technician sent, and only then renamed to its
//! name: a transfer that fails midway never leaves a half-written file under the final name.
//!
//! Every access runs as the session's account ([`RunAs`]: the desktop user unless the grant
//! carries root), on a fresh thread with that user's credentials, so the kernel checks each
//! access as the user and what is created belongs to them.
//!
//! Nothing is written through a symlink, and no path is resolved twice: the destination root is
//! opened once (`openat2` with `RESOLVE_NO_SYMLINKS`, so no component of it may be a symlink),
//! every directory below it is opened from the one above it (`RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`), and the part file is created, renamed or removed relative to the
//! directory handle held since. Someone who owns a directory on the way can swap it for a
//! symlink at any moment (`renameat2(RENAME_EXCHANGE)`); the agent keeps using the directory it
//! opened, so the write can never land in the symlink's target. Reads (stat, pull) open the
//! path once and work from that handle; a tree is walked directory handle by directory handle.

use crate::account::{AccountError, RunAs};
use crate::platform::fs::{self as pfs, Dir, Found, Kind, LinkSafeError};
use ring::digest::{Context, SHA256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use tether_protocol::paths;
use tether_protocol::session::{
    DirEntry, MAX_ENTRIES, MAX_GET_CHUNK, PutStart, RemoteEntry, ToViewer,
};
use tether_protocol::token::hex;
use thiserror::Error;
use tokio::sync::mpsc;

/// Why a transfer or a look at a path failed: one line for the technician (and the audit).
#[derive(Debug, Error)]
pub enum FileError {
    #[error("destination {0} must be an absolute path on the device")]
    RootNotAbsolute(String),
    #[error("destination {0} contains '..'; name the directory itself")]
    RootClimbs(String),
    #[error("destination directory {0} does not exist on the device")]
    RootMissing(String),
    #[error("destination {0} is a symlink; not writing through it (name the real directory)")]
    RootIsSymlink(String),
    #[error("destination {0} is not a directory on the device")]
    RootNotDirectory(String),
    #[error(
        "destination {0} is or passes through a symlink; not writing through it (name the real directory)"
    )]
    RootThroughSymlink(String),
    #[error("file transfer needs Linux 5.6 or later (openat2) on the device")]
    Unsupported,
    #[error("{0} is a symlink; not writing through it")]
    Symlink(String),
    #[error("{0} exists and is not a directory")]
    NotDirectory(String),
    #[error("{0} exists and is not a regular file; not replacing it")]
    NotReplacing(String),
    #[error("{0} exists and is not this transfer's own file; remove it and push again")]
    ForeignPart(String),
    #[error("bad checksum in push request")]
    BadChecksum,
    #[error(transparent)]
    BadPath(#[from] paths::PathError),
    #[error("empty path")]
    EmptyPath,
    #[error("more data than the announced size")]
    TooMuchData,
    #[error(
        "checksum mismatch for {dest} (sent {sent}, received {got}); the partial file was removed"
    )]
    ChecksumMismatch {
        dest: String,
        sent: String,
        got: String,
    },
    #[error("{0} must be an absolute path on the device")]
    NotAbsolute(String),
    #[error("{0} is neither a file nor a directory")]
    NeitherFileNorDirectory(String),
    #[error("{0} holds more than {MAX_ENTRIES} entries; pull a smaller directory")]
    TooManyEntries(String),
    #[error("{0} is not a regular file")]
    NotRegular(String),
    #[error("{0} changed size while being read")]
    ChangedSize(String),
    #[error("session ended")]
    SessionEnded,
    #[error("file reader stopped")]
    ReaderStopped,
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// An I/O error on a handle already held (its path was named before).
    #[error("{0}")]
    Handle(std::io::Error),
    #[error(transparent)]
    Account(#[from] AccountError),
}

fn io_at(path: impl Into<String>) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.into();
    move |source| FileError::Io { path, source }
}

/// A push in progress.
pub struct Put {
    who: RunAs,
    /// The directory the file goes into, held open since it was checked.
    dir: Arc<Dir>,
    part_name: String,
    name: String,
    /// The destination as the technician named it (for messages and the audit record).
    dest: String,
    file: File,
    hash: Context,
    written: u64,
    size: u64,
    sha256: String,
    mode: u32,
}

/// Points where a test swaps directories for symlinks (the race a check-then-use would lose).
#[cfg(test)]
pub(crate) mod race {
    #[allow(clippy::type_complexity)]
    pub static HOOK: std::sync::Mutex<Option<(String, Box<dyn FnMut(&str) + Send>)>> =
        std::sync::Mutex::new(None);

    /// Runs the hook installed for this destination root, if any, telling it where we are:
    /// `dir` (about to open the next directory), `walked` (every directory checked, the part
    /// file not yet opened) or `rename` (about to give the file its name; keyed by the
    /// destination file instead of the root).
    pub fn at(key: &str, point: &str) {
        if let Ok(mut h) = HOOK.lock()
            && let Some((k, f)) = h.as_mut()
            && k == key
        {
            f(point);
        }
    }
}

/// Opens the destination root: an existing absolute directory, no symlink anywhere on its path.
fn open_root(root: &str) -> Result<Dir, FileError> {
    if !Path::new(root).is_absolute() {
        return Err(FileError::RootNotAbsolute(root.into()));
    }
    // `/tmp/a/../x` is not "under /tmp/a": what the user was shown (and the audit keeps) must be
    // where the file lands, so a destination that climbs is refused rather than resolved.
    if Path::new(root)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(FileError::RootClimbs(root.into()));
    }
    pfs::open_dir_nofollow(root).map_err(|e| match e {
        LinkSafeError::NotFound => FileError::RootMissing(root.into()),
        LinkSafeError::Symlink => FileError::RootIsSymlink(root.into()),
        LinkSafeError::NotDirectory => FileError::RootNotDirectory(root.into()),
        LinkSafeError::ThroughSymlink => FileError::RootThroughSymlink(root.into()),
        LinkSafeError::Unsupported => FileError::Unsupported,
        LinkSafeError::Io(e) => io_at(root)(e),
    })
}

/// Opens (making it if missing) the directory `name` inside `parent`, never through a symlink.
fn open_subdir(parent: &Dir, name: &str, shown: &str) -> Result<Dir, FileError> {
    parent.open_or_make_subdir(name).map_err(|e| match e {
        LinkSafeError::Symlink | LinkSafeError::ThroughSymlink => FileError::Symlink(shown.into()),
        LinkSafeError::NotDirectory => FileError::NotDirectory(shown.into()),
        LinkSafeError::Io(e) => io_at(shown)(e),
        e => io_at(shown)(std::io::Error::other(e)),
    })
}

fn valid_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The effective uid a file operation of `who` runs with, as file owners are reported. On
/// Windows every file's owner is reported as 0 (owners are SIDs, not modelled yet), so the
/// part-file check compares with 0 there, as it did before sessions switched users.
fn effective_uid(who: &RunAs) -> u32 {
    if cfg!(windows) {
        return 0;
    }
    if who.switch {
        who.account.uid
    } else {
        tether_net::local::current_uid()
    }
}

impl Put {
    /// Opens (or resumes) the part file. Returns the offset the technician sends from.
    pub fn start(p: &PutStart, who: &RunAs) -> Result<(Put, u64), FileError> {
        if !valid_sha(&p.sha256) {
            return Err(FileError::BadChecksum);
        }
        let sha256 = p.sha256.to_ascii_lowercase();
        let parts = paths::relative(&p.rel)?;
        let (name, dirs) = parts.split_last().ok_or(FileError::EmptyPath)?;
        let name = name.to_string();
        let dirs: Vec<String> = dirs.iter().map(|d| d.to_string()).collect();
        let root = p.root.clone();
        let part_name = format!(".{name}.{}.tether-part", &sha256[..12]);
        let uid = effective_uid(who);
        let size = p.size;
        let (dir, file, have, hash) = {
            let (name, part_name, root) = (name.clone(), part_name.clone(), root.clone());
            who.run(move || open_part(&root, &dirs, &name, &part_name, uid, size))?
        };
        let dest = format!("{}/{}", root.trim_end_matches('/'), p.rel);
        Ok((
            Put {
                who: who.clone(),
                dir: Arc::new(dir),
                part_name,
                name,
                dest,
                file,
                hash,
                written: have,
                size,
                sha256,
                mode: p.mode & 0o777,
            },
            have,
        ))
    }

    /// Appends a chunk. `Ok(Some(done))` when the file is complete and in place.
    pub fn chunk(&mut self, data: &[u8]) -> Result<Option<ToViewer>, FileError> {
        if self.written + data.len() as u64 > self.size {
            self.remove_part();
            return Err(FileError::TooMuchData);
        }
        self.file
            .write_all(data)
            .map_err(io_at(self.dest.as_str()))?;
        self.hash.update(data);
        self.written += data.len() as u64;
        if self.written < self.size {
            return Ok(None);
        }
        self.finish().map(Some)
    }

    /// A zero-length file is complete before any chunk.
    pub fn is_complete(&self) -> bool {
        self.written == self.size
    }

    fn remove_part(&self) {
        let (dir, part) = (self.dir.clone(), self.part_name.clone());
        let _ = self
            .who
            .run(move || dir.remove_file(&part).map_err(FileError::Handle));
    }

    pub fn finish(&mut self) -> Result<ToViewer, FileError> {
        let got = hex(self.hash.clone().finish().as_ref());
        if got != self.sha256 {
            self.remove_part();
            return Err(FileError::ChecksumMismatch {
                dest: self.dest.clone(),
                sent: self.sha256.clone(),
                got,
            });
        }
        let file = self.file.try_clone().map_err(FileError::Handle)?;
        let (dir, part, name, mode) = (
            self.dir.clone(),
            self.part_name.clone(),
            self.name.clone(),
            self.mode,
        );
        let dest = self.dest.clone();
        self.who.run(move || {
            file.sync_all().map_err(FileError::Handle)?;
            pfs::set_mode(&file, mode).map_err(FileError::Handle)?;
            #[cfg(test)]
            race::at(&dest, "rename");
            // Inside the directory held since the check: a swapped path cannot redirect it.
            dir.rename(&part, &name).map_err(io_at(dest))
        })?;
        Ok(ToViewer::PutDone {
            size: self.size,
            sha256: got,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "push {} ({} bytes, sha256 {})",
            self.dest, self.size, self.sha256
        )
    }
}

/// Walks to the destination directory and opens the part file in it (on the session user's
/// thread). Returns the directory, the part file, its length and the hash of what it holds.
fn open_part(
    root: &str,
    dirs: &[String],
    name: &str,
    part_name: &str,
    uid: u32,
    size: u64,
) -> Result<(Dir, File, u64, Context), FileError> {
    let mut dir = open_root(root)?;
    let mut shown = root.trim_end_matches('/').to_string();
    for d in dirs {
        #[cfg(test)]
        race::at(root, "dir");
        shown = format!("{shown}/{d}");
        dir = open_subdir(&dir, d, &shown)?;
    }
    #[cfg(test)]
    race::at(root, "walked");
    let dest = format!("{shown}/{name}");
    if dir.kind_of(name).is_some_and(|k| k != Kind::File) {
        return Err(FileError::NotReplacing(dest));
    }
    let (mut file, st) = dir
        .create_or_open_nofollow(part_name, 0o600)
        .map_err(|e| match e {
            LinkSafeError::Symlink => FileError::Symlink(format!("{shown}/{part_name}")),
            LinkSafeError::Io(e) => io_at(dest.as_str())(e),
            e => io_at(dest.as_str())(std::io::Error::other(e)),
        })?;
    // A part file someone else prepared (a hard link to another file, a file of another
    // user) is not resumed into.
    if st.kind != Kind::File || st.links != 1 || st.owner != uid {
        return Err(FileError::ForeignPart(format!("{shown}/{part_name}")));
    }
    let mut have = st.size;
    if have > size {
        file.set_len(0).map_err(FileError::Handle)?;
        have = 0;
    }
    // Resuming: the checksum covers the whole file, so hash what is already there.
    let mut hash = Context::new(&SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = have;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want]).map_err(FileError::Handle)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    file.seek(SeekFrom::Start(have))
        .map_err(FileError::Handle)?;
    Ok((dir, file, have, hash))
}

/// What is at `path`: a file, or a directory and every file and directory below it (symlinks
/// inside are skipped, names that are not UTF-8 too). Runs as the session's account.
pub fn stat(path: &str, who: &RunAs) -> Result<RemoteEntry, FileError> {
    let path = path.to_string();
    who.run(move || stat_as_user(&path))
}

fn stat_as_user(path: &str) -> Result<RemoteEntry, FileError> {
    if !Path::new(path).is_absolute() {
        return Err(FileError::NotAbsolute(path.into()));
    }
    let root = match pfs::look_at(path).map_err(io_at(path))? {
        Found::File(st) => {
            return Ok(RemoteEntry::File {
                size: st.size,
                mode: st.mode,
            });
        }
        Found::Directory(dir) => dir,
        Found::Other => return Err(FileError::NeitherFileNorDirectory(path.into())),
    };
    let mut entries = Vec::new();
    // Directories still to list: the one they are in (held open), their name, their prefix.
    let mut stack: Vec<(Arc<Dir>, Option<String>, String)> =
        vec![(Arc::new(root), None, String::new())];
    while let Some((parent, name, prefix)) = stack.pop() {
        let shown = format!("{path}/{prefix}");
        let dir = match &name {
            None => parent,
            Some(n) => Arc::new(parent.open_subdir(n).map_err(io_at(shown.as_str()))?),
        };
        for (name, st) in dir.entries().map_err(io_at(shown.as_str()))? {
            let rel = format!("{prefix}{name}");
            match st.kind {
                Kind::Directory => {
                    entries.push(DirEntry {
                        rel: rel.clone(),
                        size: 0,
                        mode: st.mode,
                        dir: true,
                    });
                    stack.push((dir.clone(), Some(name), format!("{rel}/")));
                }
                Kind::File => entries.push(DirEntry {
                    rel,
                    size: st.size,
                    mode: st.mode,
                    dir: false,
                }),
                _ => {}
            }
            if entries.len() > MAX_ENTRIES {
                return Err(FileError::TooManyEntries(path.into()));
            }
        }
    }
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(RemoteEntry::Dir { entries })
}

/// Opens the file a pull reads, once, as the session's account: a regular file only (a FIFO
/// or device is refused before any read could block or never end).
fn open_for_get(path: &str) -> Result<File, FileError> {
    if !Path::new(path).is_absolute() {
        return Err(FileError::NotAbsolute(path.into()));
    }
    let (file, st) = pfs::open_for_reading(path).map_err(io_at(path))?;
    if st.kind != Kind::File {
        return Err(FileError::NotRegular(path.into()));
    }
    Ok(file)
}

/// Streams the file at `path` from `offset` into `out`, then its size and the SHA-256 of the
/// whole file. Returns the `FileEnd` it sent (for the audit record).
pub async fn get(
    path: String,
    offset: u64,
    who: RunAs,
    out: mpsc::Sender<ToViewer>,
) -> Result<ToViewer, FileError> {
    let (tx, mut rx) = mpsc::channel::<Result<ToViewer, FileError>>(4);
    // Disk reads and hashing on a thread of their own, as the session's account; the channel
    // paces them to the network.
    let reader = tokio::task::spawn_blocking(move || {
        who.run(move || {
            let mut f = open_for_get(&path)?;
            let size = f.metadata().map_err(FileError::Handle)?.len();
            let mut hash = Context::new(&SHA256);
            let mut buf = vec![0u8; MAX_GET_CHUNK];
            let mut pos = 0u64;
            loop {
                let n = f.read(&mut buf).map_err(io_at(path.as_str()))?;
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
                let end = pos + n as u64;
                if end > offset {
                    let from = offset.saturating_sub(pos) as usize;
                    if tx
                        .blocking_send(Ok(ToViewer::FileChunk(buf[from..n].to_vec())))
                        .is_err()
                    {
                        return Err(FileError::SessionEnded);
                    }
                }
                pos = end;
            }
            if pos != size {
                return Err(FileError::ChangedSize(path));
            }
            let end = ToViewer::FileEnd {
                size: pos,
                sha256: hex(hash.finish().as_ref()),
            };
            let _ = tx.blocking_send(Ok(end.clone()));
            Ok(end)
        })
    });
    let mut sent_end = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Ok(end @ ToViewer::FileEnd { .. }) => {
                out.send(end.clone())
                    .await
                    .map_err(|_| FileError::SessionEnded)?;
                sent_end = Some(end);
            }
            Ok(chunk) => out.send(chunk).await.map_err(|_| FileError::SessionEnded)?,
            Err(e) => return Err(e),
        }
    }
    if let Some(end) = sent_end {
        return Ok(end);
    }
    // The channel closed without an end: the reader's error says why.
    match reader.await {
        Ok(Err(e)) => Err(e),
        _ => Err(FileError::ReaderStopped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Account;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// The agent's own account (root in CI): a root session, where a redirected write would
    /// do harm.
    fn me() -> RunAs {
        RunAs {
            account: Account::lookup(tether_net::local::current_uid()).unwrap(),
            switch: false,
        }
    }

    fn sha(data: &[u8]) -> String {
        hex(ring::digest::digest(&SHA256, data).as_ref())
    }

    fn put(root: &Path, rel: &str, data: &[u8]) -> PutStart {
        PutStart {
            root: root.display().to_string(),
            rel: rel.into(),
            size: data.len() as u64,
            sha256: sha(data),
            mode: 0o640,
        }
    }

    #[test]
    fn push_resumes_and_renames_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let req = put(dir.path(), "sub/file.bin", &data);
        let (mut p, offset) = Put::start(&req, &me()).unwrap();
        assert_eq!(offset, 0);
        assert!(p.chunk(&data[..100_000]).unwrap().is_none());
        drop(p);
        assert!(!dir.path().join("sub/file.bin").exists());
        // Reconnect: resume where the part file ends.
        let (mut p, offset) = Put::start(&req, &me()).unwrap();
        assert_eq!(offset, 100_000);
        let done = p.chunk(&data[100_000..]).unwrap();
        assert!(matches!(
            done,
            Some(ToViewer::PutDone { size: 300_000, .. })
        ));
        assert_eq!(
            std::fs::read(dir.path().join("sub/file.bin")).unwrap(),
            data
        );
        let mode = std::fs::metadata(dir.path().join("sub/file.bin"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }

    #[test]
    fn corrupted_push_is_removed_not_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = put(dir.path(), "f", b"hello");
        req.sha256 = sha(b"other");
        let (mut p, _) = Put::start(&req, &me()).unwrap();
        assert!(
            p.chunk(b"hello")
                .unwrap_err()
                .to_string()
                .contains("checksum mismatch")
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn no_escape_through_dotdot_or_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), dir.path().join("filelink")).unwrap();
        for rel in ["../x", "a/../../x", "/etc/x", "link/x", "filelink"] {
            let err = Put::start(&put(dir.path(), rel, b"x"), &me()).err();
            assert!(err.is_some(), "{rel} was accepted");
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(Put::start(&put(Path::new("relative"), "x", b"x"), &me()).is_err());
        // A root that climbs (`ROOT/inner/..`) is refused, not resolved to ROOT's parent.
        std::fs::create_dir(dir.path().join("inner")).unwrap();
        let climbing = dir.path().join("inner/..");
        let err = Put::start(&put(&climbing, "x", b"x"), &me()).err();
        assert!(
            err.is_some_and(|e| e.to_string().contains("'..'")),
            "a climbing root was accepted"
        );
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn stat_lists_a_tree_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/c.txt"), b"abc").unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("etc")).unwrap();
        let RemoteEntry::Dir { entries } = stat(&dir.path().display().to_string(), &me()).unwrap()
        else {
            panic!("not a dir");
        };
        let names: Vec<_> = entries.iter().map(|e| (e.rel.as_str(), e.size)).collect();
        assert_eq!(names, vec![("a", 0), ("a/b", 0), ("a/b/c.txt", 3)]);
    }

    /// A destination (`dest/sub`, owned in real life by a user) and a "root-only" directory the
    /// user wants the root agent to write into.
    fn race_dirs() -> (tempfile::TempDir, tempfile::TempDir) {
        let dest = tempfile::tempdir().unwrap();
        std::fs::create_dir(dest.path().join("sub")).unwrap();
        let secret = tempfile::tempdir().unwrap();
        std::fs::set_permissions(secret.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        (dest, secret)
    }

    /// Reproduces finding 7 deterministically: the directory the push goes into is swapped for
    /// a symlink to a root-only directory right after it was checked (the old code checked the
    /// path, then opened the part file and renamed it by path again, and so wrote through the
    /// symlink). The file must land in the directory that was checked, never behind the link.
    #[test]
    fn a_directory_swapped_for_a_symlink_after_the_check_is_not_followed() {
        let (dest, secret) = race_dirs();
        let root = dest.path().display().to_string();
        let (sub, old, target) = (
            dest.path().join("sub"),
            dest.path().join("sub.old"),
            secret.path().to_path_buf(),
        );
        let swap = move || {
            std::fs::rename(&sub, &old).unwrap();
            std::os::unix::fs::symlink(&target, &sub).unwrap();
        };
        let mut swap = Some(swap);
        *race::HOOK.lock().unwrap() = Some((
            root.clone(),
            Box::new(move |point: &str| {
                if point == "walked"
                    && let Some(f) = swap.take()
                {
                    f();
                }
            }),
        ));
        let req = put(dest.path(), "sub/evil.conf", b"pwned");
        let r = Put::start(&req, &me()).and_then(|(mut p, _)| p.chunk(b"pwned"));
        *race::HOOK.lock().unwrap() = None;
        assert_eq!(
            std::fs::read_dir(secret.path()).unwrap().count(),
            0,
            "written behind the symlink"
        );
        assert!(matches!(r, Ok(Some(ToViewer::PutDone { .. }))), "{r:?}");
        assert_eq!(
            std::fs::read(dest.path().join("sub.old/evil.conf")).unwrap(),
            b"pwned"
        );
    }

    /// The same attack as a race, the way the reviewer ran it: a user flips `sub` and a symlink
    /// to a root-only directory with `renameat2(RENAME_EXCHANGE)` as fast as they can while
    /// the agent pushes file after file into `sub` for two seconds. Nothing may ever appear in
    /// the root-only directory (the old code lost this race within milliseconds).
    #[test]
    fn an_exchange_race_never_redirects_a_push() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (dest, secret) = race_dirs();
        std::os::unix::fs::symlink(secret.path(), dest.path().join("link")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flipper = {
            let (stop, d) = (stop.clone(), dest.path().to_path_buf());
            std::thread::spawn(move || {
                let mut flips = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    rustix::fs::renameat_with(
                        rustix::fs::CWD,
                        d.join("sub"),
                        rustix::fs::CWD,
                        d.join("link"),
                        rustix::fs::RenameFlags::EXCHANGE,
                    )
                    .unwrap();
                    flips += 1;
                }
                flips
            })
        };
        let started = std::time::Instant::now();
        let (mut pushes, mut refused) = (0u32, 0u32);
        while started.elapsed() < std::time::Duration::from_secs(2) {
            let req = put(dest.path(), &format!("sub/f{pushes}"), b"pwned");
            match Put::start(&req, &me()).and_then(|(mut p, _)| p.chunk(b"pwned")) {
                Ok(_) => {}
                Err(_) => refused += 1,
            }
            pushes += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let flips = flipper.join().unwrap();
        eprintln!("{pushes} pushes ({refused} refused) against {flips} exchanges");
        assert!(flips > 100 && pushes > 100);
        let leaked: Vec<_> = std::fs::read_dir(secret.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(leaked.is_empty(), "written behind the symlink: {leaked:?}");
    }
}
