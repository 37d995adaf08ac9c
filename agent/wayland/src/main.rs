//! `tether-wayland`: started by `tether-agent` as the desktop user inside a Wayland session;
//! serves one remote session on its standard input and output. Logs go to standard error
//! (`RUST_LOG`).

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    anyhow::bail!("no backend yet")
}
