//! `tether-tray`: the desktop user's side of Tether. It asks the person at the computer to allow
//! or deny each remote-support request, shows a banner while a session runs, lets them end it,
//! asks for a rating afterwards, and shows technicians' messages with a box to reply. It talks to
//! the agent service over its local socket (`tether_net::local`); without a running tray app the
//! agent denies every request.
#![forbid(unsafe_code)]

mod app;
mod icon;
mod indicator;
mod ipc;
mod msg;
mod sni;
mod text;
mod ui;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    version,
    about = "Tether tray app: approve, watch and end remote-support sessions"
)]
struct Args {
    /// The agent's local socket [default: $TETHER_AGENT_SOCKET, else
    /// $XDG_RUNTIME_DIR/tether-agent.sock, else /run/user/<uid>/tether-agent.sock]
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Show a small status window instead of a tray icon (chosen automatically when
    /// libayatana-appindicator3 is missing or the desktop has no StatusNotifier host).
    /// TETHER_TRAY_NO_ICON=1 does the same.
    #[arg(long, env = "TETHER_TRAY_NO_ICON", value_parser = clap::builder::FalseyValueParser::new())]
    no_tray_icon: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tether_net::logging::init("info");
    let socket = args
        .socket
        .unwrap_or_else(tether_net::local::default_socket);
    match app::run(socket, !args.no_tray_icon) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
