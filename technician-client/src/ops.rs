//! Commands and files over a session: `tether exec`, `push` and `pull` (the interactive shell is
//! `cmd::shell`, being terminal glue). Transfers are checksummed end to end (SHA-256 of the whole
//! file, compared on both sides) and resumable: a pull writes `.NAME.tether-part` beside its
//! destination and a push leaves a part file on the device, so running the same transfer again
//! after a dropped connection continues where it stopped.

use crate::relay::RequestError;
use crate::remote::RemoteSession;
use ring::digest::{Context, SHA256};
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tether_protocol::paths;
use tether_protocol::session::{
    MAX_PUT_CHUNK, OutStream, PutStart, RemoteEntry, ToAgent, ToViewer,
};
use tether_protocol::token::hex;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
}

impl Exit {
    /// The exit code `tether exec` itself ends with: the remote one, 124 on timeout (like
    /// `timeout(1)`), 128 + signal when killed.
    pub fn status(&self) -> i32 {
        if self.timed_out {
            124
        } else if let Some(c) = self.code {
            c
        } else {
            128 + self.signal.unwrap_or(0)
        }
    }
}

fn agent_error(message: String) -> RequestError {
    RequestError::Denied(tether_protocol::text::clean(&message, 512))
}

/// Runs a command; output is handed to `out` as it arrives.
pub async fn exec(
    remote: &mut RemoteSession,
    argv: Vec<String>,
    timeout: Option<std::time::Duration>,
    mut out: impl FnMut(OutStream, &[u8]),
) -> Result<Exit, RequestError> {
    remote
        .send(&ToAgent::Exec {
            argv,
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
        })
        .await?;
    loop {
        match remote.recv().await? {
            ToViewer::Output { stream, data } => out(stream, &data),
            ToViewer::Exited {
                code,
                signal,
                timed_out,
            } => {
                return Ok(Exit {
                    code,
                    signal,
                    timed_out,
                });
            }
            ToViewer::Error { message } => return Err(agent_error(message)),
            ToViewer::Bye { reason } => return Err(RequestError::Session(reason)),
            _ => {}
        }
    }
}

/// Progress reporting for transfers (an indicatif bar in the CLI, nothing in tests).
pub trait Progress {
    fn start(&self, total: u64);
    fn advance(&self, bytes: u64);
    fn file(&self, name: &str);
}

impl Progress for indicatif::ProgressBar {
    fn start(&self, total: u64) {
        self.set_length(total);
    }
    fn advance(&self, bytes: u64) {
        self.inc(bytes);
    }
    fn file(&self, name: &str) {
        self.set_message(name.to_string());
    }
}

#[derive(Debug, Clone, Default)]
pub struct Transferred {
    pub files: u64,
    pub bytes: u64,
    /// Bytes not sent again because a previous attempt had them.
    pub resumed: u64,
    /// `(path, sha256)` of every file, for the summary.
    pub checksums: Vec<(String, String)>,
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hash = Context::new(&SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex(hash.finish().as_ref()))
}

