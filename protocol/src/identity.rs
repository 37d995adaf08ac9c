//! Who a peer is: a device or a technician, and how that is written into its certificate.
//!
//! The relay's CA writes the identity into the subject of every certificate it issues
//! (`CN=device:<id>, OU=<group>` or `CN=tech:<name>, OU=<role>`), so any relay holding the CA
//! can authenticate a peer from its certificate alone.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Reads devices and inventory.
    Viewer,
    /// Also starts support sessions (with the user's consent).
    Support,
    /// Also manages tokens and policy, and may use unattended access where policy allows.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Support => "support",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "support" => Ok(Role::Support),
            "admin" => Ok(Role::Admin),
            other => Err(IdentityError::BadRole(other.chars().take(32).collect())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Identity {
    Device { id: String, group: String },
    Technician { name: String, role: Role },
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IdentityError {
    #[error("unknown role {0:?} (expected viewer, support or admin)")]
    BadRole(String),
    #[error(
        "invalid {what} {value:?}: use 1 to 64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit"
    )]
    BadName { what: &'static str, value: String },
    #[error("certificate subject is not a Tether identity")]
    NotTether,
}

const DEVICE_PREFIX: &str = "device:";
const TECH_PREFIX: &str = "tech:";
pub const MAX_NAME: usize = 64;

/// Checks a technician name, group name or device id.
pub fn validate_name(what: &'static str, value: &str) -> Result<(), IdentityError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadName {
            what,
            value: value.chars().take(MAX_NAME + 1).collect(),
        })
    }
}

impl Identity {
    /// The certificate subject's common name.
    pub fn common_name(&self) -> String {
        match self {
            Identity::Device { id, .. } => format!("{DEVICE_PREFIX}{id}"),
            Identity::Technician { name, .. } => format!("{TECH_PREFIX}{name}"),
        }
    }

    /// The certificate subject's organizational unit: the device group or technician role.
    pub fn org_unit(&self) -> String {
        match self {
            Identity::Device { group, .. } => group.clone(),
            Identity::Technician { role, .. } => role.to_string(),
        }
    }

    /// Parses the identity back from a certificate's subject.
    pub fn from_subject(cn: &str, ou: &str) -> Result<Self, IdentityError> {
        if let Some(id) = cn.strip_prefix(DEVICE_PREFIX) {
            validate_name("device id", id)?;
            validate_name("group", ou)?;
            Ok(Identity::Device {
                id: id.to_string(),
                group: ou.to_string(),
            })
        } else if let Some(name) = cn.strip_prefix(TECH_PREFIX) {
            validate_name("technician name", name)?;
            Ok(Identity::Technician {
                name: name.to_string(),
                role: ou.parse()?,
            })
        } else {
            Err(IdentityError::NotTether)
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Device { id, group } => write!(f, "device {id} (group {group})"),
            Identity::Technician { name, role } => write!(f, "technician {name} ({role})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_roundtrip() {
        for id in [
            Identity::Device {
                id: "3f2a".into(),
                group: "default".into(),
            },
            Identity::Technician {
                name: "ana@helpdesk".into(),
                role: Role::Support,
            },
        ] {
            assert_eq!(
                Identity::from_subject(&id.common_name(), &id.org_unit()).unwrap(),
                id
            );
        }
    }

    #[test]
    fn rejects_bad_names_and_foreign_subjects() {
        assert!(validate_name("group", "").is_err());
        assert!(validate_name("group", "-x").is_err());
        assert!(validate_name("group", "a b").is_err());
        assert!(validate_name("group", "a\u{1b}[31m").is_err());
        assert!(validate_name("group", &"a".repeat(65)).is_err());
        assert!(validate_name("group", "servers-eu.1").is_ok());
        assert_eq!(
            Identity::from_subject("www.example.org", "x"),
            Err(IdentityError::NotTether)
        );
        assert!(Identity::from_subject("tech:ana", "root").is_err());
    }
}
