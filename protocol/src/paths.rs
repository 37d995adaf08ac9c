//! Relative paths received from a peer (a directory pushed to the device, a tree pulled from
//! it): each one must stay inside the destination it is joined to. This checks the text; the
//! side that writes also refuses to go through symlinks.

use thiserror::Error;

/// Longest relative path accepted, in bytes.
pub const MAX_PATH: usize = 4096;
/// Deepest relative path accepted.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("path {0:?} is absolute where a relative one is needed")]
    Absolute(String),
    #[error("path {0:?} leaves its destination (..)")]
    Escapes(String),
    #[error("path {0:?} has an empty, '.' or NUL component")]
    BadComponent(String),
    #[error("path is too long or too deep")]
    TooLong,
}

/// The components of a safe relative path (`a/b/c.txt`), or why it is not one.
pub fn relative(rel: &str) -> Result<Vec<&str>, PathError> {
    if rel.is_empty() {
        return Err(PathError::Empty);
    }
    if rel.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    let shown = || crate::text::clean(rel, 256);
    if rel.starts_with('/') {
        return Err(PathError::Absolute(shown()));
    }
    let parts: Vec<&str> = rel.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(PathError::TooLong);
    }
    for p in &parts {
        match *p {
            ".." => return Err(PathError::Escapes(shown())),
            "" | "." => return Err(PathError::BadComponent(shown())),
            p if p.contains('\0') || p.len() > 255 => {
                return Err(PathError::BadComponent(shown()));
            }
            _ => {}
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_pass() {
        assert_eq!(relative("a/b/c.txt"), Ok(vec!["a", "b", "c.txt"]));
        assert_eq!(relative("..hidden"), Ok(vec!["..hidden"]));
        assert!(matches!(relative(""), Err(PathError::Empty)));
        assert!(matches!(
            relative("/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(
            relative("a/../../etc"),
            Err(PathError::Escapes(_))
        ));
        assert!(matches!(relative(".."), Err(PathError::Escapes(_))));
        assert!(matches!(relative("a//b"), Err(PathError::BadComponent(_))));
        assert!(matches!(relative("a/./b"), Err(PathError::BadComponent(_))));
        assert!(matches!(relative("a/"), Err(PathError::BadComponent(_))));
        assert!(matches!(relative("a\0b"), Err(PathError::BadComponent(_))));
        assert!(matches!(
            relative(&"a/".repeat(70)),
            Err(PathError::TooLong)
        ));
    }
}