/// Local files to push: `(relative path, absolute path)`; a single file has its name as path.
fn local_files(local: &Path) -> std::io::Result<Vec<(String, PathBuf, u64)>> {
    let m = std::fs::metadata(local)?;
    if m.is_file() {
        return Ok(vec![(String::new(), local.to_path_buf(), m.len())]);
    }
    let mut files = Vec::new();
    let mut stack = vec![(local.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let m = e.path().symlink_metadata()?;
            let rel = format!("{prefix}{name}");
            if m.is_dir() {
                stack.push((e.path(), format!("{rel}/")));
            } else if m.is_file() {
                files.push((rel, e.path(), m.len()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `p` is absolute on the device, whichever its system: `/…` (Unix) or `C:\…` /
/// `C:/…` (Windows; the technician need not know which the device runs).
fn remote_absolute(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with('/')
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && matches!(b[2], b'\\' | b'/'))
}

/// Where a push goes on the device: the directory that must exist there, and the name under
/// it. `REMOTE/` (trailing slash; `\` on Windows) means "into that directory, keeping LOCAL's
/// name".
pub fn push_target(local: &Path, remote: &str) -> Result<(String, String), RequestError> {
    // Refused, not resolved: the user's prompt and the audit show the path as given, so it must
    // be where the file lands (`/tmp/a/../x` wrote to /tmp/x). Both separators count: a
    // Windows device reads `\` as one.
    if remote.split(['/', '\\']).any(|c| c == "..") {
        return Err(RequestError::Denied(format!(
            "{remote}: '..' is not allowed in a destination; name the directory itself"
        )));
    }
    let local_name = local
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| RequestError::Denied(format!("{} has no usable name", local.display())))?;
    if !remote_absolute(remote) {
        return Err(RequestError::Denied(format!(
            "{remote} must be an absolute path on the device"
        )));
    }
    let windows = !remote.starts_with('/');
    let seps: &[char] = if windows { &['/', '\\'] } else { &['/'] };
    if remote.ends_with(seps) {
        let dir = remote.trim_end_matches(seps);
        // `/` stays `/`; `C:\` stays `C:\`.
        let dir = if windows && dir.len() == 2 {
            format!("{dir}\\")
        } else if dir.is_empty() {
            "/".to_string()
        } else {
            dir.to_string()
        };
        return Ok((dir, local_name.to_string()));
    }
    match remote.rfind(seps) {
        Some(i) if !remote[i + 1..].is_empty() => {
            let parent = &remote[..i];
            let parent = if parent.is_empty() {
                "/".to_string()
            } else if windows && parent.len() == 2 {
                format!("{parent}\\")
            } else {
                parent.to_string()
            };
            Ok((parent, remote[i + 1..].to_string()))
        }
        _ => Err(RequestError::Denied(format!(
            "{remote} must be an absolute path on the device"
        ))),
    }
}

/// Pushes a file or a directory tree. `done` holds files completed by an earlier attempt of
/// the same transfer (skipped); it is updated as files complete.
pub async fn push(
    remote: &mut RemoteSession,
    local: &Path,
    remote_path: &str,
    done: &mut HashSet<String>,
    progress: &dyn Progress,
) -> Result<Transferred, RequestError> {
    let (root, name) = push_target(local, remote_path)?;
    let files = local_files(local)
        .map_err(|e| RequestError::Denied(format!("{}: {e}", local.display())))?;
    progress.start(files.iter().map(|f| f.2).sum());
    let mut summary = Transferred::default();
    for (rel, path, size) in files {
        let rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{name}/{rel}")
        };
        if done.contains(&rel) {
            progress.advance(size);
            continue;
        }
        progress.file(&rel);
        let meta = std::fs::metadata(&path)
            .map_err(|e| RequestError::Denied(format!("{}: {e}", path.display())))?;
        let sha256 = sha256_file(&path)
            .map_err(|e| RequestError::Denied(format!("{}: {e}", path.display())))?;
        remote
            .send(&ToAgent::PutStart(PutStart {
                root: root.clone(),
                rel: rel.clone(),
                size,
                sha256: sha256.clone(),
                mode: meta.mode() & 0o777,
            }))
            .await?;
        let offset = match remote.recv().await? {
            ToViewer::PutReady { offset } => offset,
            ToViewer::PutDone { .. } => size,
            ToViewer::Error { message } => return Err(agent_error(message)),
            _ => return Err(RequestError::Unexpected),
        };
        progress.advance(offset);
        summary.resumed += offset;
        if offset < size {
            let mut f = std::fs::File::open(&path)
                .map_err(|e| RequestError::Denied(format!("{}: {e}", path.display())))?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| RequestError::Denied(e.to_string()))?;
            let mut buf = vec![0u8; MAX_PUT_CHUNK];
            let mut left = size - offset;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                f.read_exact(&mut buf[..want]).map_err(|e| {
                    RequestError::Denied(format!("{} changed while sending: {e}", path.display()))
                })?;
                remote
                    .send(&ToAgent::FileChunk(buf[..want].to_vec()))
                    .await?;
                progress.advance(want as u64);
                left -= want as u64;
            }
            match remote.recv().await? {
                ToViewer::PutDone { sha256: got, .. } if got == sha256 => {}
                ToViewer::PutDone { sha256: got, .. } => {
                    return Err(RequestError::Denied(format!(
                        "checksum mismatch for {rel}: sent {sha256}, device has {got}"
                    )));
                }
                ToViewer::Error { message } => return Err(agent_error(message)),
                _ => return Err(RequestError::Unexpected),
            }
        }
        summary.files += 1;
        summary.bytes += size;
        summary
            .checksums
            .push((format!("{}/{rel}", root.trim_end_matches('/')), sha256));
        done.insert(rel);
    }
    Ok(summary)
}

/// Creates the directories of `rel` under `root` without going through symlinks; returns the
/// file's path. `rel` comes from the device: untrusted.
fn local_destination(root: &Path, rel: &str, is_dir: bool) -> Result<PathBuf, RequestError> {
    let parts = paths::relative(rel).map_err(|e| RequestError::Denied(e.to_string()))?;
    let dirs = if is_dir {
        &parts[..]
    } else {
        &parts[..parts.len() - 1]
    };
    let mut dir = root.to_path_buf();
    for d in dirs {
        dir.push(d);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() && !m.file_type().is_symlink() => {}
            Ok(_) => {
                return Err(RequestError::Denied(format!(
                    "{} exists and is not a directory (or is a symlink)",
                    dir.display()
                )));
            }
            Err(_) => std::fs::create_dir(&dir)
                .map_err(|e| RequestError::Denied(format!("{}: {e}", dir.display())))?,
        }
    }
    Ok(if is_dir {
        dir
    } else {
        dir.join(parts[parts.len() - 1])
    })
}

