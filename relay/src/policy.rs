//! Session policy: whether a technician's request becomes a signed grant, as a pure function of
//! the facts the broker gathers first (the role, the device and whether it is online, its group's
//! policy, the time). No I/O here, so the whole role × request × policy matrix is tested in
//! memory; the broker (`broker.rs`) reads the facts, records the decision and does the wire work.

use tether_protocol::decision::Decision;
use tether_protocol::identity::Role;
use tether_protocol::message::{ErrorCode, SessionRequest, may_start_session};
use tether_protocol::session::{Activity, GRANT_TTL_MS, SessionGrant};
use tether_protocol::text;

/// A device group's policy, as the store holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupPolicy {
    /// Admins may start sessions without asking the user.
    pub unattended: bool,
    /// Sessions may run commands and file access as root.
    pub allow_root: bool,
    /// Shells are recorded. `None`: the store could not say; a shell is then refused rather
    /// than run unrecorded.
    pub record_shells: Option<bool>,
}

/// The device a request is for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub group: &'a str,
    /// It has a live connection to this relay.
    pub online: bool,
}

/// Why a request does not become a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("role {0} may not start sessions (support or admin needed)")]
    Role(Role),
    #[error("device {0} is offline")]
    Offline(String),
    #[error(
        "running as root is not allowed on device {hostname} (group {group}); an admin can allow it with `tether policy --group {group} --allow-root on`"
    )]
    RootNotAllowed { hostname: String, group: String },
    #[error(
        "group runs need unattended access: device {hostname} is in group {group}, where it is off (or you are not an admin)"
    )]
    BatchNeedsUnattended { hostname: String, group: String },
    #[error("relay store unavailable")]
    StoreUnavailable,
}

impl Refusal {
    /// What the technician's client is told.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::Role(_) | Refusal::RootNotAllowed { .. } => ErrorCode::Forbidden,
            Refusal::BatchNeedsUnattended { .. } => ErrorCode::Forbidden,
            Refusal::Offline(_) => ErrorCode::Offline,
            Refusal::StoreUnavailable => ErrorCode::Internal,
        }
    }

    /// What the audit trail records.
    pub fn decision(&self) -> Decision {
        match self {
            Refusal::Role(_) | Refusal::RootNotAllowed { .. } => Decision::Denied,
            Refusal::BatchNeedsUnattended { .. } => Decision::Denied,
            Refusal::Offline(_) | Refusal::StoreUnavailable => Decision::Failed,
        }
    }

    /// The audit record's detail (the device is already on the record).
    pub fn detail(&self) -> String {
        match self {
            Refusal::Offline(_) => "device offline".into(),
            other => other.to_string(),
        }
    }
}

