//! Failed services on Windows: services set to start automatically that are not running and
//! exited with an error (what the Services console shows as stopped after a failure), from WMI's
//! `Win32_Service`.

use serde::Deserialize;
use std::time::Duration;
use tether_protocol::health::FailedUnit;

/// How long the WMI query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(rename = "Win32_Service")]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub state: Option<String>,
    pub start_mode: Option<String>,
    pub exit_code: Option<u32>,
}

/// The failed ones among `services`.
pub fn failed(services: Vec<Service>) -> Vec<FailedUnit> {
    services
        .into_iter()
        .filter(|s| {
            s.start_mode.as_deref() == Some("Auto")
                && s.state.as_deref() != Some("Running")
                && s.exit_code.is_some_and(|c| c != 0)
        })
        .filter_map(|s| {
            Some(FailedUnit {
                name: s.name?.chars().take(256).collect(),
                description: s
                    .display_name
                    .unwrap_or_default()
                    .chars()
                    .take(256)
                    .collect(),
            })
        })
        .collect()
}

fn query() -> Result<Vec<Service>, wmi::WMIError> {
    let wmi = wmi::WMIConnection::new()?;
    wmi.raw_query(
        "SELECT Name, DisplayName, State, StartMode, ExitCode FROM Win32_Service WHERE StartMode = 'Auto'",
    )
}

/// Failed services, or `None` (with the reason in `errors`) when WMI cannot say.
pub async fn failed_units(errors: &mut Vec<String>) -> Option<Vec<FailedUnit>> {
    let task = tokio::task::spawn_blocking(query);
    match tokio::time::timeout(QUERY_TIMEOUT, task).await {
        Ok(Ok(Ok(services))) => Some(failed(services)),
        Ok(Ok(Err(e))) => {
            errors.push(format!("WMI Win32_Service: {e}"));
            None
        }
        Ok(Err(e)) => {
            errors.push(format!("WMI Win32_Service: {e}"));
            None
        }
        Err(_) => {
            errors.push(format!(
                "WMI Win32_Service: no answer within {} s",
                QUERY_TIMEOUT.as_secs()
            ));
            None
        }
    }
}