/// Pulls one file into `dest` through `.NAME.tether-part`, resuming from what the part holds.
async fn pull_file(
    remote: &mut RemoteSession,
    path: &str,
    size: u64,
    mode: u32,
    dest: &Path,
    progress: &dyn Progress,
) -> Result<(u64, String), RequestError> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let part = dest.with_file_name(format!(".{name}.tether-part"));
    let io = |e: std::io::Error| RequestError::Denied(format!("{}: {e}", part.display()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix_nofollow())
        .open(&part)
        .map_err(io)?;
    let mut offset = f.metadata().map_err(io)?.len();
    if offset > size {
        f.set_len(0).map_err(io)?;
        offset = 0;
    }
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    progress.advance(offset);
    remote
        .send(&ToAgent::GetStart {
            path: path.to_string(),
            offset,
        })
        .await?;
    let mut got = offset;
    let expected = loop {
        match remote.recv().await? {
            ToViewer::FileChunk(data) => {
                got += data.len() as u64;
                if got > size {
                    return Err(RequestError::Denied(format!(
                        "{path} grew while being pulled; try again"
                    )));
                }
                f.write_all(&data).map_err(io)?;
                progress.advance(data.len() as u64);
            }
            ToViewer::FileEnd { size: s, sha256 } => {
                if s != got {
                    return Err(RequestError::Denied(format!(
                        "{path}: device sent {got} bytes of {s}"
                    )));
                }
                break sha256;
            }
            ToViewer::Error { message } => return Err(agent_error(message)),
            ToViewer::Bye { reason } => return Err(RequestError::Session(reason)),
            _ => {}
        }
    };
    f.sync_all().map_err(io)?;
    drop(f);
    let have = sha256_file(&part).map_err(io)?;
    if have != expected {
        let _ = std::fs::remove_file(&part);
        return Err(RequestError::Denied(format!(
            "checksum mismatch for {path} (device {expected}, received {have}); the partial file was removed"
        )));
    }
    std::fs::set_permissions(&part, std::fs::Permissions::from_mode(mode & 0o777)).map_err(io)?;
    std::fs::rename(&part, dest)
        .map_err(|e| RequestError::Denied(format!("{}: {e}", dest.display())))?;
    Ok((offset, have))
}

