//! `tether-wayland`: started by `tether-agent` as the desktop user inside a Wayland session;
//! serves one remote session on its standard input and output. Logs go to standard error
//! (`RUST_LOG`). `--backend gnome|wlroots|portal|auto` (default auto, or `TETHER_WAYLAND_BACKEND`).

#[cfg(target_os = "linux")]
fn main() -> anyhow::Result<()> {
    use anyhow::Context;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let mut choice = std::env::var("TETHER_WAYLAND_BACKEND").unwrap_or_else(|_| "auto".into());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--backend" => choice = args.next().context("--backend needs a value")?,
            "--help" | "-h" => {
                println!(
                    "usage: tether-wayland [--backend gnome|wlroots|portal|auto]\n(started by tether-agent; speaks on stdin/stdout)"
                );
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let mut backend =
        tether_wayland::pick(&choice).context("no way to share this Wayland desktop")?;
    tracing::info!(backend = backend.name(), compositor = %backend.compositor(), "serving");
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    tether_wayland::serve::serve(backend.as_mut(), &mut stdin.lock(), &mut stdout.lock())?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("tether-wayland runs on Linux only");
    std::process::exit(1);
}
