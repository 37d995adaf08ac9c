//! `tether-relay`: thin CLI over the relay library. Each command, its arguments and what it
//! does live in a module of `cli/`; this file parses the arguments and dispatches.

mod cli;

use clap::{Parser, Subcommand};
use cli::{
    Ctx, alerts_policy, certificates, check, grant, init, migrate_store, policy, relays, revoke,
    serve, token,
};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "tether-relay",
    version,
    about = "Tether relay: enrollment, presence and session broker"
)]
struct Cli {
    /// The relay's data directory (CA, certificates, settings; the SQLite store by default).
    #[arg(
        long,
        global = true,
        env = "TETHER_RELAY_DATA",
        default_value = "/var/lib/tether-relay"
    )]
    data: PathBuf,
    /// Where inventory, sessions and audit live: `sqlite:///path/tether.db`
    /// [default: sqlite://DATA/tether.db].
    #[arg(long, global = true, env = "TETHER_RELAY_STORE", value_name = "URL")]
    store: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The commands, in the order `tether-relay --help` lists them.
#[derive(Subcommand)]
enum Cmd {
    Init(init::InitArgs),
    Token(token::TokenArgs),
    Policy(policy::PolicyArgs),
    AlertsPolicy(alerts_policy::AlertsPolicyArgs),
    Grant(grant::GrantArgs),
    Revoke(revoke::RevokeArgs),
    Certificates(certificates::CertificatesArgs),
    Check(check::CheckArgs),
    Relays(relays::RelaysArgs),
    MigrateStore(migrate_store::MigrateStoreArgs),
    Serve(serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    tether_net::logging::init("info,quinn=warn,sqlx=warn");
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx {
        data: cli.data,
        store: cli.store,
    };
    match cli.cmd {
        Cmd::Init(a) => init::run(&ctx, a).await,
        Cmd::Token(a) => token::run(&ctx, a).await,
        Cmd::Policy(a) => policy::run(&ctx, a).await,
        Cmd::AlertsPolicy(a) => alerts_policy::run(&ctx, a).await,
        Cmd::Grant(a) => grant::run(&ctx, a).await,
        Cmd::Revoke(a) => revoke::run(&ctx, a).await,
        Cmd::Certificates(a) => certificates::run(&ctx, a).await,
        Cmd::Check(a) => check::run(&ctx, a).await,
        Cmd::Relays(a) => relays::run(&ctx, a).await,
        Cmd::MigrateStore(a) => migrate_store::run(&ctx, a).await,
        Cmd::Serve(a) => serve::run(&ctx, a).await,
    }
}