/// O_NOFOLLOW: never write the part file through a symlink someone placed there.
fn nix_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// Pulls a file or a directory tree from the device. `LOCAL` may be an existing directory (the
/// remote name is kept inside it) or the new path.
pub async fn pull(
    remote: &mut RemoteSession,
    remote_path: &str,
    local: &Path,
    progress: &dyn Progress,
) -> Result<Transferred, RequestError> {
    remote
        .send(&ToAgent::Stat {
            path: remote_path.to_string(),
        })
        .await?;
    let entry = match remote.recv().await? {
        ToViewer::StatReply(e) => e,
        ToViewer::Error { message } => return Err(agent_error(message)),
        _ => return Err(RequestError::Unexpected),
    };
    let remote_name = Path::new(remote_path.trim_end_matches('/'))
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("pulled")
        .to_string();
    let target = if local.is_dir() {
        local.join(&remote_name)
    } else {
        local.to_path_buf()
    };
    let mut summary = Transferred::default();
    match entry {
        RemoteEntry::File { size, mode } => {
            progress.start(size);
            progress.file(&remote_name);
            let (resumed, sha) =
                pull_file(remote, remote_path, size, mode, &target, progress).await?;
            summary.files = 1;
            summary.bytes = size;
            summary.resumed = resumed;
            summary.checksums.push((target.display().to_string(), sha));
        }
        RemoteEntry::Dir { entries } => {
            progress.start(entries.iter().filter(|e| !e.dir).map(|e| e.size).sum());
            let parent = target.parent().unwrap_or(Path::new(".")).to_path_buf();
            let top = target
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(&remote_name)
                .to_string();
            local_destination(&parent, &top, true)?;
            for e in entries {
                let dest = local_destination(&target, &e.rel, e.dir)?;
                if e.dir {
                    continue;
                }
                progress.file(&e.rel);
                let from = format!("{}/{}", remote_path.trim_end_matches('/'), e.rel);
                let (resumed, sha) =
                    pull_file(remote, &from, e.size, e.mode, &dest, progress).await?;
                summary.files += 1;
                summary.bytes += e.size;
                summary.resumed += resumed;
                summary.checksums.push((dest.display().to_string(), sha));
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_targets() {
        let f = Path::new("/home/me/report.txt");
        assert_eq!(
            push_target(f, "/tmp/").unwrap(),
            ("/tmp".to_string(), "report.txt".to_string())
        );
        assert_eq!(
            push_target(f, "/tmp/r.txt").unwrap(),
            ("/tmp".to_string(), "r.txt".to_string())
        );
        assert!(push_target(f, "relative/x").is_err());
        assert!(push_target(f, "/tmp/a/../escape.txt").is_err());
        assert!(push_target(f, "/tmp/a/../").is_err());
        // Windows devices: drive paths, either separator; still no climbing.
        assert_eq!(
            push_target(f, r"C:\Users\ana\r.txt").unwrap(),
            (r"C:\Users\ana".to_string(), "r.txt".to_string())
        );
        assert_eq!(
            push_target(f, r"D:\").unwrap(),
            (r"D:\".to_string(), "report.txt".to_string())
        );
        assert_eq!(
            push_target(f, "C:/Temp/").unwrap(),
            ("C:/Temp".to_string(), "report.txt".to_string())
        );
        assert!(push_target(f, r"C:\a\..\x").is_err());
        assert!(push_target(f, r"C:relative").is_err());
    }

    #[test]
    fn pulled_paths_stay_inside_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        for rel in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(local_destination(dir.path(), rel, false).is_err(), "{rel}");
        }
        std::os::unix::fs::symlink("/tmp", dir.path().join("link")).unwrap();
        assert!(local_destination(dir.path(), "link/x", false).is_err());
        let p = local_destination(dir.path(), "a/b/c.txt", false).unwrap();
        assert_eq!(p, dir.path().join("a/b/c.txt"));
        assert!(dir.path().join("a/b").is_dir());
    }

    #[test]
    fn exit_status_like_a_shell() {
        let e = |code, signal, timed_out| Exit {
            code,
            signal,
            timed_out,
        };
        assert_eq!(e(Some(3), None, false).status(), 3);
        assert_eq!(e(None, Some(9), true).status(), 124);
        assert_eq!(e(None, Some(15), false).status(), 143);
    }
}
