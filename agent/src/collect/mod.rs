//! Linux inventory collection.
//!
//! [`collect`] runs every collector on its own thread, in parallel, and waits
//! for them up to [`CollectOptions::collector_timeout`]. A collector that
//! fails, panics or times out contributes a [`CollectorError`] and leaves its
//! part of the [`Inventory`] at its default: the result is always an
//! inventory, possibly partial.
//!
//! Every path is resolved under [`CollectOptions::root`] so tests can point
//! at fixture trees. `sysinfo` (which always reads the real `/`) is only used
//! when `root` is `/`: for filesystem sizes (statvfs) and interface
//! addresses (getifaddrs).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tether_protocol::inventory::{CollectorError, Inventory, Limits, SCHEMA_VERSION};

pub mod edid;
pub mod smbios;
mod util;

mod battery;
mod block;
mod cpu;
mod dmi;
pub(crate) mod filesystems;
mod gpu;
mod host;
mod memory;
mod monitors;
mod network;
mod packages;

pub use packages::{DpkgParse, parse_dpkg_status, parse_rpm_qa};

/// Options for [`collect`].
#[derive(Debug, Clone, PartialEq)]
pub struct CollectOptions {
    /// Filesystem root all paths are resolved under (default `/`).
    pub root: PathBuf,
    /// Time each collector gets before it is reported as timed out.
    pub collector_timeout: Duration,
}

impl Default for CollectOptions {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
            collector_timeout: Duration::from_secs(2),
        }
    }
}

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

type Apply = Box<dyn FnOnce(&mut Inventory) + Send>;

struct Msg {
    name: &'static str,
    result: Result<Apply, String>,
    warnings: Warnings,
}

struct Runner {
    ctx: Arc<Ctx>,
    tx: mpsc::Sender<Msg>,
    pending: Vec<&'static str>,
    errors: Vec<CollectorError>,
}

impl Runner {
    fn spawn<T: Send + 'static>(
        &mut self,
        name: &'static str,
        f: fn(&Ctx, &mut Warnings) -> Result<T, CollectError>,
        apply: fn(&mut Inventory, T),
    ) {
        let ctx = Arc::clone(&self.ctx);
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("inv-{name}"))
            .spawn(move || {
                let mut warnings = Warnings::new();
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    f(&ctx, &mut warnings)
                }));
                let result = match outcome {
                    Ok(Ok(v)) => Ok(Box::new(move |inv: &mut Inventory| apply(inv, v)) as Apply),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("collector panicked".to_string()),
                };
                // The receiver may be gone after a timeout; nothing to do then.
                let _ = tx.send(Msg {
                    name,
                    result,
                    warnings,
                });
            });
        match spawned {
            Ok(_) => self.pending.push(name),
            Err(e) => self.errors.push(CollectorError {
                collector: name.to_string(),
                message: format!("could not start collector thread: {e}"),
            }),
        }
    }
}

/// Collect the inventory. Never fails: problems end up in
/// [`Inventory::errors`]. The result is sanitised with [`Limits::default`]
/// (anything that changed is reported under collector "sanitize").
///
/// A collector that times out keeps running detached in the background
/// until it finishes (threads cannot be cancelled); its result is dropped.
pub fn collect(opts: &CollectOptions) -> Inventory {
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    let mut r = Runner {
        ctx: Arc::new(Ctx {
            root: opts.root.clone(),
            live: opts.root == Path::new("/"),
        }),
        tx,
        pending: Vec::new(),
        errors: Vec::new(),
    };

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

    let Runner {
        tx,
        mut pending,
        mut errors,
        ..
    } = r;
    drop(tx);

    let mut inv = Inventory {
        schema: SCHEMA_VERSION,
        collected_at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
        ..Inventory::default()
    };

    let deadline = start + opts.collector_timeout;
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = match rx.recv_timeout(left) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) => match rx.try_recv() {
                Ok(m) => m,
                Err(_) => break,
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        pending.retain(|n| *n != msg.name);
        for w in msg.warnings {
            errors.push(CollectorError {
                collector: msg.name.to_string(),
                message: w,
            });
        }
        match msg.result {
            Ok(apply) => apply(&mut inv),
            Err(e) => {
                tracing::warn!(collector = msg.name, error = %e, "collector failed");
                errors.push(CollectorError {
                    collector: msg.name.to_string(),
                    message: e,
                });
            }
        }
    }
    for name in pending {
        tracing::warn!(collector = name, "collector timed out");
        errors.push(CollectorError {
            collector: name.to_string(),
            message: format!("timed out after {} ms", opts.collector_timeout.as_millis()),
        });
    }

    // Deterministic order regardless of which thread finished first.
    inv.software.sort_by(|a, b| {
        (a.source, &a.name, &a.arch, &a.version).cmp(&(b.source, &b.name, &b.arch, &b.version))
    });
    errors.sort_by(|a, b| a.collector.cmp(&b.collector));
    inv.errors = errors;

    for change in inv.sanitize(&Limits::default()) {
        tracing::debug!(%change, "sanitized inventory");
        inv.errors.push(CollectorError {
            collector: "sanitize".to_string(),
            message: change,
        });
    }
    inv
}
