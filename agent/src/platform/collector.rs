//! What an inventory collector is, whatever the operating system: each platform's
//! `inventory::spawn_all` hands its collectors to the OS-neutral runner (the agent's `collect`
//! module) through [`Spawn`].

use std::io;
use std::path::{Path, PathBuf};

use tether_protocol::inventory::Inventory;

/// Error of one collector.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// What a collector sees.
pub struct Ctx {
    pub root: PathBuf,
    /// `root` is the real `/`: live-only sources (sysinfo, subprocesses) may be used.
    pub live: bool,
}

impl Ctx {
    /// `rel` (no leading slash) resolved under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// The path relative to the root, for messages.
    pub fn display(&self, p: &Path) -> String {
        let rel = p.strip_prefix(&self.root).unwrap_or(p);
        format!("/{}", rel.display())
    }

    pub fn io_err(&self, p: &Path, source: io::Error) -> CollectError {
        CollectError::Io {
            path: self.display(p),
            source,
        }
    }
}

/// Non-fatal problems a collector reports alongside its result.
pub type Warnings = Vec<String>;

/// Runs collectors (each on a thread of its own, with a deadline).
pub trait Spawn {
    /// Starts collector `name`; what it returns goes into the inventory through `apply`.
    fn spawn<T: Send + 'static>(
        &mut self,
        name: &'static str,
        f: fn(&Ctx, &mut Warnings) -> Result<T, CollectError>,
        apply: fn(&mut Inventory, T),
    );
}
