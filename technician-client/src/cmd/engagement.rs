//! `tether say` and `tether end`: talking to the user at a device, and ending an engagement
//! there (so the next session asks the user again).

use super::{CmdError, call, using};
use crate::outln;
use crate::relay::Session;
use std::path::Path;
use std::time::Duration;

/// `tether say DEVICE TEXT [--wait D] [--json]`: shows the message, prints the reply.
pub async fn say(
    dir: &Path,
    device: &str,
    text: &str,
    wait: Duration,
    json: bool,
) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
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

/// `tether end DEVICE [--ticket T] [--json]`.
pub async fn end(dir: &Path, device: &str, ticket: &str, json: bool) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
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
