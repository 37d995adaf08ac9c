//! Who holds which certificate, revocation, and which device groups a technician may reach
//! (see migrations/sqlite/0009_identity_certificates.sql and 0010_identity_all_groups.sql).
//!
//! Every certificate the CA issues is recorded here before it is handed out, so the relay knows
//! all of an identity's certificates, not only the latest: revoking the identity revokes them
//! all, and a certificate the store does not know is refused like a revoked one.

/// The grant row that stands for "every device group" (no group name can be `*`).
pub const ALL_GROUPS: &str = "*";

/// What the relay thinks of a certificate serial presented at connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    Valid,
    Revoked,
    /// Never recorded: a certificate overwritten by a re-enrollment before every serial was
    /// kept, or one this relay did not issue through enrollment. Refused.
    Unknown,
}

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRow {
    pub serial: String,
    /// `device:<id>` or `tech:<name>`.
    pub subject: String,
    /// The group or role written into it.
    pub detail: String,
    pub issued_at: i64,
    pub revoked_at: Option<i64>,
}

/// What to revoke.
#[derive(Debug, Clone, Copy)]
pub enum RevokeTarget<'a> {
    /// Every certificate of a device, by id or (unique) hostname.
    Device(&'a str),
    /// Every certificate of a technician.
    Technician(&'a str),
    /// One certificate, by serial (hex, any case, colons allowed).
    Serial(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// `subject` and the serials revoked by this call (already revoked ones are not listed).
    Revoked {
        subject: String,
        serials: Vec<String>,
    },
    NotFound,
    /// A hostname shared by several devices.
    Ambiguous(Vec<String>),
}

/// A technician token without `--replace` met a name that holds a valid certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyEnrolled;

/// A technician's device-group grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Granted every group (`tether-relay grant --all-groups`).
    pub all_groups: bool,
    /// Groups granted one by one.
    pub groups: Vec<String>,
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        !self.all_groups && self.groups.is_empty()
    }
}

/// A serial as the store keeps it: lower-case hex without separators. `None` if it is not hex.
pub fn normalize_serial(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (!hex.is_empty() && hex.len() <= 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_normalized() {
        assert_eq!(normalize_serial("0A:bC:12").as_deref(), Some("0abc12"));
        assert_eq!(normalize_serial("zz"), None);
        assert_eq!(normalize_serial(""), None);
        assert_eq!(normalize_serial(&"a".repeat(65)), None);
    }
}