/// Decides `req` (its activity already checked against its permissions) from `technician` with
/// `role`, for `device` under `policy`, at `now_ms`: the grant to sign, or why not. Checks run
/// in the order a technician can act on: their role, the device being there, root, group runs,
/// the recording duty.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    technician: &str,
    role: Role,
    req: &SessionRequest,
    activity: Activity,
    device: Target<'_>,
    policy: GroupPolicy,
    session_id: &str,
    now_ms: i64,
) -> Result<SessionGrant, Refusal> {
    if !may_start_session(role) {
        return Err(Refusal::Role(role));
    }
    if !device.online {
        return Err(Refusal::Offline(device.hostname.to_string()));
    }
    // Unattended access needs both the group's policy and the admin role; the agent checks the
    // role again.
    let unattended = role == Role::Admin && policy.unattended;
    // Root is the one permission that lifts the limits of the desktop user's account: only where
    // an admin allowed it for the group (and the agent runs as root only when the grant says so).
    if req.permissions.root && !policy.allow_root {
        return Err(Refusal::RootNotAllowed {
            hostname: device.hostname.to_string(),
            group: device.group.to_string(),
        });
    }
    if req.batch && !unattended {
        return Err(Refusal::BatchNeedsUnattended {
            hostname: device.hostname.to_string(),
            group: device.group.to_string(),
        });
    }
    // Recording is an audit duty: without the policy, refuse rather than not record.
    let record_shell = match (req.permissions.shell, policy.record_shells) {
        (false, _) => false,
        (true, Some(on)) => on,
        (true, None) => return Err(Refusal::StoreUnavailable),
    };
    Ok(SessionGrant {
        session_id: session_id.to_string(),
        device_id: device.id.to_string(),
        technician: technician.to_string(),
        role,
        permissions: req.permissions,
        reason: text::clean(&req.reason, 256),
        ticket: text::clean(&req.ticket, 64),
        issued_at_unix_ms: now_ms,
        expires_at_unix_ms: now_ms + GRANT_TTL_MS,
        unattended,
        record_shell,
        activity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_protocol::session::Permissions;

    const ROLES: [Role; 3] = [Role::Viewer, Role::Support, Role::Admin];

    fn request(permissions: Permissions, batch: bool) -> SessionRequest {
        SessionRequest {
            device: "pc-1".into(),
            permissions,
            reason: "printer\u{202e} jam".into(),
            ticket: "T-1".into(),
            batch,
            activity: Activity::for_permissions(permissions),
        }
    }

    fn device(online: bool) -> Target<'static> {
        Target {
            id: "dev-1",
            hostname: "pc-1",
            group: "lab",
            online,
        }
    }

    fn run(
        role: Role,
        req: &SessionRequest,
        online: bool,
        policy: GroupPolicy,
    ) -> Result<SessionGrant, Refusal> {
        decide(
            "ana",
            role,
            req,
            req.activity.clone(),
            device(online),
            policy,
            "s-1",
            1_000,
        )
    }

    fn policies() -> Vec<GroupPolicy> {
        let mut all = Vec::new();
        for unattended in [false, true] {
            for allow_root in [false, true] {
                for record_shells in [None, Some(false), Some(true)] {
                    all.push(GroupPolicy {
                        unattended,
                        allow_root,
                        record_shells,
                    });
                }
            }
        }
        all
    }

    fn permission_sets() -> Vec<Permissions> {
        let shell = Permissions {
            shell: true,
            ..Permissions::VIEW
        };
        let root = Permissions {
            root: true,
            ..shell
        };
        let files = Permissions {
            files: true,
            ..Permissions::VIEW
        };
        vec![Permissions::VIEW, Permissions::FULL, shell, root, files]
    }

    /// Every role × permissions × batch × online × policy: the one expected answer, written
    /// out rule by rule.
    #[test]
    fn the_whole_matrix_decides_as_the_rules_say() {
        let mut granted = 0;
        for role in ROLES {
            for permissions in permission_sets() {
                for batch in [false, true] {
                    for online in [false, true] {
                        for policy in policies() {
                            let req = request(permissions, batch);
                            let got = run(role, &req, online, policy);
                            let unattended = role == Role::Admin && policy.unattended;
                            let want = if role == Role::Viewer {
                                Err(Refusal::Role(role))
                            } else if !online {
                                Err(Refusal::Offline("pc-1".into()))
                            } else if permissions.root && !policy.allow_root {
                                Err(Refusal::RootNotAllowed {
                                    hostname: "pc-1".into(),
                                    group: "lab".into(),
                                })
                            } else if batch && !unattended {
                                Err(Refusal::BatchNeedsUnattended {
                                    hostname: "pc-1".into(),
                                    group: "lab".into(),
                                })
                            } else if permissions.shell && policy.record_shells.is_none() {
                                Err(Refusal::StoreUnavailable)
                            } else {
                                Ok((
                                    unattended,
                                    permissions.shell && policy.record_shells == Some(true),
                                ))
                            };
                            let got_short = got
                                .as_ref()
                                .map(|g| (g.unattended, g.record_shell))
                                .map_err(Clone::clone);
                            assert_eq!(
                                got_short, want,
                                "{role} {permissions:?} batch={batch} online={online} {policy:?}"
                            );
                            if let Ok(g) = got {
                                granted += 1;
                                assert_eq!(g.permissions, permissions);
                                assert_eq!(g.role, role);
                                assert_eq!(g.device_id, "dev-1");
                                assert_eq!(g.expires_at_unix_ms, 1_000 + GRANT_TTL_MS);
                            }
                        }
                    }
                }
            }
        }
        assert!(granted > 0);
    }

    #[test]
    fn refusals_map_to_codes_decisions_and_audit_details() {
        let offline = Refusal::Offline("pc-1".into());
        assert_eq!(offline.to_string(), "device pc-1 is offline");
        assert_eq!(offline.detail(), "device offline");
        assert_eq!(offline.code(), ErrorCode::Offline);
        assert_eq!(offline.decision(), Decision::Failed);
        let role = Refusal::Role(Role::Viewer);
        assert_eq!(
            role.to_string(),
            "role viewer may not start sessions (support or admin needed)"
        );
        assert_eq!(role.code(), ErrorCode::Forbidden);
        assert_eq!(role.decision(), Decision::Denied);
        assert_eq!(Refusal::StoreUnavailable.code(), ErrorCode::Internal);
    }

    #[test]
    fn the_grant_carries_the_request_cleaned() {
        let req = request(Permissions::FULL, false);
        let g = run(Role::Support, &req, true, GroupPolicy::default()).unwrap();
        assert_eq!(g.reason, "printer jam");
        assert_eq!(g.ticket, "T-1");
        assert_eq!(g.technician, "ana");
        assert_eq!(g.session_id, "s-1");
        assert!(!g.unattended);
    }
}
