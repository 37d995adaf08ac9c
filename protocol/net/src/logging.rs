//! Logging set-up shared by the binaries: `tracing` to stderr, filtered by `RUST_LOG`, colours
//! only on a terminal; or to a file, for a Windows service, which has no stderr.

use std::path::Path;

/// A log file past this size is moved to `NAME.1` (replacing the one before) when the
/// program starts.
const ROTATE_AT: u64 = 10 * 1024 * 1024;

/// Installs the subscriber. `default_filter` applies when `RUST_LOG` is unset or invalid.
pub fn init(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Installs the subscriber writing to `path` (appended; created with the directory's
/// permissions), after moving a log over 10 MiB to `PATH.1`. On failure nothing is installed
/// and the caller may fall back to [`init`].
pub fn init_file(default_filter: &str, path: &Path) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > ROTATE_AT) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(path, old)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .init();
    Ok(())
}
