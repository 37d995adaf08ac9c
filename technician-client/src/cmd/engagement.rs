//! `tether say` and `tether end`: talking to the user at a device, and ending an engagement
//! there (so the next session asks the user again).

use super::{CmdError, call, using};
use crate::outln;
use crate::relay::Session;
use std::path::Path;
use std::time::Duration;

/// Show a short message to the user at a device (by their tray app) and print their reply.
#[derive(clap::Args)]
pub struct SayArgs {
    pub device: String,
    pub text: String,
    /// How long to wait for the reply (5 s to 10 min).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    #[arg(long)]
    pub json: bool,
}

/// `tether say DEVICE TEXT [--wait D] [--json]`: shows the message, prints the reply.
pub async fn say(dir: &Path, a: SayArgs) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let (device, text, wait, json) = (a.device.as_str(), a.text.as_str(), a.wait, a.json);
    let line = format!(
        "message shown on {device}; waiting up to {} for a reply…",
        humantime::format_duration(wait)
    );
    let session = Session::open(&creds)
        .await?
        .on_asking(move || eprintln!("{line}"));
    let reply = using(session, async |s| s.say(device, text, wait).await).await?;
    if json {
        outln!(
            "{}",
            crate::safe::json_line(&serde_json::json!({ "reply": reply }))
        );
    } else {
        match reply {
            Some(r) => outln!("{}", tether_protocol::text::clean(&r, 1000)),
            None => eprintln!("no reply (the user closed the message or did not answer)"),
        }
    }
    Ok(())
}

/// You are done on a device: end your engagement for the ticket, so your next session there
/// asks the user again (and the user is asked to rate this visit).
#[derive(clap::Args)]
pub struct EndArgs {
    pub device: String,
    /// The ticket the engagement is for (empty: the one without a ticket).
    #[arg(long, default_value = "")]
    pub ticket: String,
    #[arg(long)]
    pub json: bool,
}

/// `tether end DEVICE [--ticket T] [--json]`.
pub async fn end(dir: &Path, a: EndArgs) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let (device, ticket, json) = (a.device.as_str(), a.ticket.as_str(), a.json);
    let ended = call(&creds, async |s| s.end_engagement(device, ticket).await).await?;
    let for_ticket = if ticket.is_empty() {
        "without a ticket".to_string()
    } else {
        format!("for ticket {}", tether_protocol::text::clean(ticket, 64))
    };
    if json {
        outln!(
            "{}",
            crate::safe::json_line(&serde_json::json!({ "ended": ended }))
        );
    } else if ended {
        outln!("ended your engagement on {device} {for_ticket}; the user is asked to rate it");
    } else {
        outln!("no engagement of yours was open on {device} {for_ticket}");
    }
    Ok(())
}
