//! `tether-agent`: thin CLI over the agent library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tether_agent::collect::{CollectOptions, collect};
use tether_agent::reporter;
use tether_agent::service::{self, AgentOptions};
use tether_agent::{SOFTWARE, default_state_dir, host};
use tether_net::client::{self, Credentials};
use tether_protocol::identity::Identity;
use tether_protocol::token::EnrollToken;
use tokio::sync::Notify;

#[derive(Parser)]
#[command(name = "tether-agent", version, about = "Tether workstation agent")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enroll this machine with a one-time token from the IT admin.
    Enroll {
        /// The token printed by `tether-relay token --agent`.
        #[arg(long, env = "TETHER_TOKEN")]
        token: String,
        /// Where the agent keeps its key and certificate [default: /var/lib/tether-agent as root].
        #[arg(long, env = "TETHER_AGENT_STATE")]
        state: Option<PathBuf>,
        /// Enroll again even if this machine already has credentials.
        #[arg(long)]
        force: bool,
    },
    /// Connect to the relay and stay connected (the service). SIGHUP re-collects the inventory.
    Run {
        #[arg(long, env = "TETHER_AGENT_STATE")]
        state: Option<PathBuf>,
        /// How often the inventory is collected again (e.g. 1h, 15m).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        inventory_interval: Duration,
        /// Read the inventory from this root instead of / (for tests and diagnostics).
        #[arg(long, default_value = "/", hide = true)]
        inventory_root: PathBuf,
    },
    /// Print this machine's hardware and software inventory (no relay needed).
    Inventory {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// List every installed package.
        #[arg(long)]
        packages: bool,
        /// Read /proc, /sys and package databases under this root instead of /.
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    tether_net::logging::init("info,quinn=warn");
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Enroll {
            token,
            state,
            force,
        } => {
            let dir = state.unwrap_or_else(default_state_dir);
            if Credentials::exists(&dir) && !force {
                anyhow::bail!(
                    "{} already holds this machine's credentials; pass --force to enroll again",
                    dir.display()
                );
            }
            let token = EnrollToken::decode(&token)?;
            let identity = client::enroll(&token, &dir, &host::hostname(), SOFTWARE)
                .await
                .with_context(|| format!("enrolling with relay {}", token.relay_addr))?;
            match identity {
                Identity::Device { id, group } => {
                    println!("enrolled as device {id} in group {group}");
                    println!("credentials saved in {}", dir.display());
                    println!("next: tether-agent run --state {}", dir.display());
                }
                other => anyhow::bail!("relay issued a certificate for {other}, not a device"),
            }
        }
        Cmd::Run {
            state,
            inventory_interval,
            inventory_root,
        } => {
            let dir = state.unwrap_or_else(default_state_dir);
            let creds = Credentials::load(&dir)?;
            let refresh = Arc::new(Notify::new());
            spawn_sighup(refresh.clone());
            let opts = AgentOptions {
                root: inventory_root.clone(),
                ..AgentOptions::default()
            };
            let inventory = reporter::spawn(
                CollectOptions {
                    root: inventory_root,
                    ..CollectOptions::default()
                },
                inventory_interval,
                refresh,
            );
            service::run(creds, opts, inventory, shutdown_signal()).await?;
        }
        Cmd::Inventory {
            json,
            packages,
            root,
        } => {
            let started = std::time::Instant::now();
            let inv = tokio::task::spawn_blocking(move || {
                collect(&CollectOptions {
                    root,
                    ..CollectOptions::default()
                })
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inv)?);
            } else {
                print!("{}", tether_protocol::report::text(&inv, packages));
                eprintln!("collected in {} ms", started.elapsed().as_millis());
            }
        }
    }
    Ok(())
}

/// SIGHUP asks for a fresh inventory now.
fn spawn_sighup(refresh: Arc<Notify>) {
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                refresh.notify_one();
            }
        });
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
