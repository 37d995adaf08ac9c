//! Logging set-up shared by the binaries: `tracing` to stderr, filtered by `RUST_LOG`, colours
//! only on a terminal.

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
