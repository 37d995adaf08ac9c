//! Inventory collection.
//!
//! [`collect`] runs every collector the platform has ([`crate::platform::inventory`]: on
//! Linux, one per source under a configurable root) on its own thread, in parallel, and waits
//! for them up to [`CollectOptions::collector_timeout`]. A collector that
//! fails, panics or times out contributes a [`CollectorError`] and leaves its
//! part of the [`Inventory`] at its default: the result is always an
//! inventory, possibly partial.
//!
//! Every path is resolved under [`CollectOptions::root`] so tests can point
//! at fixture trees. `sysinfo` (which always reads the real `/`) is only used
//! when `root` is `/`: for filesystem sizes (statvfs) and interface
//! addresses (getifaddrs).

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::platform::inventory::{self, Ctx, Spawn, Warnings};
use tether_protocol::inventory::{CollectorError, Inventory, Limits, SCHEMA_VERSION};

pub use crate::platform::inventory::CollectError;
#[cfg(target_os = "linux")]
pub use crate::platform::inventory::{DpkgParse, edid, parse_dpkg_status, parse_rpm_qa, smbios};

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

type Apply = Box<dyn FnOnce(&mut Inventory) + Send>;

/// Why a collector gave nothing.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error("collector panicked")]
    Panicked,
}

struct Msg {
    name: &'static str,
    result: Result<Apply, Failed>,
    warnings: Warnings,
}

struct Runner {
    ctx: Arc<Ctx>,
    tx: mpsc::Sender<Msg>,
    pending: Vec<&'static str>,
    errors: Vec<CollectorError>,
}

impl Spawn for Runner {
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
                    Ok(Err(e)) => Err(Failed::Collect(e)),
                    Err(_) => Err(Failed::Panicked),
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

    inventory::spawn_all(&mut r);

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
                    message: e.to_string(),
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
