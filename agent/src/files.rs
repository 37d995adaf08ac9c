//! File transfer for a session (files permission). A pushed file is written to a part file
//! beside its destination (`.NAME.SHA12.tether-part`), resumed from its length after a dropped
//! connection, checked against the SHA-256 the technician sent, and only then renamed to its
//! name: a transfer that fails midway never leaves a half-written file under the final name.
//! Nothing is written through a symlink: every directory below the destination the technician
//! named is checked, and files are opened with `O_NOFOLLOW`.

use ring::digest::{Context, SHA256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tether_protocol::paths;
use tether_protocol::session::{
    DirEntry, MAX_ENTRIES, MAX_GET_CHUNK, PutStart, RemoteEntry, ToViewer,
};
use tether_protocol::token::hex;
use tokio::sync::mpsc;

const NOFOLLOW: i32 = nix::fcntl::OFlag::O_NOFOLLOW.bits();

/// A push in progress.
pub struct Put {
    part: PathBuf,
    dest: PathBuf,
    file: File,
    hash: Context,
    written: u64,
    size: u64,
    sha256: String,
    mode: u32,
}

/// The path a push writes to, checked: `root` must be an existing absolute directory, and no
/// existing directory between it and the file may be a symlink. Missing directories are made.
fn destination(root: &str, rel: &str) -> Result<PathBuf, String> {
    let root = Path::new(root);
    if !root.is_absolute() {
        return Err(format!(
            "destination {} must be an absolute path on the device",
            root.display()
        ));
    }
    if !root.is_dir() {
        return Err(format!(
            "destination directory {} does not exist on the device",
            root.display()
        ));
    }
    let parts = paths::relative(rel).map_err(|e| e.to_string())?;
    let (name, dirs) = parts.split_last().ok_or("empty path")?;
    let mut dir = root.to_path_buf();
    for d in dirs {
        dir.push(d);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symlink; not writing through it",
                    dir.display()
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{} exists and is not a directory", dir.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
    let dest = dir.join(name);
    if let Ok(m) = std::fs::symlink_metadata(&dest)
        && !m.is_file()
    {
        return Err(format!(
            "{} exists and is not a regular file; not replacing it",
            dest.display()
        ));
    }
    Ok(dest)
}

fn valid_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Put {
    /// Opens (or resumes) the part file. Returns the offset the technician sends from.
    pub fn start(p: &PutStart) -> Result<(Put, u64), String> {
        if !valid_sha(&p.sha256) {
            return Err("bad checksum in push request".into());
        }
        let sha256 = p.sha256.to_ascii_lowercase();
        let dest = destination(&p.root, &p.rel)?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let part = dest.with_file_name(format!(".{name}.{}.tether-part", &sha256[..12]));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(NOFOLLOW)
            .open(&part)
            .map_err(|e| format!("{}: {e}", part.display()))?;
        let mut have = file.metadata().map_err(|e| e.to_string())?.len();
        if have > p.size {
            file.set_len(0).map_err(|e| e.to_string())?;
            have = 0;
        }
        // Resuming: the checksum covers the whole file, so hash what is already there.
        let mut hash = Context::new(&SHA256);
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = have;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want]).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            left -= n as u64;
        }
        file.seek(SeekFrom::Start(have))
            .map_err(|e| e.to_string())?;
        Ok((
            Put {
                part,
                dest,
                file,
                hash,
                written: have,
                size: p.size,
                sha256,
                mode: p.mode & 0o777,
            },
            have,
        ))
    }

    /// Appends a chunk. `Ok(Some(done))` when the file is complete and in place.
    pub fn chunk(&mut self, data: &[u8]) -> Result<Option<ToViewer>, String> {
        if self.written + data.len() as u64 > self.size {
            let _ = std::fs::remove_file(&self.part);
            return Err("more data than the announced size".into());
        }
        self.file
            .write_all(data)
            .map_err(|e| format!("{}: {e}", self.part.display()))?;
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

    pub fn finish(&mut self) -> Result<ToViewer, String> {
        let got = hex(self.hash.clone().finish().as_ref());
        if got != self.sha256 {
            let _ = std::fs::remove_file(&self.part);
            return Err(format!(
                "checksum mismatch for {} (sent {}, received {got}); the partial file was removed",
                self.dest.display(),
                self.sha256
            ));
        }
        self.file.sync_all().map_err(|e| e.to_string())?;
        std::fs::set_permissions(&self.part, std::fs::Permissions::from_mode(self.mode))
            .map_err(|e| e.to_string())?;
        std::fs::rename(&self.part, &self.dest)
            .map_err(|e| format!("{}: {e}", self.dest.display()))?;
        Ok(ToViewer::PutDone {
            size: self.size,
            sha256: got,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "push {} ({} bytes, sha256 {})",
            self.dest.display(),
            self.size,
            self.sha256
        )
    }
}

/// What is at `path`: a file, or a directory and every file and directory below it (symlinks
/// inside are skipped, names that are not UTF-8 too).
pub fn stat(path: &str) -> Result<RemoteEntry, String> {
    let root = Path::new(path);
    if !root.is_absolute() {
        return Err(format!("{path} must be an absolute path on the device"));
    }
    let m = std::fs::metadata(root).map_err(|e| format!("{path}: {e}"))?;
    if m.is_file() {
        return Ok(RemoteEntry::File {
            size: m.len(),
            mode: m.mode() & 0o777,
        });
    }
    if !m.is_dir() {
        return Err(format!("{path} is neither a file nor a directory"));
    }
    let mut entries = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in rd.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            let rel = format!("{prefix}{name}");
            if m.is_dir() {
                entries.push(DirEntry {
                    rel: rel.clone(),
                    size: 0,
                    mode: m.mode() & 0o777,
                    dir: true,
                });
                stack.push((e.path(), format!("{rel}/")));
            } else if m.is_file() {
                entries.push(DirEntry {
                    rel,
                    size: m.len(),
                    mode: m.mode() & 0o777,
                    dir: false,
                });
            }
            if entries.len() > MAX_ENTRIES {
                return Err(format!(
                    "{path} holds more than {MAX_ENTRIES} entries; pull a smaller directory"
                ));
            }
        }
    }
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(RemoteEntry::Dir { entries })
}

