//! `tether-relay`: thin CLI over the relay library.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tether_protocol::conn::Timeouts;
use tether_protocol::identity::{Role, validate_name};
use tether_relay::ca::Ca;
use tether_relay::config::{DataDir, RelaySettings, ensure_dir};
use tether_relay::server::{Relay, ServeOptions};
use tether_relay::store::{Store, StoreUrl, TokenKind};

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

#[derive(Subcommand)]
enum Cmd {
    /// Create the organisation CA and the relay's certificate in a new data directory.
    Init {
        /// DNS name clients use to reach the relay (checked against its certificate).
        #[arg(long, default_value = "localhost")]
        name: String,
        /// host:port written into enrollment tokens [default: NAME:4433].
        #[arg(long)]
        public_addr: Option<String>,
    },
    /// Create a one-time enrollment token for an agent or a technician.
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
        #[arg(long, value_name = "NAME")]
        technician: Option<String>,
        /// The technician's role.
        #[arg(long, value_parser = parse_role, requires = "technician")]
        role: Option<Role>,
        /// Re-enroll a technician who is already enrolled: their current certificates are
        /// revoked when the new one is issued (without it such a token is refused).
        #[arg(long, requires = "technician")]
        replace: bool,
        /// How long the token stays valid (e.g. 24h, 30m, 7d).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Relay address to put in the token [default: public_addr from init].
        #[arg(long)]
        relay: Option<String>,
        /// Print JSON ({"token":…,"expires_unix_ms":…}).
        #[arg(long)]
        json: bool,
    },
    /// Show or change per-group policy (who may be reached without the user's prompt).
    /// Needs the relay's data directory, i.e. the relay's administrator.
    Policy {
        /// The device group to change.
        #[arg(long)]
        group: Option<String>,
        /// Allow admins to start sessions on this group's devices without the user's approval.
        #[arg(long, value_parser = ["on", "off"], requires = "group")]
        unattended: Option<String>,
        /// Record every shell on this group's devices to a transcript in DATA/transcripts/.
        #[arg(long, value_parser = ["on", "off"], requires = "group")]
        record_shells: Option<String>,
        /// Allow sessions to run shells, commands and file access as root on this group's
        /// devices when the technician asks (--as-root); off: they run as the desktop user.
        #[arg(long, value_parser = ["on", "off"], requires = "group")]
        allow_root: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show or change per-group alert thresholds and the webhook that receives alerts.
    /// Without --group: list every group. Needs the relay's data directory.
    AlertsPolicy {
        /// The device group to show or change.
        #[arg(long)]
        group: Option<String>,
        /// Alert when any filesystem is at least this full [default: 90].
        #[arg(long, requires = "group", value_parser = clap::value_parser!(u8).range(1..=100))]
        disk_percent: Option<u8>,
        /// Alert when memory in use stays at least this high… [default: 95]
        #[arg(long, requires = "group", value_parser = clap::value_parser!(u8).range(1..=100))]
        memory_percent: Option<u8>,
        /// …for this long (e.g. 5m, 90s) [default: 5m].
        #[arg(long, requires = "group", value_parser = humantime::parse_duration)]
        memory_for: Option<Duration>,
        /// The same in minutes.
        #[arg(long, requires = "group", conflicts_with = "memory_for")]
        memory_minutes: Option<u64>,
        /// Alert when a device sent no health report for this long (e.g. 10m, 30s) [default: 10m].
        #[arg(long, requires = "group", value_parser = humantime::parse_duration)]
        silent_after: Option<Duration>,
        /// The same in minutes.
        #[arg(long, requires = "group", conflicts_with = "silent_after")]
        silent_minutes: Option<u64>,
        /// POST every alert opening and closing as JSON to this http(s) URL.
        #[arg(long, requires = "group", conflicts_with = "no_webhook")]
        webhook: Option<String>,
        /// Stop sending this group's alerts to a webhook.
        #[arg(long, requires = "group")]
        no_webhook: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Grant a technician the device groups they see and reach (admins always see all; a
    /// technician without any grant sees no device). Without --group or --all-groups, lists
    /// the grants.
    Grant {
        #[arg(long)]
        technician: String,
        #[arg(long, conflicts_with = "all_groups")]
        group: Option<String>,
        /// Every device group, present and future.
        #[arg(long)]
        all_groups: bool,
        /// Withdraw the group (or the all-groups grant) instead.
        #[arg(long)]
        remove: bool,
    },
    /// Revoke every certificate of a device or a technician, or one certificate by serial: a
    /// running relay disconnects it within a second and refuses it from then on (it must be
    /// enrolled again with a new token).
    Revoke {
        /// Device id or hostname.
        #[arg(long, group = "target")]
        device: Option<String>,
        /// Technician name.
        #[arg(long, group = "target")]
        technician: Option<String>,
        /// One certificate's serial number, in hex (see tether-relay certificates).
        #[arg(long, group = "target", value_name = "HEX")]
        serial: Option<String>,
        /// Why (kept with the revocation).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List the certificates issued to devices and technicians, with their serials and
    /// whether they are revoked.
    Certificates {
        /// Only this device (id or hostname).
        #[arg(long, conflicts_with = "technician")]
        device: Option<String>,
        /// Only this technician.
        #[arg(long)]
        technician: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the store's consistency (safe while the relay runs); exit 1 if damaged.
    Check,
    /// Run the relay.
    Serve {
        #[arg(long, default_value = "0.0.0.0:4433")]
        listen: SocketAddr,
        /// Close connections that have not said hello within this time.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        hello_timeout: Duration,
        /// New connections per second allowed from one address (more are refused).
        #[arg(long, default_value_t = 50.0)]
        conn_rate: f64,
        /// How many new connections one address may open at once (e.g. a NATed office
        /// reconnecting after a relay restart).
        #[arg(long, default_value_t = 200.0)]
        conn_burst: f64,
    },
}

/// The data directory at `data`, which `tether-relay init` must have made.
fn initialized(data: &std::path::Path) -> Result<DataDir> {
    let dd = DataDir::new(data);
    if !dd.is_initialized() {
        bail!(
            "{} is not a relay data directory (run tether-relay init, or pass --data)",
            data.display()
        );
    }
    Ok(dd)
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: tether_protocol::identity::IdentityError| e.to_string())
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

/// The store `--store` names, else the SQLite file in the data directory.
fn store_url(store: &Option<String>, dd: &DataDir) -> Result<StoreUrl> {
    match store {
        Some(url) => url.parse().context("--store"),
        None => Ok(StoreUrl::in_data_dir(dd)),
    }
}

async fn run(cli: Cli) -> Result<()> {
    let Cli {
        data,
        store: store_arg,
        cmd,
    } = cli;
    match cmd {
        Cmd::Init { name, public_addr } => {
            let dd = DataDir::new(&data);
            if dd.is_initialized() {
                bail!(tether_relay::config::ConfigError::AlreadyInitialized(
                    data.display().to_string()
                ));
            }
            ensure_dir(&data)?;
            let settings = RelaySettings {
                public_addr: public_addr.unwrap_or_else(|| format!("{name}:4433")),
                name,
            };
            let ca = Ca::create(&dd, &settings.name)?;
            ca.issue_server(&dd, &settings.name)?;
            dd.save_settings(&settings)?;
            Store::open(&store_url(&store_arg, &dd)?)
                .await?
                .close()
                .await;
            println!("initialized relay {} in {}", settings.name, data.display());
            println!(
                "CA fingerprint (sha256): {}",
                tether_protocol::token::hex(&ca.fingerprint())
            );
            println!("next: tether-relay serve --data {}", data.display());
        }
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
            let dd = DataDir::new(&data);
            let settings = dd.load_settings()?;
            let kind = if agent {
                validate_name("group", &group)?;
                TokenKind::Agent { group }
            } else {
                let name = technician.context("--technician NAME or --agent is required")?;
                validate_name("technician name", &name)?;
                TokenKind::Technician {
                    name,
                    role: role
                        .context("--role viewer|support|admin is required with --technician")?,
                    replace,
                }
            };
            let store = Store::open(&store_url(&store_arg, &dd)?).await?;
            let relay_addr = relay.unwrap_or(settings.public_addr.clone());
            let created = tether_relay::tokens::create(
                &store,
                &dd,
                &relay_addr,
                &settings.name,
                kind.clone(),
                ttl,
            )
            .await;
            let hint = match &kind {
                TokenKind::Technician { name, role, .. } if *role != Role::Admin => store
                    .technician_grants(name)
                    .await
                    .ok()
                    .filter(|g| g.is_empty())
                    .map(|_| name.clone()),
                _ => None,
            };
            store.close().await;
            let (token, expires) = created?;
            if let Some(name) = hint {
                eprintln!(
                    "note: {name} sees no device until granted groups (tether-relay grant --technician {name} --group GROUP, or --all-groups)"
                );
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"token": token.encode(), "relay": relay_addr, "expires_unix_ms": expires})
                );
            } else {
                println!("{}", token.encode());
                eprintln!(
                    "single-use token for {relay_addr}, valid for {}",
                    tether_protocol::text::duration_words(ttl)
                );
            }
        }
        Cmd::Policy {
            group,
            unattended,
            record_shells,
            allow_root,
            json,
        } => {
            let dd = initialized(&data)?;
            let store = Store::open(&store_url(&store_arg, &dd)?).await?;
            if group.is_some()
                && unattended.is_none()
                && record_shells.is_none()
                && allow_root.is_none()
            {
                bail!(
                    "--group needs --unattended on|off, --record-shells on|off or --allow-root on|off"
                );
            }
            if let Some(group) = &group {
                let on = |flag: &Option<String>| flag.as_deref().map(|f| f == "on");
                let change = tether_relay::group_policy::PolicyChange {
                    group: group.clone(),
                    unattended: on(&unattended),
                    record_shells: on(&record_shells),
                    allow_root: on(&allow_root),
                };
                tether_relay::group_policy::change(&store, "tether-relay policy", &change).await?;
                if !json {
                    if let Some(on) = change.allow_root {
                        println!(
                            "group {group}: root sessions {}",
                            if on {
                                "ALLOWED (technicians may ask for --as-root; the user sees it in the prompt)"
                            } else {
                                "off (shells, commands and files run as the desktop user)"
                            }
                        );
                    }
                    if let Some(on) = change.record_shells {
                        println!(
                            "group {group}: shell transcripts {}",
                            if on {
                                format!("ON (kept in {})", dd.transcripts().display())
                            } else {
                                "off".to_string()
                            }
                        );
                    }
                    if let Some(on) = change.unattended {
                        println!(
                            "group {group}: unattended access {}",
                            if on {
                                "ON for admins (sessions start without the user's approval; still audited and shown)"
                            } else {
                                "off (the user approves every session)"
                            }
                        );
                    }
                }
            }
            let rows = store.policies().await?;
            store.close().await;
            if json {
                let rows: Vec<_> = rows
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "group": p.group,
                            "unattended": p.unattended,
                            "record_shells": p.record_shells,
                            "allow_root": p.allow_root,
                            "updated_unix_ms": p.updated_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if group.is_none() {
                println!(
                    "{:<24} {:<11} {:<14} ALLOW ROOT",
                    "GROUP", "UNATTENDED", "RECORD SHELLS"
                );
                let word = |on: bool| if on { "on" } else { "off" };
                for p in rows {
                    println!(
                        "{:<24} {:<11} {:<14} {}",
                        p.group,
                        word(p.unattended),
                        word(p.record_shells),
                        word(p.allow_root)
                    );
                }
            }
        }
        Cmd::AlertsPolicy {
            group,
            disk_percent,
            memory_percent,
            memory_for,
            memory_minutes,
            silent_after,
            silent_minutes,
            webhook,
            no_webhook,
            json,
        } => {
            use tether_relay::alerts::{PolicyChange, change_policy, policy_json};
            let dd = initialized(&data)?;
            let minutes = |m: Option<u64>| m.map(|m| Duration::from_secs(m.saturating_mul(60)));
            let store = Store::open(&store_url(&store_arg, &dd)?).await?;
            let result = async {
                let mut rows = store.alert_policies().await?;
                if let Some(group) = &group {
                    validate_name("group", group)?;
                    let change = PolicyChange {
                        group: group.clone(),
                        disk_percent,
                        memory_percent,
                        memory_for: memory_for.or(minutes(memory_minutes)),
                        silent_after: silent_after.or(minutes(silent_minutes)),
                        webhook: if no_webhook {
                            Some(None)
                        } else {
                            webhook.map(Some)
                        },
                    };
                    let p = if change.is_empty() {
                        rows.into_iter()
                            .find(|p| &p.group == group)
                            .unwrap_or_else(|| tether_relay::store::AlertPolicy::defaults(group))
                    } else {
                        let p = change_policy(&store, &change).await?;
                        tracing::info!(group, "alert policy changed");
                        p
                    };
                    rows = vec![p];
                }
                anyhow::Ok(rows)
            }
            .await;
            store.close().await;
            let rows = result?;
            if json {
                let v: Vec<_> = rows.iter().map(policy_json).collect();
                let v = if group.is_some() {
                    v.into_iter().next().unwrap_or_default()
                } else {
                    serde_json::Value::Array(v)
                };
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<20} {:>5} {:>7} {:>10} {:>12}  WEBHOOK",
                    "GROUP", "DISK", "MEMORY", "MEMORY FOR", "SILENT AFTER"
                );
                for p in rows {
                    let t = &p.thresholds;
                    println!(
                        "{:<20} {:>4}% {:>6}% {:>10} {:>12}  {}",
                        p.group,
                        t.disk_percent,
                        t.memory_percent,
                        humantime::format_duration(t.memory_for).to_string(),
                        humantime::format_duration(t.silent_after).to_string(),
                        p.webhook.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        Cmd::Grant {
            technician,
            group,
            all_groups,
            remove,
        } => {
            let dd = initialized(&data)?;
            validate_name("technician name", &technician)?;
            if remove && group.is_none() && !all_groups {
                bail!("--remove needs --group GROUP or --all-groups");
            }
            let store = Store::open(&store_url(&store_arg, &dd)?).await?;
            let role = match store
                .technician_role(&technician, tether_relay::store::now_ms())
                .await
            {
                Ok(Some(role)) => role,
                Ok(None) => {
                    store.close().await;
                    bail!(
                        "no technician named {technician} is enrolled or invited (tether-relay token --technician {technician} --role ROLE); nothing granted"
                    );
                }
                Err(e) => {
                    store.close().await;
                    return Err(e.into());
                }
            };
            let result = async {
                let target = match (&group, all_groups) {
                    (Some(g), _) => {
                        validate_name("group", g)?;
                        Some(g.as_str())
                    }
                    (None, true) => Some(tether_relay::store::ALL_GROUPS),
                    (None, false) => None,
                };
                if let Some(target) = target {
                    store
                        .grant_group(&technician, target, !remove, tether_relay::store::now_ms())
                        .await?;
                    tracing::info!(
                        technician,
                        group = target,
                        granted = !remove,
                        "technician groups changed"
                    );
                }
                anyhow::Ok(store.technician_grants(&technician).await?)
            }
            .await;
            store.close().await;
            let grants = result?;
            if role == "admin" {
                println!(
                    "{technician} is an admin: admins see every device group whatever their grants"
                );
            } else if grants.all_groups {
                println!("{technician} sees every device group (all-groups grant)");
                if !grants.groups.is_empty() {
                    println!(
                        "also granted one by one (kept if --all-groups is withdrawn): {}",
                        grants.groups.join(", ")
                    );
                }
            } else if grants.groups.is_empty() {
                println!("{technician} sees no device (no grants; admins see every group)");
            } else {
                println!("{technician} sees groups: {}", grants.groups.join(", "));
            }
        }
        Cmd::Revoke {
            device,
            technician,
            serial,
            reason,
        } => {
            use tether_relay::store::{RevokeOutcome, RevokeTarget};
            let dd = initialized(&data)?;
            let store = Store::open(&store_url(&store_arg, &dd)?).await?;
            // A device by the rules technicians' requests follow (ids win; a shared or id-shaped
            // hostname is refused with the candidates), then revoked by its id only.
            let device = match device {
                Some(q) => {
                    match tether_relay::tech::pick_device(&store.list_devices().await?, &q) {
                        Ok(d) => Some(d.id.clone()),
                        Err(tether_relay::tech::Unresolved::NotFound(_)) => Some(q),
                        Err(e) => {
                            store.close().await;
                            bail!("{}; nothing revoked", e.message());
                        }
                    }
                }
                None => None,
            };
            let target = match (&device, &technician, &serial) {
                (Some(d), _, _) => RevokeTarget::Device(d),
                (_, Some(t), _) => RevokeTarget::Technician(t),
                (_, _, Some(s)) => {
                    if tether_relay::store::normalize_serial(s).is_none() {
                        bail!("--serial takes the certificate's serial number in hex");
                    }
                    RevokeTarget::Serial(s)
                }
                _ => bail!("give --device ID, --technician NAME or --serial HEX"),
            };
            let revoked = store
                .revoke(target, &reason, tether_relay::store::now_ms())
                .await;
            store.close().await;
            match revoked? {
                RevokeOutcome::Revoked { subject, serials } => {
                    tracing::info!(subject, ?serials, "certificates revoked");
                    if serials.is_empty() {
                        println!("{subject}: every certificate was already revoked");
                    } else {
                        println!(
                            "revoked {subject} (serials {}); a running relay disconnects it within a second",
                            serials.join(", ")
                        );
                    }
                }
                RevokeOutcome::NotFound => match target {
                    RevokeTarget::Device(_) => bail!("no such device (see tether devices)"),
                    RevokeTarget::Technician(_) => {
                        bail!("no such technician (see tether-relay certificates)")
                    }
                    RevokeTarget::Serial(_) => bail!(
                        "no certificate with that serial was issued by this relay (see tether-relay certificates)"
                    ),
                },
                RevokeOutcome::Ambiguous(ids) => bail!(
                    "{} devices have that hostname ({}); use the device id",
                    ids.len(),
                    ids.join(", ")
                ),
            }
        }
        Cmd::Certificates {
            device,
            technician,
            json,
        } => {
            let dd = initialized(&data)?;
            let store = Store::open(&store_url(&store_arg, &dd)?).await?;
            let rows = store
                .certificates(device.as_deref(), technician.as_deref())
                .await;
            store.close().await;
            let rows = rows?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "serial": c.serial,
                            "subject": c.subject,
                            "detail": c.detail,
                            "issued_unix_ms": c.issued_at,
                            "revoked_unix_ms": c.revoked_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<34} {:<46} {:<10} STATUS",
                    "SERIAL", "SUBJECT", "ROLE/GROUP"
                );
                for c in rows {
                    println!(
                        "{:<34} {:<46} {:<10} {}",
                        c.serial,
                        c.subject,
                        c.detail,
                        if c.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "valid"
                        }
                    );
                }
            }
        }
        Cmd::Check => {
            let dd = initialized(&data)?;
            let store = Store::open(&store_url(&store_arg, &dd)?).await?;
            let problems = store.integrity_problems().await?;
            store.close().await;
            if !problems.is_empty() {
                bail!("store damaged: {}", problems.join("; "));
            }
            println!("store intact: {}", store_url(&store_arg, &dd)?);
        }
        Cmd::Serve {
            listen,
            hello_timeout,
            conn_rate,
            conn_burst,
        } => {
            let dd = DataDir::new(&data);
            let relay = Relay::start(
                &dd,
                ServeOptions {
                    timeouts: Timeouts {
                        hello: hello_timeout,
                        ..Timeouts::default()
                    },
                    admission: tether_relay::admission::Limits {
                        rate: conn_rate.max(0.1),
                        burst: conn_burst.max(1.0),
                    },
                    store: Some(store_url(&store_arg, &dd)?),
                    ..ServeOptions::new(listen)
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
        }
    }
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
