//! `tether-relay serve`: run the relay until SIGTERM or Ctrl-C.

use super::Ctx;
use anyhow::Result;
use std::net::SocketAddr;
use std::time::Duration;
use tether_protocol::conn::Timeouts;
use tether_relay::config::DataDir;
use tether_relay::server::{Relay, ServeOptions};

/// Run the relay.
#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "0.0.0.0:4433")]
    pub listen: SocketAddr,
    /// Close connections that have not said hello within this time.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub hello_timeout: Duration,
    /// New connections per second allowed from one address (more are refused).
    #[arg(long, default_value_t = 50.0)]
    pub conn_rate: f64,
    /// How many new connections one address may open at once (e.g. a NATed office
    /// reconnecting after a relay restart).
    #[arg(long, default_value_t = 200.0)]
    pub conn_burst: f64,
    /// Where technicians and agents reach this relay, as other relays on the same store send
    /// them here [default: the public_addr of relay.toml]. Port 0: the port listened on.
    #[arg(long)]
    pub public_addr: Option<String>,
}

pub async fn run(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    let dd = DataDir::new(&ctx.data);
    let relay = Relay::start(
        &dd,
        ServeOptions {
            timeouts: Timeouts {
                hello: a.hello_timeout,
                ..Timeouts::default()
            },
            admission: tether_relay::admission::Limits {
                rate: a.conn_rate.max(0.1),
                burst: a.conn_burst.max(1.0),
            },
            store: Some(ctx.store_url(&dd)?),
            public_addr: a.public_addr,
            ..ServeOptions::new(a.listen)
        },
    )
    .await?;
    let addr = relay.local_addr()?;
    // Scripts and tests read this line to learn the port (port 0 is allowed).
    println!("tether-relay listening on {addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    relay.run(shutdown_signal()).await;
    println!("tether-relay stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
