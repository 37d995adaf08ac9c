//! File access on Windows that never goes through a reparse point (symbolic link, junction,
//! mount point) the agent did not mean to follow.
//!
//! Windows has no `openat`: a [`Dir`] is a path plus an open handle to that directory, opened
//! with `FILE_FLAG_OPEN_REPARSE_POINT` (so a reparse point is opened itself, and seen, rather
//! than followed) and shared for reading and writing but not deletion. While the handle is held
//! the directory can be neither renamed nor deleted, so the path keeps naming the directory
//! that was checked: a user who owns a directory on the way cannot swap it for a junction
//! between the check and the write. Every directory from the root down is held this way.
//!
//! Names inside a directory are single components: no separators, no `:` (which would name an
//! alternate data stream), no DOS device names (`CON`, `NUL`, `COM1`…).
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::os::windows::io::AsRawHandle;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, FILE_ATTRIBUTE_DIRECTORY, FILE_ATTRIBUTE_READONLY,
    FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT,
    FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, GetFileInformationByHandle,
};

pub use crate::platform::fsinfo::{Info, Kind, LinkSafeError};

fn kind_of_attributes(attrs: u32) -> Kind {
    if attrs & FILE_ATTRIBUTE_REPARSE_POINT != 0 {
        Kind::Symlink
    } else if attrs & FILE_ATTRIBUTE_DIRECTORY != 0 {
        Kind::Directory
    } else {
        Kind::File
    }
}

fn mode_of(kind: Kind, attrs: u32) -> u32 {
    match kind {
        Kind::Directory => 0o777,
        _ if attrs & FILE_ATTRIBUTE_READONLY != 0 => 0o444,
        _ => 0o666,
    }
}

/// Facts read from an open handle (so they describe what was opened, not what a path names now).
fn info_of_handle(file: &File) -> io::Result<Info> {
    // SAFETY: a zeroed BY_HANDLE_FILE_INFORMATION is valid; the handle is open for the call and
    // the pointer is to a local that outlives it.
    let mut fi: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    if unsafe { GetFileInformationByHandle(file.as_raw_handle(), &mut fi) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let kind = kind_of_attributes(fi.dwFileAttributes);
    Ok(Info {
        kind,
        size: (u64::from(fi.nFileSizeHigh) << 32) | u64::from(fi.nFileSizeLow),
        mode: mode_of(kind, fi.dwFileAttributes),
        owner: 0,
        links: u64::from(fi.nNumberOfLinks),
    })
}

fn info_of_metadata(m: &std::fs::Metadata) -> Info {
    let attrs = m.file_attributes();
    let kind = kind_of_attributes(attrs);
    Info {
        kind,
        size: m.file_size(),
        mode: mode_of(kind, attrs),
        owner: 0,
        links: 1,
    }
}

/// Opens `path` itself (never what a reparse point there names), holding it against rename
/// and deletion.
fn open_held(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(path)
}

/// A directory held open (see the module's documentation).
#[derive(Debug, Clone)]
pub struct Dir {
    path: PathBuf,
    /// This directory and every one above it, held so none can be swapped.
    held: Arc<Vec<File>>,
}

fn map_open(e: io::Error) -> LinkSafeError {
    if e.kind() == io::ErrorKind::NotFound {
        LinkSafeError::NotFound
    } else {
        LinkSafeError::Io(e)
    }
}

/// Opens the absolute directory `path`, refusing a reparse point anywhere on it.
pub fn open_dir_nofollow(path: &str) -> Result<Dir, LinkSafeError> {
    let full = Path::new(path);
    let mut so_far = PathBuf::new();
    let mut held = Vec::new();
    let comps: Vec<Component> = full.components().collect();
    for (i, c) in comps.iter().enumerate() {
        so_far.push(c.as_os_str());
        if matches!(c, Component::Prefix(_)) {
            continue;
        }
        let f = open_held(&so_far).map_err(map_open)?;
        let info = info_of_handle(&f).map_err(LinkSafeError::Io)?;
        let last = i + 1 == comps.len();
        match info.kind {
            Kind::Directory => held.push(f),
            Kind::Symlink if last => return Err(LinkSafeError::Symlink),
            Kind::Symlink => return Err(LinkSafeError::ThroughSymlink),
            _ => return Err(LinkSafeError::NotDirectory),
        }
    }
    if held.is_empty() {
        return Err(LinkSafeError::NotFound);
    }
    Ok(Dir {
        path: so_far,
        held: Arc::new(held),
    })
}

/// A single, ordinary name: no separator, no stream, no device, not `.` or `..`.
fn check_name(name: &str) -> io::Result<()> {
    const DEVICES: &[&str] = &[
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', ':', '<', '>', '"', '|', '?', '*', '\0'])
        || DEVICES.iter().any(|d| d.eq_ignore_ascii_case(stem));
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a file name Windows allows"),
        ));
    }
    Ok(())
}

