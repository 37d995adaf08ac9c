//! `tether-tray`: the desktop user's side of Tether. It asks the person at the computer to allow
//! or deny each remote-support request, shows a banner while a session runs, lets them end it,
//! asks for a rating afterwards, and shows technicians' messages with a box to reply. It talks to
//! the agent service over its local socket (`tether_net::local`); without a running tray app the
//! agent denies every request.
#![cfg_attr(windows, windows_subsystem = "windows")]
// `unsafe` only in the Win32 FFI module (`win/sys.rs`), which allows it by name.
#![deny(unsafe_code)]

mod app;
#[cfg(not(windows))]
mod gtk_ui;
mod icon;
#[cfg(not(windows))]
mod indicator;
mod ipc;
mod msg;
mod once;
#[cfg(not(windows))]
mod sni;
mod text;
#[cfg(not(windows))]
mod ui;
#[cfg(windows)]
mod win;

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
    /// $XDG_RUNTIME_DIR/tether-agent.sock, else /run/user/<uid>/tether-agent.sock; on Windows
    /// the service's pipe, \\.\pipe\tether-agent]
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Show a small status window instead of a tray icon (chosen automatically when
    /// libayatana-appindicator3 is missing or the desktop has no StatusNotifier host; on
    /// Windows, when the taskbar takes no notification icon). TETHER_TRAY_NO_ICON=1 does the same.
    #[arg(long, env = "TETHER_TRAY_NO_ICON", value_parser = clap::builder::FalseyValueParser::new())]
    no_tray_icon: bool,
    /// Append the log to FILE instead of standard error (a windowed program started from
    /// Explorer or at sign-in has no console to show it).
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.log_file {
        if let Err(e) = tether_net::logging::init_file("info", path) {
            tether_net::logging::init("info");
            tracing::warn!(
                "cannot write the log to {}: {e}; logging to standard error",
                path.display()
            );
        }
    } else {
        tether_net::logging::init("info");
    }
    let socket = args
        .socket
        .unwrap_or_else(tether_net::local::default_socket);
    match run(socket, !args.no_tray_icon) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(windows))]
use gtk_ui::run;
#[cfg(windows)]
use win::run;
