//! `tether`: the technician's command.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tether_net::NetError;
use tether_net::client::ClientError;
use tether_protocol::session::{InputEvent, MouseButton, Permissions};
use tether_technician::outln;
use tether_technician::relay::RequestError;
use tether_technician::{cmd, default_config_dir};

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
    /// Hardware and software inventory of one machine, or of all (--all).
    Inventory {
        /// Device id, unique id prefix, or hostname.
        #[arg(required_unless_present = "all")]
        device: Option<String>,
        /// One row per device with the key fields.
        #[arg(long, conflicts_with = "device")]
        all: bool,
        /// With --all: CSV for spreadsheets and asset registers.
        #[arg(long, requires = "all", conflicts_with = "json")]
        csv: bool,
        #[arg(long)]
        json: bool,
        /// List every installed package.
        #[arg(long, conflicts_with = "all")]
        packages: bool,
    },
    /// Which machines have a package, and which version (NAME may end in *).
    Software {
        name: String,
        /// Only versions below this one (dpkg ordering), e.g. to find unpatched machines.
        #[arg(long, value_name = "V")]
        version_below: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// See and control a machine's desktop in a viewer window (end-to-end encrypted).
    Connect {
        device: String,
        /// Only watch: the agent refuses all input.
        #[arg(long)]
        view_only: bool,
        /// Start at 1:1 instead of scaled to fit the window.
        #[arg(long)]
        actual_size: bool,
        /// How keys are typed: `translate` (the characters of your layout arrive) or
        /// `physical` (the same keys are pressed; the remote layout decides). The toolbar
        /// switches it too.
        #[arg(long, value_enum, default_value_t = KeysArg::Translate)]
        keys: KeysArg,
        /// Also ask now for running commands: the user approves once, and `tether exec` and
        /// `tether shell` for the same ticket then start without another prompt.
        #[arg(long)]
        shell: bool,
        /// Also ask now for copying files (then `push`/`pull` for the ticket need no prompt).
        #[arg(long)]
        files: bool,
        #[command(flatten)]
        why: Why,
    },
    /// Save a screenshot of a machine's screen (view permission, end-to-end encrypted).
    Screenshot {
        device: String,
        /// PNG file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Display index (see the session's display list).
        #[arg(long, default_value_t = 0)]
        display: u32,
        #[command(flatten)]
        why: Why,
    },
    /// Type text on a machine (control permission). Unicode is typed as is; \n presses Return.
    Type {
        device: String,
        text: String,
        #[command(flatten)]
        why: Why,
    },
    /// Read a machine's clipboard text, or set it with --set (clipboard permission).
    Clipboard {
        device: String,
        /// Put this text on the machine's clipboard instead of reading it.
        #[arg(long, value_name = "TEXT")]
        set: Option<String>,
        #[command(flatten)]
        why: Why,
    },
    /// Click at a screen position on a machine (control permission).
    Click {
        device: String,
        x: i32,
        y: i32,
        #[arg(long, default_value = "left", value_parser = ["left", "middle", "right"])]
        button: String,
        #[command(flatten)]
        why: Why,
    },
    /// The audit trail: who asked which machine for what, the decision, times, bytes, notes.
    Sessions {
        #[arg(long)]
        device: Option<String>,
        /// Admins only: another technician's sessions.
        #[arg(long)]
        technician: Option<String>,
        /// How far back (e.g. 7d, 12h).
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
    },
    /// Sessions per technician: approvals, denials, time spent, the users' ratings.
    Report {
        /// How far back (e.g. 30d).
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
    /// An interactive terminal on the device (the user approves the shell permission).
    Shell {
        device: String,
        #[command(flatten)]
        root: AsRoot,
        #[command(flatten)]
        why: Why,
    },
    /// Run a command on a device (or every device of a group) and exit with its exit code.
    Exec {
        /// The device (id, prefix or hostname); or use --group.
        #[arg(required_unless_present = "group")]
        device: Option<String>,
        /// Run on every device of this group (admins, where the group allows unattended access).
        #[arg(long, conflicts_with = "device")]
        group: Option<String>,
        #[command(flatten)]
        root: AsRoot,
        /// Kill the command after this long (exit code 124).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Devices at once in a group run.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
        /// Print JSON (exit code, stdout, stderr per device).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        why: Why,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Copy a file or directory to a device (checksummed, resumed after a dropped connection).
    Push {
        device: String,
        local: PathBuf,
        /// Absolute destination on the device; ending in / puts LOCAL inside that directory.
        remote: String,
        #[command(flatten)]
        root: AsRoot,
        #[command(flatten)]
        why: Why,
    },
    /// Copy a file or directory from a device (checksummed, resumed after a dropped connection).
    Pull {
        device: String,
        /// Absolute path on the device.
        remote: String,
        /// Where to put it (an existing directory keeps the remote name).
        local: PathBuf,
        #[command(flatten)]
        root: AsRoot,
        #[command(flatten)]
        why: Why,
    },
    /// Show a short message to the user at a device (by their tray app) and print their reply.
    Say {
        device: String,
        text: String,
        /// How long to wait for the reply (5 s to 10 min).
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
    /// You are done on a device: end your engagement for the ticket, so your next session there
    /// asks the user again (and the user is asked to rate this visit).
    End {
        device: String,
        /// The ticket the engagement is for (empty: the one without a ticket).
        #[arg(long, default_value = "")]
        ticket: String,
        #[arg(long)]
        json: bool,
    },
    /// Admins: create a one-time enrollment token for a machine or a technician.
    Token {
        /// Enroll a workstation agent.
        #[arg(
            long,
            conflicts_with = "technician",
            required_unless_present = "technician"
        )]
        agent: bool,
        /// Device group for an agent token.
        #[arg(long, default_value = "default", requires = "agent")]
        group: String,
        /// Enroll a technician with this name.
        #[arg(long, value_name = "NAME", requires = "role")]
        technician: Option<String>,
        /// The technician's role: viewer, support or admin.
        #[arg(long, value_parser = parse_role)]
        role: Option<tether_protocol::identity::Role>,
        /// Re-enroll a technician who is already enrolled (their current certificates are
        /// revoked when the new one is issued).
        #[arg(long, requires = "technician")]
        replace: bool,
        /// How long the token stays valid (1m to 30d).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// host:port to put in the token [default: the relay's public address].
        #[arg(long)]
        relay: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Admins: change a device group's policy.
    Policy {
        #[arg(long)]
        group: String,
        /// Allow admins in without the user's approval on this group's devices.
        #[arg(long, value_parser = ["on", "off"])]
        unattended: Option<String>,
        /// Keep a transcript of every shell on this group's devices on the relay.
        #[arg(long, value_parser = ["on", "off"])]
        record_shells: Option<String>,
        /// Let technicians run shells, commands and file access as root (--as-root) on this
        /// group's devices; off: always as the desktop user.
        #[arg(long, value_parser = ["on", "off"])]
        allow_root: Option<String>,
    },
    /// Add resolution notes to one of your sessions.
    Notes { session: String, text: String },
    /// A machine's latest health report (CPU, memory, disks, top processes, failed units) and
    /// open alerts.
    Health {
        /// Device id, unique id prefix, or hostname.
        device: String,
        /// Keep refreshing until Ctrl-C (redraws in place on a terminal).
        #[arg(long)]
        watch: bool,
        /// With --watch: how often to ask the relay.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, requires = "watch")]
        every: std::time::Duration,
        /// Print JSON (with --watch: one line per new report).
        #[arg(long)]
        json: bool,
    },
    /// Open alerts across all machines: full disks, memory pressure, failed units, silent agents.
    Alerts {
        /// Also alerts closed in the last 7 days.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// What changed on a machine: software installed/removed/upgraded, hardware, OS.
    History {
        device: String,
        /// How far back (e.g. 30d, 12h).
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
}

/// Who the session acts as on the device: the desktop user, or root when asked for.
#[derive(clap::Args, Debug)]
struct AsRoot {
    /// Run as root instead of the desktop user. The user sees it in the prompt, the audit
    /// record keeps it, and the relay refuses unless the device group's policy allows it
    /// (`tether policy --group G --allow-root on`).
    #[arg(long)]
    as_root: bool,
}

/// Why a session is opened: recorded by the relay and shown to the user.
#[derive(clap::Args, Debug, Clone)]
struct Why {
    /// Why you need the session (shown to the user, kept in the audit trail).
    #[arg(long, default_value = "")]
    reason: String,
    /// Ticket reference, e.g. HD-1042.
    #[arg(long, default_value = "")]
    ticket: String,
}

impl Why {
    /// With `--as-root` (or not).
    fn with_root(self, root: AsRoot) -> cmd::Why {
        cmd::Why {
            as_root: root.as_root,
            ..self.into()
        }
    }
}

impl From<Why> for cmd::Why {
    fn from(w: Why) -> Self {
        cmd::Why {
            reason: w.reason,
            ticket: w.ticket,
            as_root: false,
        }
    }
}

fn parse_role(s: &str) -> Result<tether_protocol::identity::Role, String> {
    s.parse()
        .map_err(|e: tether_protocol::identity::IdentityError| e.to_string())
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
    if let Cmd::Connect {
        device,
        view_only,
        actual_size,
        keys,
        shell,
        files,
        why,
    } = &cli.cmd
    {
        let dir = cli.config.clone().unwrap_or_else(default_config_dir);
        let also = Permissions {
            shell: *shell,
            files: *files,
            ..Permissions::default()
        };
        let keys = match keys {
            KeysArg::Translate => tether_protocol::keys::KeyMode::Translate,
            KeysArg::Physical => tether_protocol::keys::KeyMode::Physical,
        };
        let why = why.clone().into();
        let view = *view_only;
        return match cmd::connect::connect(&dir, device, view, *actual_size, keys, also, &why) {
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
    let watching = matches!(cli.cmd, Cmd::Health { watch: true, .. });
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

/// How `tether connect` types keys.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum KeysArg {
    Translate,
    Physical,
}

async fn run(cli: Cli) -> Result<()> {
    let dir = cli.config.unwrap_or_else(default_config_dir);
    match cli.cmd {
        Cmd::Enroll { token, force } => cmd::enroll::enroll(&dir, &token, force).await?,
        Cmd::Devices { json } => cmd::devices::devices(&dir, json).await?,
        Cmd::Inventory {
            device,
            all,
            csv,
            json,
            packages,
        } => {
            let a = cmd::devices::InventoryArgs {
                device,
                all,
                csv,
                json,
                packages,
            };
            cmd::devices::inventory(&dir, a).await?
        }
        Cmd::Software {
            name,
            version_below,
            json,
        } => cmd::devices::software(&dir, &name, version_below, json).await?,
        Cmd::Screenshot {
            device,
            output: path,
            display,
            why,
        } => cmd::desktop::screenshot(&dir, &device, &path, display, &why.into()).await?,
        Cmd::Connect { .. } => anyhow::bail!("connect runs its own window loop"),
        Cmd::Sessions {
            device,
            technician,
            since,
            json,
            csv,
        } => {
            let a = cmd::sessions::SessionsArgs {
                device,
                technician,
                since,
                json,
                csv,
            };
            cmd::sessions::sessions(&dir, a).await?
        }
        Cmd::Shell { device, root, why } => {
            let creds = cmd::credentials(&dir)?;
            cmd::shell::shell(&creds, &device, root.as_root, &why.reason, &why.ticket).await?;
        }
        Cmd::Exec {
            device,
            group,
            timeout,
            parallel,
            json,
            root,
            why,
            command,
        } => {
            let creds = cmd::credentials(&dir)?;
            cmd::exec::exec(
                &creds,
                cmd::exec::ExecArgs {
                    device,
                    group,
                    command,
                    timeout,
                    json,
                    parallel,
                    as_root: root.as_root,
                    reason: why.reason,
                    ticket: why.ticket,
                },
            )
            .await?;
        }
        Cmd::Push {
            device,
            local,
            remote,
            root,
            why,
        } => {
            let op = cmd::transfer::Transfer::Push { local, remote };
            let creds = cmd::credentials(&dir)?;
            let why = why.with_root(root);
            outln!(
                "{}",
                cmd::transfer::transfer_and_report(&creds, &device, op, &why).await?
            );
        }
        Cmd::Pull {
            device,
            remote,
            local,
            root,
            why,
        } => {
            let op = cmd::transfer::Transfer::Pull { remote, local };
            let creds = cmd::credentials(&dir)?;
            let why = why.with_root(root);
            outln!(
                "{}",
                cmd::transfer::transfer_and_report(&creds, &device, op, &why).await?
            );
        }
        Cmd::Say {
            device,
            text,
            wait,
            json,
        } => cmd::engagement::say(&dir, &device, &text, wait, json).await?,
        Cmd::End {
            device,
            ticket,
            json,
        } => cmd::engagement::end(&dir, &device, &ticket, json).await?,
        Cmd::Token {
            agent,
            group,
            technician,
            role,
            replace,
            ttl,
            relay,
            json,
        } => {
            let a = cmd::admin::TokenArgs {
                agent,
                group,
                technician,
                role,
                replace,
                ttl,
                relay,
                json,
            };
            cmd::admin::token(&dir, a).await?
        }
        Cmd::Policy {
            group,
            unattended,
            record_shells,
            allow_root,
        } => {
            let on = |v: &Option<String>| v.as_deref().map(|v| v == "on");
            let (u, r, a) = (on(&unattended), on(&record_shells), on(&allow_root));
            cmd::admin::policy(&dir, &group, u, r, a).await?
        }
        Cmd::Report { since, json } => cmd::sessions::report(&dir, since, json).await?,
        Cmd::Notes { session, text } => cmd::sessions::notes(&dir, &session, &text).await?,
        Cmd::Clipboard { device, set, why } => {
            cmd::desktop::clipboard(&dir, &device, set, &why.into()).await?
        }
        Cmd::Type { device, text, why } => {
            let event = InputEvent::Text(text);
            cmd::desktop::control(&dir, &device, &why.into(), event).await?;
        }
        Cmd::Click {
            device,
            x,
            y,
            button,
            why,
        } => {
            let button = match button.as_str() {
                "middle" => MouseButton::Middle,
                "right" => MouseButton::Right,
                _ => MouseButton::Left,
            };
            let event = InputEvent::Click { x, y, button };
            cmd::desktop::control(&dir, &device, &why.into(), event).await?;
        }
        Cmd::Health {
            device,
            watch,
            every,
            json,
        } => {
            let creds = cmd::credentials(&dir)?;
            if watch {
                cmd::health::watch(&creds, &device, json, every).await?;
            } else {
                cmd::health::show(&creds, &device, json).await?;
            }
        }
        Cmd::Alerts { all, json } => {
            let creds = cmd::credentials(&dir)?;
            cmd::health::list(&creds, all, json).await?;
        }
        Cmd::History {
            device,
            since,
            json,
        } => cmd::devices::history(&dir, &device, since, json).await?,
    }
    Ok(())
}
