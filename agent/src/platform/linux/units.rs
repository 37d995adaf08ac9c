//! Service units on Linux (systemd): which ones failed, from `systemctl`, with a deadline.

use std::path::Path;
use std::time::Duration;
use tether_protocol::health::FailedUnit;

/// How long `systemctl` may take.
pub const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(5);

/// Units from `systemctl --failed --plain --no-legend --no-pager`: `UNIT LOAD ACTIVE SUB
/// DESCRIPTION…` per line.
pub fn parse_failed_units(text: &str) -> Vec<FailedUnit> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start_matches(['●', '*', ' ']);
            let mut f = line.split_whitespace();
            let name = f.next()?;
            // LOAD, ACTIVE, SUB; the rest is the description.
            let description = f.skip(3).collect::<Vec<_>>().join(" ");
            Some(FailedUnit {
                name: name.to_string(),
                description,
            })
        })
        .collect()
}

/// Failed units, or `None` when systemd is not running this machine.
pub async fn failed_units(errors: &mut Vec<String>) -> Option<Vec<FailedUnit>> {
    // sd_booted(3): systemd is the init system iff this directory exists.
    if !Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let mut cmd = tokio::process::Command::new("systemctl");
    cmd.args(["--failed", "--plain", "--no-legend", "--no-pager"])
        .env("SYSTEMD_COLORS", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(SYSTEMCTL_TIMEOUT, cmd.output()).await {
        Ok(Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(1 << 20)]);
            Some(parse_failed_units(&text))
        }
        Ok(Ok(out)) => {
            errors.push(format!(
                "systemctl --failed: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            None
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
        Ok(Err(e)) => {
            errors.push(format!("systemctl: {e}"));
            None
        }
        Err(_) => {
            errors.push(format!(
                "systemctl --failed: no answer within {} s",
                SYSTEMCTL_TIMEOUT.as_secs()
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_units_output() {
        let t = "nginx.service  loaded failed failed A high performance web server\n\
                 ● backup.timer loaded failed failed\n\n   \n";
        let u = parse_failed_units(t);
        assert_eq!(
            u,
            vec![
                FailedUnit {
                    name: "nginx.service".into(),
                    description: "A high performance web server".into()
                },
                FailedUnit {
                    name: "backup.timer".into(),
                    description: String::new()
                }
            ]
        );
        assert!(parse_failed_units("").is_empty());
    }
}
