//! Inventory sources on Linux: one module per source (`/proc`, `/sys`, the SMBIOS table,
//! package databases, …), each read under a configurable root so tests can point at fixture
//! trees. [`spawn_all`] hands each to the OS-neutral runner (the agent's `collect` module).

use std::io;
use std::path::{Path, PathBuf};

use tether_protocol::inventory::Inventory;

pub mod edid;
pub mod smbios;
mod util;

mod battery;
mod block;
mod cpu;
mod dmi;
pub mod filesystems;
mod gpu;
mod host;
mod memory;
mod monitors;
mod network;
mod packages;

pub use packages::{DpkgParse, parse_dpkg_status, parse_rpm_qa};

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
pub(crate) struct Ctx {
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
pub(crate) type Warnings = Vec<String>;

/// Runs collectors (each on a thread of its own, with a deadline).
pub(crate) trait Spawn {
    /// Starts collector `name`; what it returns goes into the inventory through `apply`.
    fn spawn<T: Send + 'static>(
        &mut self,
        name: &'static str,
        f: fn(&Ctx, &mut Warnings) -> Result<T, CollectError>,
        apply: fn(&mut Inventory, T),
    );
}

/// Starts every collector this platform has.
pub(crate) fn spawn_all(r: &mut impl Spawn) {
    // Slowest first so they start earliest.
    r.spawn("dpkg", packages::dpkg, |i, v| i.software.extend(v));
    r.spawn("rpm", packages::rpm, |i, v| i.software.extend(v));
    r.spawn("filesystems", filesystems::collect, |i, v| {
        i.hardware.filesystems = v
    });
    r.spawn("network", network::collect, |i, v| i.hardware.network = v);
    r.spawn("host", host::collect, |i, v| i.host = v);
    r.spawn("cpu", cpu::collect, |i, v| i.hardware.cpu = v);
    r.spawn("memory", memory::collect, |i, v| i.hardware.memory = v);
    r.spawn("dmi", dmi::collect, |i, v| i.hardware.system = v);
    r.spawn("block", block::collect, |i, v| i.hardware.block_devices = v);
    r.spawn("gpu", gpu::collect, |i, v| i.hardware.gpus = v);
    r.spawn("monitors", monitors::collect, |i, v| {
        i.hardware.monitors = v
    });
    r.spawn("battery", battery::collect, |i, v| i.hardware.batteries = v);
    r.spawn("flatpak", packages::flatpak, |i, v| i.software.extend(v));
    r.spawn("snap", packages::snap, |i, v| i.software.extend(v));
}