/// Streams the file at `path` from `offset` into `out`, then its size and the SHA-256 of the
/// whole file. Returns the `FileEnd` it sent (for the audit record).
pub async fn get(
    path: String,
    offset: u64,
    out: mpsc::Sender<ToViewer>,
) -> Result<ToViewer, String> {
    let (tx, mut rx) = mpsc::channel::<Result<ToViewer, String>>(4);
    // Disk reads and hashing on a thread of their own; the channel paces them to the network.
    std::thread::spawn(move || {
        let r = (|| {
            let mut f = OpenOptions::new()
                .read(true)
                .open(&path)
                .map_err(|e| format!("{path}: {e}"))?;
            let size = f.metadata().map_err(|e| e.to_string())?.len();
            let mut hash = Context::new(&SHA256);
            let mut buf = vec![0u8; MAX_GET_CHUNK];
            let mut pos = 0u64;
            loop {
                let n = f.read(&mut buf).map_err(|e| format!("{path}: {e}"))?;
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
                        return Err("session ended".to_string());
                    }
                }
                pos = end;
            }
            if pos != size {
                return Err(format!("{path} changed size while being read"));
            }
            Ok(ToViewer::FileEnd {
                size: pos,
                sha256: hex(hash.finish().as_ref()),
            })
        })();
        let _ = tx.blocking_send(r);
    });
    while let Some(msg) = rx.recv().await {
        match msg {
            Ok(end @ ToViewer::FileEnd { .. }) => {
                out.send(end.clone())
                    .await
                    .map_err(|_| "session ended".to_string())?;
                return Ok(end);
            }
            Ok(chunk) => out
                .send(chunk)
                .await
                .map_err(|_| "session ended".to_string())?,
            Err(e) => return Err(e),
        }
    }
    Err("file reader stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (mut p, offset) = Put::start(&req).unwrap();
        assert_eq!(offset, 0);
        assert!(p.chunk(&data[..100_000]).unwrap().is_none());
        drop(p);
        assert!(!dir.path().join("sub/file.bin").exists());
        // Reconnect: resume where the part file ends.
        let (mut p, offset) = Put::start(&req).unwrap();
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
        let (mut p, _) = Put::start(&req).unwrap();
        assert!(p.chunk(b"hello").unwrap_err().contains("checksum mismatch"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn no_escape_through_dotdot_or_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), dir.path().join("filelink")).unwrap();
        for rel in ["../x", "a/../../x", "/etc/x", "link/x", "filelink"] {
            let err = Put::start(&put(dir.path(), rel, b"x")).err();
            assert!(err.is_some(), "{rel} was accepted");
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(Put::start(&put(Path::new("relative"), "x", b"x")).is_err());
    }

    #[test]
    fn stat_lists_a_tree_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/c.txt"), b"abc").unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("etc")).unwrap();
        let RemoteEntry::Dir { entries } = stat(&dir.path().display().to_string()).unwrap() else {
            panic!("not a dir");
        };
        let names: Vec<_> = entries.iter().map(|e| (e.rel.as_str(), e.size)).collect();
        assert_eq!(names, vec![("a", 0), ("a/b", 0), ("a/b/c.txt", 3)]);
    }
}
