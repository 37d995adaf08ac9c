//! `tether`: the technician's command.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tether_net::NetError;
use tether_net::client::ClientError;
use tether_technician::cmd::{
    self, admin, connect, desktop, devices, engagement, enroll, exec, health, sessions, shell,
    transfer,
};
use tether_technician::default_config_dir;
use tether_technician::relay::RequestError;

#[derive(Parser)]
#[command(name = "tether", version, about = "Tether technician client")]
struct Cli {
    /// Configuration and credentials directory [default: $XDG_CONFIG_HOME/tether].
    #[arg(long, global = true, env = "TETHER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// The commands, in the order `tether --help` lists them; each one's arguments and help live
/// in its module under `cmd/`.
#[derive(Subcommand)]
enum Cmd {
    Enroll(enroll::EnrollArgs),
    Devices(devices::DevicesArgs),
    Inventory(devices::InventoryArgs),
    Software(devices::SoftwareArgs),
    Connect(connect::ConnectArgs),
    Screenshot(desktop::ScreenshotArgs),
    Type(desktop::TypeArgs),
    Clipboard(desktop::ClipboardArgs),
    Click(desktop::ClickArgs),
    Sessions(sessions::SessionsArgs),
    Report(sessions::ReportArgs),
    Shell(shell::ShellArgs),
    Exec(exec::ExecArgs),
    Push(transfer::PushArgs),
    Pull(transfer::PullArgs),
    Say(engagement::SayArgs),
    End(engagement::EndArgs),
    Token(admin::TokenArgs),
    Policy(admin::PolicyArgs),
    Notes(sessions::NotesArgs),
    Health(health::HealthArgs),
    Alerts(health::AlertsArgs),
    History(devices::HistoryArgs),
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
            })
            .or_else(|| cause.downcast_ref::<cmd::CmdError>()?.net());
        match net {
            Some(n) if n.is_auth() => return exit::AUTH,
            Some(NetError::Unreachable { .. } | NetError::Timeout(_)) => return exit::UNREACHABLE,
            _ => {}
        }
    }
    exit::FAILURE
}

fn main() -> ExitCode {
    tether_net::logging::init("warn");
    let cli = Cli::parse();
    // The viewer window must own the main thread; its network runs on a runtime of its own.
    if let Cmd::Connect(a) = cli.cmd {
        let dir = cli.config.unwrap_or_else(default_config_dir);
        return match cmd::connect::run(&dir, a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let e = anyhow::Error::from(e);
                eprintln!("error: {}", tether_technician::safe::error_line(&e));
                ExitCode::from(exit_code(&e))
            }
        };
    }
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
    let watching = matches!(&cli.cmd, Cmd::Health(h) if h.watch);
    let result = rt.block_on(async {
        tokio::select! {
            r = run(cli) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("cancelled")),
        }
    });
    if watching && result.as_ref().is_err_and(|e| e.to_string() == "cancelled") {
        // Ctrl-C is how a watch ends.
        return ExitCode::SUCCESS;
    }
    if result.as_ref().is_err_and(|e| e.to_string() == "cancelled") {
        // A cancelled request dropped its connection; let the runtime send the close so the
        // relay (and a user looking at a prompt) learns at once, not after the idle timeout.
        rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(50)).await });
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(ref e) if let Some(cmd::CmdError::RemoteExit(code)) = e.downcast_ref() => {
            ExitCode::from((*code).clamp(0, 255) as u8)
        }
        Err(e) => {
            eprintln!("error: {}", tether_technician::safe::error_line(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let dir = cli.config.unwrap_or_else(default_config_dir);
    match cli.cmd {
        Cmd::Enroll(a) => enroll::enroll(&dir, a).await?,
        Cmd::Devices(a) => devices::devices(&dir, a).await?,
        Cmd::Inventory(a) => devices::inventory(&dir, a).await?,
        Cmd::Software(a) => devices::software(&dir, a).await?,
        Cmd::Connect(_) => anyhow::bail!("connect runs its own window loop"),
        Cmd::Screenshot(a) => desktop::screenshot(&dir, a).await?,
        Cmd::Type(a) => desktop::type_text(&dir, a).await?,
        Cmd::Clipboard(a) => desktop::clipboard(&dir, a).await?,
        Cmd::Click(a) => desktop::click(&dir, a).await?,
        Cmd::Sessions(a) => sessions::sessions(&dir, a).await?,
        Cmd::Report(a) => sessions::report(&dir, a).await?,
        Cmd::Shell(a) => shell::run(&dir, a).await?,
        Cmd::Exec(a) => exec::exec(&dir, a).await?,
        Cmd::Push(a) => transfer::push(&dir, a).await?,
        Cmd::Pull(a) => transfer::pull(&dir, a).await?,
        Cmd::Say(a) => engagement::say(&dir, a).await?,
        Cmd::End(a) => engagement::end(&dir, a).await?,
        Cmd::Token(a) => admin::token(&dir, a).await?,
        Cmd::Policy(a) => admin::policy(&dir, a).await?,
        Cmd::Notes(a) => sessions::notes(&dir, a).await?,
        Cmd::Health(a) => health::health(&dir, a).await?,
        Cmd::Alerts(a) => health::alerts(&dir, a).await?,
        Cmd::History(a) => devices::history(&dir, a).await?,
    }
    Ok(())
}
