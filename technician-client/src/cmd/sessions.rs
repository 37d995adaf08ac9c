//! `tether sessions`, `report` and `notes`: the audit trail of support sessions, read and
//! annotated.

use super::{CmdError, call, print_json, since_ms};
use crate::{out, outln, output};
use std::path::Path;
use std::time::Duration;

/// The audit trail: who asked which machine for what, the decision, times, bytes, notes.
#[derive(clap::Args)]
pub struct SessionsArgs {
    #[arg(long)]
    pub device: Option<String>,
    /// Admins only: another technician's sessions.
    #[arg(long)]
    pub technician: Option<String>,
    /// How far back (e.g. 7d, 12h).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub since: Duration,
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    #[arg(long)]
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

/// Sessions per technician: approvals, denials, time spent, the users' ratings.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// How far back (e.g. 30d).
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub since: Duration,
    #[arg(long)]
    pub json: bool,
}

/// `tether report [--since D] [--json]`.
pub async fn report(dir: &Path, a: ReportArgs) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let since = a.since;
    let rows = call(&creds, async |s| s.report(since_ms(since)).await).await?;
    if a.json {
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

/// Add resolution notes to one of your sessions.
#[derive(clap::Args)]
pub struct NotesArgs {
    pub session: String,
    pub text: String,
}

/// `tether notes SESSION TEXT`.
pub async fn notes(dir: &Path, a: NotesArgs) -> Result<(), CmdError> {
    let creds = super::credentials(dir)?;
    let (id, text) = (a.session.as_str(), a.text.as_str());
    call(&creds, async |s| s.add_notes(id, text).await).await?;
    outln!("notes added to session {id}");
    Ok(())
}