impl Dir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn child(&self, name: &str) -> io::Result<PathBuf> {
        check_name(name)?;
        Ok(self.path.join(name))
    }

    fn below(&self, name: &str, f: File) -> Dir {
        let mut held: Vec<File> = Vec::with_capacity(self.held.len() + 1);
        for h in self.held.iter() {
            if let Ok(h) = h.try_clone() {
                held.push(h);
            }
        }
        held.push(f);
        Dir {
            path: self.path.join(name),
            held: Arc::new(held),
        }
    }

    pub fn open_or_make_subdir(&self, name: &str) -> Result<Dir, LinkSafeError> {
        let p = self.child(name).map_err(LinkSafeError::Io)?;
        match std::fs::create_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(LinkSafeError::Io(e)),
        }
        let f = open_held(&p).map_err(LinkSafeError::Io)?;
        match info_of_handle(&f).map_err(LinkSafeError::Io)?.kind {
            Kind::Directory => Ok(self.below(name, f)),
            Kind::Symlink => Err(LinkSafeError::Symlink),
            _ => Err(LinkSafeError::NotDirectory),
        }
    }

    pub fn open_subdir(&self, name: &str) -> io::Result<Dir> {
        let p = self.child(name)?;
        let f = open_held(&p)?;
        match info_of_handle(&f)?.kind {
            Kind::Directory => Ok(self.below(name, f)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory (or is a link)", p.display()),
            )),
        }
    }

    pub fn kind_of(&self, name: &str) -> Option<Kind> {
        self.info_of(name).map(|i| i.kind)
    }

    pub fn info_of(&self, name: &str) -> Option<Info> {
        let p = self.child(name).ok()?;
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| info_of_metadata(&m))
    }

    /// Creates or opens the file `name` for reading and writing; a reparse point there is
    /// opened itself (and refused), never followed.
    pub fn create_or_open_nofollow(
        &self,
        name: &str,
        _mode: u32,
    ) -> Result<(File, Info), LinkSafeError> {
        let p = self.child(name).map_err(LinkSafeError::Io)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            // Delete sharing: the part file is renamed to its final name while still open.
            .share_mode(FILE_SHARE_READ | FILE_SHARE_DELETE)
            .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
            .open(&p)
            .map_err(LinkSafeError::Io)?;
        let info = info_of_handle(&file).map_err(LinkSafeError::Io)?;
        if info.kind == Kind::Symlink {
            return Err(LinkSafeError::Symlink);
        }
        Ok((file, info))
    }

    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.child(from)?, self.child(to)?)
    }

    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.child(name)?)
    }

    pub fn entries(&self) -> io::Result<impl Iterator<Item = (String, Info)> + '_> {
        Ok(std::fs::read_dir(&self.path)?.flatten().filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let info = std::fs::symlink_metadata(e.path())
                .ok()
                .map(|m| info_of_metadata(&m))?;
            Some((name, info))
        }))
    }
}

/// Sets or clears the read-only attribute (Windows' only mode bit).
pub fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    let mut perms = file.metadata()?.permissions();
    perms.set_readonly(mode & 0o222 == 0);
    file.set_permissions(perms)
}

pub enum Found {
    File(Info),
    Directory(Dir),
    Other,
}

/// What `path` is (following links, as reading does), opened once.
pub fn look_at(path: &str) -> io::Result<Found> {
    let f = OpenOptions::new()
        .read(true)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
        .open(path)?;
    let info = info_of_handle(&f)?;
    Ok(match info.kind {
        Kind::File => Found::File(info),
        Kind::Directory => Found::Directory(Dir {
            path: PathBuf::from(path),
            held: Arc::new(vec![f]),
        }),
        _ => Found::Other,
    })
}

pub fn open_for_reading(path: &str) -> io::Result<(File, Info)> {
    let f = File::open(path)?;
    let info = info_of_handle(&f)?;
    Ok((f, info))
}
