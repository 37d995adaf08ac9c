//! `tether sessions`, `report` and `notes`: the audit trail of support sessions, read and
//! annotated.

use super::{CmdError, call, print_json, since_ms};
use crate::{out, outln, output};
use std::path::Path;
use std::time::Duration;

/// Which sessions `tether sessions` lists, and how.
pub struct SessionsArgs {
    pub device: Option<String>,
    /// Admins only: another technician's sessions.
    pub technician: Option<String>,
    pub since: Duration,
    pub json: bool,
    pub csv: bool,
}

/// `tether sessions [--device D] [--technician T] [--since D] [--json|--csv]`.
pub async fn sessions(dir: &Path, a: SessionsArgs) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let (device, technician) = (a.device, a.technician);
    let rows = call(&creds, async |s| {
        s.sessions(device, technician, since_ms(a.since)).await
    })
    .await?;
    if a.json {
        print_json(&output::sessions_json(&rows));
    } else if a.csv {
        out!("{}", output::sessions_csv(&rows));
    } else if rows.is_empty() {
        outln!(
            "no sessions in the last {}",
            humantime::format_duration(a.since)
        );
    } else {
        out!("{}", output::sessions_table(&rows));
    }
    Ok(())
}

/// `tether report [--since D] [--json]`.
pub async fn report(dir: &Path, since: Duration, json: bool) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let rows = call(&creds, async |s| s.report(since_ms(since)).await).await?;
    if json {
        print_json(&output::report_json(&rows));
    } else if rows.is_empty() {
        outln!(
            "no sessions in the last {}",
            humantime::format_duration(since)
        );
    } else {
        out!("{}", output::report_table(&rows));
    }
    Ok(())
}

/// `tether notes SESSION TEXT`.
pub async fn notes(dir: &Path, id: &str, text: &str) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    call(&creds, async |s| s.add_notes(id, text).await).await?;
    outln!("notes added to session {id}");
    Ok(())
}
