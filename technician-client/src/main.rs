//! `tether`: the technician's command.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tether_net::NetError;
use tether_net::client::{self, ClientError, Credentials};
use tether_protocol::identity::Identity;
use tether_protocol::token::EnrollToken;
use tether_technician::relay::{RequestError, Session};
use tether_technician::{SOFTWARE, default_config_dir, output};

#[derive(Parser)]
#[command(name = "tether", version, about = "Tether technician client")]
struct Cli {
    /// Configuration and credentials directory [default: $XDG_CONFIG_HOME/tether].
    #[arg(long, global = true, env = "TETHER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Enroll as a technician with a one-time token from the IT admin.
    Enroll {
        #[arg(long, env = "TETHER_TOKEN")]
        token: String,
        /// Replace existing credentials.
        #[arg(long)]
        force: bool,
    },
    /// List machines: id, hostname, group, online, last seen.
    Devices {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// Exit codes scripts can rely on.
mod exit {
    pub const FAILURE: u8 = 1;
    pub const AUTH: u8 = 3;
    pub const UNREACHABLE: u8 = 4;
}

fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        let net = cause
            .downcast_ref::<NetError>()
            .or_else(|| match cause.downcast_ref::<ClientError>() {
                Some(ClientError::Net(n)) => Some(n),
                _ => None,
            })
            .or_else(|| match cause.downcast_ref::<RequestError>() {
                Some(RequestError::Client(ClientError::Net(n))) => Some(n),
                _ => None,
            });
        match net {
            Some(n) if n.is_auth() => return exit::AUTH,
            Some(NetError::Unreachable { .. } | NetError::Timeout(_)) => return exit::UNREACHABLE,
            _ => {}
        }
    }
    exit::FAILURE
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let dir = cli.config.unwrap_or_else(default_config_dir);
    match cli.cmd {
        Cmd::Enroll { token, force } => {
            if Credentials::exists(&dir) && !force {
                anyhow::bail!(
                    "{} already holds technician credentials; pass --force to replace them",
                    dir.display()
                );
            }
            let token = EnrollToken::decode(&token)?;
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let identity = client::enroll(&token, &dir, host.trim(), SOFTWARE)
                .await
                .with_context(|| format!("enrolling with relay {}", token.relay_addr))?;
            match identity {
                Identity::Technician { name, role } => {
                    println!(
                        "enrolled as technician {name} ({role}); credentials in {}",
                        dir.display()
                    );
                    println!("next: tether devices");
                }
                other => anyhow::bail!("relay issued a certificate for {other}, not a technician"),
            }
        }
        Cmd::Devices { json } => {
            let creds = Credentials::load(&dir)?;
            let session = Session::open(&creds).await?;
            let devices = session.devices().await;
            session.close().await;
            let devices = devices?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&output::devices_json(&devices))?
                );
            } else if devices.is_empty() {
                println!("no devices enrolled yet (IT: tether-relay token --agent)");
            } else {
                print!(
                    "{}",
                    output::devices_table(&devices, std::time::SystemTime::now())
                );
            }
        }
    }
    Ok(())
}
