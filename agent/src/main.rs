//! `tether-agent`: thin CLI over the agent library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tether_agent::collect::{CollectOptions, collect};
use tether_agent::consent::{Consent, ConsentOptions};
use tether_agent::service::{self, AgentOptions};
use tether_agent::{SOFTWARE, default_state_dir, host};
use tether_agent::{ipc, reporter};
use tether_net::client::{self, Credentials};
use tether_net::local;
use tether_protocol::consent::{ActiveSession, LocalEvent, LocalRequest, Prompt};
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
        /// The local socket the tray app and `tether-agent approve` use
        /// [default: /run/user/<desktop uid>/tether-agent.sock].
        #[arg(
            long = "socket",
            alias = "ipc-socket",
            value_name = "PATH",
            env = "TETHER_AGENT_SOCKET"
        )]
        ipc_socket: Option<PathBuf>,
        /// Whose desktop this is (name or uid): only they (or root) may answer prompts
        /// [default: owner of the X server for $DISPLAY].
        #[arg(long)]
        desktop_user: Option<String>,
        /// Which desktop sessions share: `x11`, `wayland` (through the tether-wayland helper,
        /// run as the desktop user in their session), or `auto`: Wayland where
        /// WAYLAND_DISPLAY is set or the desktop user has a Wayland socket in
        /// /run/user/<uid>, else X11.
        #[arg(long, default_value = "auto", value_parser = ["auto", "x11", "wayland"])]
        desktop: String,
        /// Whom sessions' shells, commands and file access run as (name or uid; not root) when
        /// the technician did not get root [default: the desktop user]. With neither (a
        /// headless machine), only root sessions run, where the group's policy allows them.
        #[arg(long)]
        session_user: Option<String>,
        /// How long the user has to answer a session request before it is denied.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        consent_timeout: Duration,
        /// Headless machines: when no tray app is running, requests wait for
        /// `tether-agent approve` instead of being denied at once.
        #[arg(long)]
        terminal_approval: bool,
        /// An engagement (one technician, one ticket: approved once, then further sessions
        /// within what was approved start without a prompt) ends after this long with nothing
        /// running; the user is then asked to rate it. At least 1s.
        #[arg(long, default_value = "15m", value_parser = parse_engagement_idle)]
        engagement_idle: Duration,
        /// How often a health report (CPU, memory, disks, processes, failed units) is sent; one
        /// is also sent right after each connect. At least 1s.
        #[arg(long, default_value = "60s", value_parser = parse_health_interval)]
        health_interval: Duration,
    },
    /// List session requests waiting for an answer and sessions running.
    Sessions {
        #[command(flatten)]
        local: Local,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a waiting session request (ID or a unique prefix).
    Approve {
        #[command(flatten)]
        local: Local,
        id: String,
    },
    /// Deny a waiting session request.
    Deny {
        #[command(flatten)]
        local: Local,
        id: String,
    },
    /// End a running session.
    End {
        #[command(flatten)]
        local: Local,
        id: String,
    },
    /// Reply to a technician's message (see `sessions` for waiting messages).
    Reply {
        #[command(flatten)]
        local: Local,
        id: String,
        text: String,
    },
    /// Rate a session that ran on this machine (1 to 5).
    Rate {
        #[command(flatten)]
        local: Local,
        id: String,
        #[arg(value_parser = clap::value_parser!(u8).range(1..=5))]
        rating: u8,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Register the agent as a Windows service (LocalSystem, automatic start) that runs
    /// `tether-agent run` with the given arguments; makes the state directory readable by SYSTEM
    /// and Administrators only. Enroll first (`enroll --state` the same directory).
    #[cfg(windows)]
    InstallService {
        /// Where the agent keeps its key and certificate [default: %ProgramData%\Tether].
        #[arg(long)]
        state: Option<PathBuf>,
        /// Further `run` arguments for the service (after `--`).
        #[arg(last = true)]
        run_args: Vec<std::ffi::OsString>,
    },
    /// Stop and remove the Windows service.
    #[cfg(windows)]
    UninstallService,
    /// Run as the Windows service (started by the service manager, not by hand).
    #[cfg(windows)]
    #[command(hide = true)]
    Service {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        run_args: Vec<std::ffi::OsString>,
    },
    /// Serve the desktop of this session to the agent service over standard input and output
    /// (started by the service in the signed-in user's session, not by hand).
    #[cfg(windows)]
    #[command(hide = true)]
    DesktopHelper,
    /// Run PROGRAM as the user signed in to Windows session K, with this process's standard
    /// handles, and exit with its exit code (put in front of a session's commands by the agent,
    /// not run by hand).
    #[cfg(windows)]
    #[command(hide = true)]
    RunAsUser {
        #[arg(long)]
        session: u32,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Print this machine's health report, as sent to the relay (no relay needed).
    Health {
        /// Print JSON.
        #[arg(long)]
        json: bool,
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

#[derive(clap::Args)]
struct Local {
    /// The agent's local socket [default: $XDG_RUNTIME_DIR/tether-agent.sock].
    #[arg(long, env = "TETHER_AGENT_SOCKET")]
    socket: Option<PathBuf>,
}

impl Local {
    fn request(&self, req: &LocalRequest) -> Result<LocalEvent> {
        let path = self.socket.clone().unwrap_or_else(local::default_socket);
        Ok(local::request(&path, req)?)
    }

    /// Sends an answer; an agent error becomes ours.
    fn act(&self, req: LocalRequest) -> Result<()> {
        match self.request(&req)? {
            LocalEvent::Done { message } => {
                println!("{message}");
                Ok(())
            }
            LocalEvent::Error { message } => anyhow::bail!("{message}"),
            other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
        }
    }
}

/// What the agent logs unless `RUST_LOG` says otherwise.
const LOG_FILTER: &str = "info,quinn=warn";

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // A service has no stderr: it logs into its state directory (set up in `windows_service`).
    #[cfg(windows)]
    let is_service = matches!(cli.cmd, Cmd::Service { .. });
    #[cfg(not(windows))]
    let is_service = false;
    if !is_service {
        tether_net::logging::init(LOG_FILTER);
    }
    #[cfg(windows)]
    match cli.cmd {
        Cmd::Service { run_args } => return windows_service(run_args),
        Cmd::RunAsUser { session, argv } => {
            return match tether_agent::platform::credentials::run_as_user(session, &argv) {
                // Exit codes are 32-bit on Windows; the same bits go back out.
                Ok(code) => std::process::exit(code as i32),
                Err(e) => {
                    eprintln!("tether-agent: {e}");
                    std::process::ExitCode::from(127)
                }
            };
        }
        Cmd::DesktopHelper => {
            return match tether_agent::platform::windows::serve_desktop_helper() {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("desktop helper: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let rt = match runtime() {
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

/// The agent's runtime: two workers are plenty for one machine's sessions.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Runs `tether-agent run RUN_ARGS…` under the service manager until it says stop.
#[cfg(windows)]
fn windows_service(run_args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    use tether_agent::platform::windows::service;
    let mut argv = vec!["tether-agent".into(), "run".into()];
    argv.extend(run_args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            tether_net::logging::init(LOG_FILTER);
            tracing::error!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let state = match &cli.cmd {
        Cmd::Run { state, .. } => state.clone(),
        _ => None,
    }
    .unwrap_or_else(default_state_dir);
    let log = state.join("agent.log");
    if let Err(e) = tether_net::logging::init_file(LOG_FILTER, &log) {
        tether_net::logging::init(LOG_FILTER);
        tracing::warn!("cannot write the log {}: {e}", log.display());
    }
    tracing::debug!(pid = std::process::id(), "service process started");
    // A panic's message would go to the missing stderr: into the log with it.
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        tracing::error!("panic: {info}\n{backtrace}");
    }));
    let body = move || {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("cannot start runtime: {e}");
                return 1;
            }
        };
        match rt.block_on(run(cli)) {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!("{e:#}");
                1
            }
        }
    };
    match service::dispatch(body) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        #[cfg(windows)]
        Cmd::Service { .. } => anyhow::bail!("`service` is started by the service manager"),
        #[cfg(windows)]
        Cmd::DesktopHelper => anyhow::bail!("`desktop-helper` is started by the agent service"),
        #[cfg(windows)]
        Cmd::RunAsUser { .. } => anyhow::bail!("`run-as-user` is started by the agent"),
        #[cfg(windows)]
        Cmd::InstallService { state, run_args } => {
            use tether_agent::platform::windows::service;
            let dir = state.unwrap_or_else(default_state_dir);
            if !Credentials::exists(&dir) {
                anyhow::bail!(
                    "{} holds no credentials: enroll first (tether-agent enroll --token TOKEN --state {})",
                    dir.display(),
                    dir.display()
                );
            }
            let exe = std::env::current_exe().context("finding this program's path")?;
            service::install(&exe, &dir, &run_args)?;
            println!(
                "service {} installed (runs {} as LocalSystem, starts with Windows); start it now with: sc start {}",
                service::SERVICE_NAME,
                exe.display(),
                service::SERVICE_NAME
            );
        }
        #[cfg(windows)]
        Cmd::UninstallService => {
            use tether_agent::platform::windows::service;
            service::uninstall()?;
            println!("service {} removed", service::SERVICE_NAME);
        }
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
            ipc_socket,
            desktop_user,
            desktop,
            session_user,
            consent_timeout,
            terminal_approval,
            engagement_idle,
            health_interval,
        } => {
            let dir = state.unwrap_or_else(default_state_dir);
            let creds = Credentials::load(&dir)?;
            let desktop_uid = match desktop_user {
                Some(u) => ipc::parse_user(&u).map_err(anyhow::Error::msg)?,
                None => ipc::desktop_owner(),
            };
            let session_user = match session_user {
                Some(u) => match ipc::parse_user(&u).map_err(anyhow::Error::msg)? {
                    0 => anyhow::bail!(
                        "--session-user cannot be root: root is a permission each session asks for (--as-root), allowed per device group"
                    ),
                    uid => Some(uid),
                },
                // Windows: whoever is signed in at the console when a session starts (see
                // `RunAs::for_session`), as users sign in and out while the service runs.
                None => (desktop_uid != 0 && cfg!(unix)).then_some(desktop_uid),
            };
            match session_user {
                Some(uid) => tracing::info!(uid, "sessions run as this user unless granted root"),
                None if cfg!(windows) => tracing::info!(
                    "sessions run as the user signed in at the console unless granted root (refused while nobody is signed in)"
                ),
                None if local::current_uid() == 0 => tracing::warn!(
                    "no desktop user known: sessions without root are refused (--session-user NAME sets one)"
                ),
                None => {}
            }
            let socket = ipc_socket.unwrap_or_else(|| {
                if local::current_uid() == 0 {
                    local::runtime_socket(desktop_uid)
                } else {
                    local::default_socket()
                }
            });
            use tether_protocol::consent::{MAX_TIMEOUT, MIN_TIMEOUT};
            if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&consent_timeout) {
                anyhow::bail!(
                    "--consent-timeout must be between {} and {}",
                    humantime::format_duration(MIN_TIMEOUT),
                    humantime::format_duration(MAX_TIMEOUT)
                );
            }
            let (report_tx, report_rx) = tokio::sync::mpsc::channel(64);
            let consent = Consent::spawn(
                ConsentOptions {
                    timeout: consent_timeout,
                    terminal_approval,
                    engagement_idle,
                },
                report_tx,
            );
            ipc::listen(&socket, desktop_uid, consent.clone())
                .with_context(|| format!("opening the local socket {}", socket.display()))?;
            let refresh = Arc::new(Notify::new());
            spawn_sighup(refresh.clone());
            let opts = AgentOptions {
                root: inventory_root.clone(),
                health: Some(tether_agent::health::spawn(health_interval)),
                session_user,
                desktop: tether_agent::platform::DesktopSpec {
                    kind: tether_agent::platform::DesktopKind::parse(&desktop),
                    user: Some(desktop_uid),
                },
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
            service::run(
                creds,
                opts,
                inventory,
                consent,
                report_rx,
                shutdown_signal(),
            )
            .await?;
            let _ = std::fs::remove_file(&socket);
        }
        Cmd::Sessions { local, json } => {
            let (prompts, active, messages, engagements) =
                match local.request(&LocalRequest::List)? {
                    LocalEvent::Snapshot {
                        prompts,
                        active,
                        messages,
                        engagements,
                    } => (prompts, active, messages, engagements),
                    LocalEvent::Error { message } => anyhow::bail!("{message}"),
                    other => anyhow::bail!("unexpected answer from the agent: {other:?}"),
                };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "requests": prompts, "active": active, "messages": messages, "engagements": engagements })
                    )?
                );
            } else {
                print_local(&prompts, &active);
                for e in &engagements {
                    println!(
                        "engagement {}  {} ({}) · ticket: {} · approved: {} · {} running (end it with `tether-agent end {}`)",
                        e.id,
                        e.technician,
                        e.role,
                        e.ticket,
                        e.approved.describe(),
                        e.running,
                        e.id
                    );
                }
                for m in &messages {
                    println!(
                        "message {}  from {} ({}): {} · {} s left to reply",
                        m.id, m.technician, m.role, m.text, m.seconds_left
                    );
                }
            }
        }
        Cmd::Approve { local, id } => local.act(LocalRequest::Approve { id })?,
        Cmd::Deny { local, id } => local.act(LocalRequest::Deny { id })?,
        Cmd::End { local, id } => local.act(LocalRequest::End { id })?,
        Cmd::Reply { local, id, text } => local.act(LocalRequest::Reply { id, text })?,
        Cmd::Rate {
            local,
            id,
            rating,
            comment,
        } => local.act(LocalRequest::Rate {
            id,
            rating,
            comment,
        })?,
        Cmd::Health { json } => {
            use tether_agent::health;
            let started = std::time::Instant::now();
            let busy = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (_, report) = health::collect(health::Collector::new(), &busy).await;
            let ms = started.elapsed().as_millis();
            let bytes = health::frame(&report).map_or(0, |f| f.len());
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", tether_report::health::text(&report));
            }
            eprintln!("collected in {ms} ms; {bytes} bytes on the wire");
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
                print!("{}", tether_report::inventory::text(&inv, packages));
                eprintln!("collected in {} ms", started.elapsed().as_millis());
            }
        }
    }
    Ok(())
}

