//! `tether shell`: an interactive terminal on a device, glued to this terminal (raw mode,
//! window size, piped input).

use super::{AsRoot, CmdError, WhyArgs, session_request, shell_permissions, waiting};
use crate::ops;
use crate::relay::Session;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use tether_net::client::Credentials;
use tether_protocol::session::{Activity, ToAgent, ToViewer};

/// An interactive terminal on the device (the user approves the shell permission).
#[derive(clap::Args)]
pub struct ShellArgs {
    pub device: String,
    #[command(flatten)]
    pub root: AsRoot,
    #[command(flatten)]
    pub why: WhyArgs,
}

/// Puts the terminal in raw mode while alive (keystrokes go to the remote shell unchanged).
struct RawMode(bool);

impl RawMode {
    fn enable() -> Self {
        let on = std::io::stdin().is_terminal() && crossterm::terminal::enable_raw_mode().is_ok();
        RawMode(on)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if self.0 {
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

/// `tether shell DEVICE`: the remote shell on this terminal (raw mode when it is one) until it
/// exits; ends with the shell's exit code.
pub async fn run(dir: &Path, a: ShellArgs) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let (reason, ticket) = (&a.why.reason, &a.why.ticket);
    shell(&creds, &a.device, a.root.as_root, reason, ticket).await
}

async fn shell(
    creds: &Credentials,
    device: &str,
    as_root: bool,
    reason: &str,
    ticket: &str,
) -> Result<(), CmdError> {
    let who = device.to_string();
    let session = Session::open(creds).await?.on_asking(move || waiting(&who));
    let mut remote = match session
        .open_remote_with(
            creds,
            session_request(
                device,
                shell_permissions(as_root),
                Activity::Shell,
                (reason, ticket),
            ),
        )
        .await
    {
        Ok(r) => r,
        Err(e) => {
            session.close().await;
            return Err(e.into());
        }
    };
    let tty = std::io::stdin().is_terminal();
    let (cols, rows) = if tty {
        crossterm::terminal::size().unwrap_or((80, 24))
    } else {
        (80, 24)
    };
    remote
        .send(&ToAgent::ShellOpen {
            cols,
            rows,
            user: None,
        })
        .await?;
    let (tx, mut rx) = remote.into_duplex();
    let raw = RawMode::enable();
    let input = tx.clone();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    // Piped input ended: end the shell's input too (Ctrl-D).
                    let _ = input.send(ToAgent::ShellInput(vec![4]));
                    return;
                }
                Ok(n) => {
                    if input.send(ToAgent::ShellInput(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    if tty
        && let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    {
        let resize = tx.clone();
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Ok((cols, rows)) = crossterm::terminal::size()
                    && resize.send(ToAgent::ShellResize { cols, rows }).is_err()
                {
                    return;
                }
            }
        });
    }
    let mut stdout = std::io::stdout();
    let status = loop {
        match rx.recv().await {
            Some(ToViewer::Output { data, .. }) => {
                let _ = stdout.write_all(&data);
                let _ = stdout.flush();
            }
            Some(ToViewer::Exited {
                code,
                signal,
                timed_out,
            }) => {
                break Ok(ops::Exit {
                    code,
                    signal,
                    timed_out,
                }
                .status());
            }
            Some(ToViewer::Error { message }) => {
                break Err(CmdError::Remote(tether_protocol::text::clean(
                    &message, 512,
                )));
            }
            Some(ToViewer::Bye { reason }) => {
                break Err(CmdError::Remote(format!(
                    "session ended: {}",
                    tether_protocol::text::clean(&reason, 200)
                )));
            }
            Some(_) => {}
            None => break Err(CmdError::Remote("session ended".into())),
        }
    };
    drop(raw);
    let _ = tx.send(ToAgent::Bye);
    drop(tx);
    session.close().await;
    match status? {
        0 => Ok(()),
        code => Err(CmdError::RemoteExit(code)),
    }
}
