//! File access that never follows a symbolic link, on Linux: directories are opened with
//! `openat2` (`RESOLVE_NO_SYMLINKS`, and `RESOLVE_BENEATH` below a held directory), and
//! everything inside one — creating, renaming, removing, looking at a name — is done relative
//! to its handle, so no path is resolved twice.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io;

pub use crate::platform::fsinfo::{Info, Kind, LinkSafeError};

fn kind(mode: u32) -> Kind {
    match FileType::from_raw_mode(mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Directory,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    }
}

fn info(st: &rustix::fs::Stat) -> Info {
    Info {
        kind: kind(st.st_mode),
        size: st.st_size.max(0) as u64,
        mode: st.st_mode & 0o777,
        owner: st.st_uid,
        links: st.st_nlink,
    }
}

fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// A directory held open: what is done inside it stays inside it, whatever happens to the
/// path it was opened by.
#[derive(Debug)]
pub struct Dir(OwnedFd);

/// Opens the directory at the absolute `path`, refusing a symlink anywhere on the path.
pub fn open_dir_nofollow(path: &str) -> Result<Dir, LinkSafeError> {
    rustix::fs::openat2(
        CWD,
        path,
        dir_flags(),
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map(Dir)
    .map_err(|e| match e {
        Errno::NOENT => LinkSafeError::NotFound,
        // (O_NOFOLLOW with O_DIRECTORY reports a symlink as "not a directory"; the error is
        // all the second look decides.)
        Errno::NOTDIR
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) =>
        {
            LinkSafeError::Symlink
        }
        Errno::NOTDIR => LinkSafeError::NotDirectory,
        Errno::LOOP => LinkSafeError::ThroughSymlink,
        Errno::NOSYS => LinkSafeError::Unsupported,
        e => LinkSafeError::Io(e.into()),
    })
}

impl Dir {
    /// Opens (making it when missing, mode 0777 less the umask) the directory `name` inside
    /// this one, never through a symlink. A symlink there is [`LinkSafeError::Symlink`].
    pub fn open_or_make_subdir(&self, name: &str) -> Result<Dir, LinkSafeError> {
        let open = || rustix::fs::openat2(&self.0, name, dir_flags(), Mode::empty(), resolve());
        let fd = match open() {
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&self.0, name, Mode::from_raw_mode(0o777)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(LinkSafeError::Io(e.into())),
                }
                open()
            }
            other => other,
        };
        fd.map(Dir).map_err(|e| match e {
            Errno::LOOP => LinkSafeError::Symlink,
            // O_NOFOLLOW with O_DIRECTORY reports a symlink as "not a directory".
            Errno::NOTDIR if self.kind_of(name) == Some(Kind::Symlink) => LinkSafeError::Symlink,
            Errno::NOTDIR => LinkSafeError::NotDirectory,
            e => LinkSafeError::Io(e.into()),
        })
    }

    /// Opens the existing directory `name` inside this one, never through a symlink.
    pub fn open_subdir(&self, name: &str) -> io::Result<Dir> {
        Ok(Dir(rustix::fs::openat2(
            &self.0,
            name,
            dir_flags(),
            Mode::empty(),
            resolve(),
        )?))
    }

    /// What `name` inside this directory is (not following it), if it exists.
    pub fn kind_of(&self, name: &str) -> Option<Kind> {
        self.info_of(name).map(|i| i.kind)
    }

    /// What `name` inside this directory is (not following it), if it can be looked at.
    pub fn info_of(&self, name: &str) -> Option<Info> {
        rustix::fs::statat(&self.0, name, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| info(&st))
    }

    /// Opens `name` in this directory for reading and writing, creating it (with `mode`) when
    /// missing; a symlink there is [`LinkSafeError::Symlink`]. Returns the file and what it is.
    pub fn create_or_open_nofollow(
        &self,
        name: &str,
        mode: u32,
    ) -> Result<(File, Info), LinkSafeError> {
        let fd = rustix::fs::openat2(
            &self.0,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::from_raw_mode(mode),
            resolve(),
        )
        .map_err(|e| match e {
            Errno::LOOP => LinkSafeError::Symlink,
            e => LinkSafeError::Io(e.into()),
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| LinkSafeError::Io(e.into()))?;
        Ok((File::from(fd), info(&st)))
    }

    /// Gives `from` in this directory the name `to` (replacing what is there).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        Ok(rustix::fs::renameat(&self.0, from, &self.0, to)?)
    }

    /// Removes the file `name` from this directory.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.0, name, AtFlags::empty())?)
    }

    /// The names in this directory that are UTF-8 (not `.` or `..`), with what each is (not
    /// following links), read as the iterator goes; names that vanish meanwhile are left out.
    pub fn entries(&self) -> io::Result<impl Iterator<Item = (String, Info)> + '_> {
        let rd = rustix::fs::Dir::read_from(self.0.as_fd())?;
        Ok(rd.flatten().filter_map(move |e| {
            let name = e.file_name().to_str().ok()?.to_string();
            if name == "." || name == ".." {
                return None;
            }
            let info = self.info_of(&name)?;
            Some((name, info))
        }))
    }
}

/// Sets a file's permission bits through its handle.
pub fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(file, Mode::from_raw_mode(mode))?)
}

/// What is at the absolute `path`, looked at without opening it (a FIFO or a device is never
/// opened): a directory comes with its handle.
pub enum Found {
    File(Info),
    Directory(Dir),
    Other,
}

/// Looks at `path` once and works from the handle: a directory is opened from it, so what is
/// listed is what was looked at.
pub fn look_at(path: &str) -> io::Result<Found> {
    // O_PATH: a FIFO or device is looked at, never opened.
    let top = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    let st = rustix::fs::fstat(&top)?;
    Ok(match kind(st.st_mode) {
        Kind::File => Found::File(info(&st)),
        Kind::Directory => Found::Directory(Dir(rustix::fs::openat(
            &top,
            ".",
            dir_flags(),
            Mode::empty(),
        )?)),
        _ => Found::Other,
    })
}

/// Opens `path` for reading without blocking on a FIFO or a device; returns the file and what
/// it is (callers refuse what is not a regular file before reading).
pub fn open_for_reading(path: &str) -> io::Result<(File, Info)> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    Ok((File::from(fd), info(&st)))
}