fn print_local(prompts: &[Prompt], active: &[ActiveSession]) {
    if prompts.is_empty() && active.is_empty() {
        println!("no session requests and no sessions running");
    }
    for p in prompts {
        println!(
            "request {}  {} ({}) asks {}{} · reason: {} · ticket: {} · {} s left",
            p.id,
            p.technician,
            p.role,
            p.permissions.describe(),
            if p.permissions.as_root() {
                " · to run commands as ROOT (administrator)"
            } else {
                ""
            },
            p.reason,
            p.ticket,
            p.seconds_left
        );
    }
    for s in active {
        println!(
            "running {}  {} ({}) {}{}{} · ticket: {}",
            s.id,
            s.technician,
            s.role,
            s.permissions.describe(),
            if s.permissions.as_root() {
                " · as ROOT"
            } else {
                ""
            },
            if s.unattended { " · unattended" } else { "" },
            s.ticket
        );
        println!("  {}", s.activity.describe());
    }
}

fn parse_health_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err("the health interval must be at least 1s".into());
    }
    Ok(d)
}

fn parse_engagement_idle(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err("the engagement idle time must be at least 1s".into());
    }
    Ok(d)
}

/// SIGHUP asks for a fresh inventory now (Unix; Windows has no such signal).
fn spawn_sighup(refresh: Arc<Notify>) {
    #[cfg(windows)]
    let _ = refresh;
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                refresh.notify_one();
            }
        });
    }
}

#[cfg(windows)]
async fn shutdown_signal() {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = tether_agent::platform::windows::service::STOP.notified() => {},
    }
}

#[cfg(unix)]
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
