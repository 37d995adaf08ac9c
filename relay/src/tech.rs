//! Requests from technicians: one bidirectional stream per request.

pub use crate::scope::{MIN_ID_PREFIX, Unresolved, pick_device};
pub(crate) use crate::scope::{Scope, resolve};
use crate::state::State;
use crate::store::TokenKind;
use crate::store::{DeviceRow, StoreError, now_ms};
use quinn::{RecvStream, SendStream};
use std::cmp::Ordering;
use std::time::Duration;
use tether_net::framed::{read_msg, write_msg};
use tether_protocol::identity::{Role, validate_name};
use tether_protocol::limits;
use tether_protocol::message::TokenFor;
use tether_protocol::message::{
    ChangeRow, DeviceHistory, DeviceInventory, DeviceSummary, ErrorCode, InventoryRow, SoftwareRow,
    TechRequest, TechResponse, may_read_inventory,
};
use tether_protocol::{text, version};
use tracing::{debug, info, warn};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn handle_stream(
    state: &State,
    name: &str,
    role: Role,
    caps: crate::broker::Caps,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let req: TechRequest =
        match tokio::time::timeout(REQUEST_TIMEOUT, read_msg(&mut recv, limits::CONTROL)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                warn!(technician = name, "bad request: {e}");
                let _ = send.reset(1u32.into());
                return;
            }
            Err(_) => {
                let _ = send.reset(1u32.into());
                return;
            }
        };
    debug!(technician = name, ?req, "request");
    if let TechRequest::OpenSession(req) = req {
        // This stream becomes the session channel.
        crate::broker::open_session(state, name, role, caps, req, send, recv).await;
        return;
    }
    if let TechRequest::Say {
        device,
        text,
        wait_ms,
    } = req
    {
        let peer = crate::broker::Peer {
            send: &mut send,
            caps,
        };
        let resp = crate::broker::say(state, name, role, &device, &text, wait_ms, peer).await;
        if write_msg(&mut send, &resp, limits::CONTROL).await.is_ok() {
            let _ = send.finish();
        }
        return;
    }
    if let TechRequest::EndEngagement { device, ticket } = &req {
        let resp =
            crate::broker::end_engagement(state, name, role, device, ticket, caps.follows).await;
        if write_msg(&mut send, &resp, limits::CONTROL).await.is_ok() {
            let _ = send.finish();
        }
        return;
    }
    let resp = if !may_read_inventory(role) {
        err(
            ErrorCode::Forbidden,
            format!("role {role} may not read devices"),
        )
    } else {
        match answer(state, name, role, req).await {
            Ok(r) => r,
            Err(e) => {
                warn!("store error: {e}");
                err(ErrorCode::Internal, "relay store unavailable".into())
            }
        }
    };
    if let Err(e) = write_msg(&mut send, &resp, limits::BULK).await {
        debug!(technician = name, "reply not delivered: {e}");
        return;
    }
    let _ = send.finish();
}

fn err(code: ErrorCode, message: String) -> TechResponse {
    TechResponse::Error { code, message }
}

async fn answer(
    state: &State,
    name: &str,
    role: Role,
    req: TechRequest,
) -> Result<TechResponse, StoreError> {
    let scope = Scope::of(state, name, role).await?;
    Ok(match req {
        TechRequest::Sessions {
            device,
            technician,
            since_unix_ms,
        } => sessions(state, name, role, &scope, device, technician, since_unix_ms).await?,
        TechRequest::Report { since_unix_ms } => {
            // Like the audit trail: admins see every technician, others themselves.
            let only = (role != Role::Admin).then_some(name);
            TechResponse::Report(state.store.report(since_unix_ms, only).await?)
        }
        TechRequest::AddNotes { session_id, text } => {
            add_notes(state, name, session_id, text).await?
        }
        TechRequest::ListDevices => TechResponse::Devices(
            scope
                .devices(state)
                .await?
                .into_iter()
                .map(|d| summary(state, d))
                .collect(),
        ),
        TechRequest::Inventory { device } => inventory(state, &scope, device).await?,
        TechRequest::InventoryAll => inventory_all(state, &scope).await?,
        TechRequest::Software {
            name: name_q,
            version_below,
        } => software(state, &scope, name_q, version_below).await?,
        TechRequest::CreateToken {
            for_whom,
            ttl_ms,
            relay_addr,
        } => create_token(state, name, role, for_whom, ttl_ms, relay_addr).await?,
        TechRequest::SetPolicy {
            group,
            unattended,
            record_shells,
            allow_root,
        } => {
            set_policy(
                state,
                name,
                role,
                group,
                unattended,
                record_shells,
                allow_root,
            )
            .await?
        }
        TechRequest::OpenSession(_)
        | TechRequest::Say { .. }
        | TechRequest::EndEngagement { .. } => err(ErrorCode::BadRequest, "unexpected".into()),
        TechRequest::Health { device } => {
            let d = match resolve(state, &scope, &device).await? {
                Ok(d) => d,
                Err(e) => return Ok(e),
            };
            crate::alerts::device_health(&state.store, summary(state, d)).await?
        }
        TechRequest::Alerts { all } => match crate::alerts::list(&state.store, all).await? {
            TechResponse::Alerts(mut rows) => {
                rows.retain(|r| scope.allows(&r.group));
                TechResponse::Alerts(rows)
            }
            other => other,
        },
        TechRequest::History {
            device,
            since_unix_ms,
        } => history(state, &scope, device, since_unix_ms).await?,
    })
}

/// The audit trail: admins read everyone's sessions, others their own.
async fn sessions(
    state: &State,
    name: &str,
    role: Role,
    scope: &Scope,
    device: Option<String>,
    technician: Option<String>,
    since_unix_ms: i64,
) -> Result<TechResponse, StoreError> {
    Ok({
        let device_id = match device {
            Some(d) => match resolve(state, scope, &d).await? {
                Ok(d) => Some(d.id),
                Err(e) => return Ok(e),
            },
            None => None,
        };
        // Only admins read everyone's sessions.
        let technician = if role == Role::Admin {
            technician
        } else {
            Some(name.to_string())
        };
        let rows = state
            .store
            .sessions(&crate::store::SessionFilter {
                device_id,
                technician,
                since: since_unix_ms,
            })
            .await?;
        TechResponse::Sessions(rows)
    })
}

/// Resolution notes on one of the technician's own sessions.
async fn add_notes(
    state: &State,
    name: &str,
    session_id: String,
    text: String,
) -> Result<TechResponse, StoreError> {
    Ok({
        let text = text::clean(&text.replace('\n', " "), 4096);
        if text.is_empty() {
            return Ok(err(ErrorCode::BadRequest, "notes are empty".into()));
        }
        if state.store.add_notes(&session_id, name, &text).await? {
            TechResponse::Done
        } else {
            err(
                ErrorCode::NotFound,
                format!(
                    "you have no session {:?} (see tether sessions)",
                    text::clean(&session_id, 64)
                ),
            )
        }
    })
}

/// One device's inventory.
async fn inventory(
    state: &State,
    scope: &Scope,
    device: String,
) -> Result<TechResponse, StoreError> {
    Ok({
        let d = match resolve(state, scope, &device).await? {
            Ok(d) => d,
            Err(e) => return Ok(e),
        };
        match state.store.inventory(&d.id).await? {
            Some((received, inventory)) => TechResponse::Inventory(Box::new(DeviceInventory {
                device: summary(state, d),
                received_unix_ms: received,
                inventory,
            })),
            None => err(
                ErrorCode::NotFound,
                format!(
                    "device {} has not reported an inventory yet (is its agent running?)",
                    d.hostname
                ),
            ),
        }
    })
}

/// Every device's inventory in scope.
async fn inventory_all(state: &State, scope: &Scope) -> Result<TechResponse, StoreError> {
    Ok({
        let mut by_id: std::collections::HashMap<_, _> = state
            .store
            .inventory_summaries()
            .await?
            .into_iter()
            .map(|(id, s, at)| (id, (s, at)))
            .collect();
        TechResponse::InventoryRows(
            scope
                .devices(state)
                .await?
                .into_iter()
                .map(|d| {
                    let inv = by_id.remove(&d.id);
                    InventoryRow {
                        device: summary(state, d),
                        received_unix_ms: inv.as_ref().map(|(_, at)| *at),
                        summary: inv.map(|(s, _)| s),
                    }
                })
                .collect(),
        )
    })
}

/// Which devices have a package (below a version).
async fn software(
    state: &State,
    scope: &Scope,
    name_q: String,
    version_below: Option<String>,
) -> Result<TechResponse, StoreError> {
    Ok({
        let name = text::clean(&name_q, 256);
        if name.is_empty() {
            return Ok(err(ErrorCode::BadRequest, "package name is empty".into()));
        }
        let hits = state.store.software(&name).await?;
        let visible: std::collections::HashSet<String> = scope
            .devices(state)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect();
        TechResponse::Software(
            hits.into_iter()
                .filter(|h| visible.contains(&h.device_id))
                .filter(|h| match &version_below {
                    Some(v) => version::compare(&h.version, v) == Ordering::Less,
                    None => true,
                })
                .map(|h| SoftwareRow {
                    online: state.presence.is_online(&h.device_id),
                    device_id: h.device_id,
                    hostname: h.hostname,
                    name: h.name,
                    version: h.version,
                    arch: h.arch,
                    source: h.source,
                })
                .collect(),
        )
    })
}

/// An enrollment token, for admins.
async fn create_token(
    state: &State,
    name: &str,
    role: Role,
    for_whom: TokenFor,
    ttl_ms: u64,
    relay_addr: Option<String>,
) -> Result<TechResponse, StoreError> {
    Ok({
        if role != Role::Admin {
            return Ok(err(
                ErrorCode::Forbidden,
                "only admins create enrollment tokens".into(),
            ));
        }
        let for_whom_replace = matches!(for_whom, TokenFor::ReplaceTechnician { .. });
        let kind = match for_whom {
            TokenFor::Agent { group } => {
                if let Err(e) = validate_name("group", &group) {
                    return Ok(err(ErrorCode::BadRequest, e.to_string()));
                }
                TokenKind::Agent { group }
            }
            TokenFor::Technician { name: tech, role }
            | TokenFor::ReplaceTechnician { name: tech, role } => {
                if let Err(e) = validate_name("technician name", &tech) {
                    return Ok(err(ErrorCode::BadRequest, e.to_string()));
                }
                TokenKind::Technician {
                    name: tech,
                    role,
                    replace: for_whom_replace,
                }
            }
        };
        let ttl = Duration::from_millis(ttl_ms.clamp(60_000, 30 * 24 * 3_600_000));
        let addr = match relay_addr {
            Some(a)
                if text::is_clean(&a, 255)
                    && a.contains(':')
                    && !a.contains(char::is_whitespace) =>
            {
                a
            }
            Some(_) => {
                return Ok(err(
                    ErrorCode::BadRequest,
                    "relay address must be host:port".into(),
                ));
            }
            // Every live relay sharing the store (this one first): the enrolled side fails
            // over between them.
            None => crate::cluster::relay_addrs(&state.store, &state.me)
                .await
                .join(","),
        };
        info!(admin = name, ?kind, "enrollment token created");
        match crate::tokens::create_for_ca(
            &state.store,
            state.ca.fingerprint(),
            &addr,
            &state.settings.name,
            kind,
            ttl,
        )
        .await
        {
            Ok((token, expires_unix_ms)) => TechResponse::Token {
                token: token.encode(),
                expires_unix_ms,
            },
            Err(e @ crate::tokens::TokenCreateError::AlreadyEnrolled(_)) => {
                err(ErrorCode::BadRequest, e.to_string())
            }
            Err(e) => {
                warn!("creating a token: {e}");
                err(ErrorCode::Internal, "relay cannot create tokens".into())
            }
        }
    })
}

/// A device group's session policy, for admins.
async fn set_policy(
    state: &State,
    name: &str,
    role: Role,
    group: String,
    unattended: Option<bool>,
    record_shells: Option<bool>,
    allow_root: Option<bool>,
) -> Result<TechResponse, StoreError> {
    Ok({
        if role != Role::Admin {
            return Ok(err(
                ErrorCode::Forbidden,
                "only admins change policy".into(),
            ));
        }
        let change = crate::group_policy::PolicyChange {
            group,
            unattended,
            record_shells,
            allow_root,
        };
        match crate::group_policy::change(&state.store, name, &change).await {
            Ok(()) => {}
            Err(crate::group_policy::GroupPolicyError::Name(e)) => {
                return Ok(err(ErrorCode::BadRequest, e.to_string()));
            }
            Err(crate::group_policy::GroupPolicyError::Store(e)) => return Err(e),
        }
        TechResponse::Done
    })
}

/// One device's inventory changes since a time.
async fn history(
    state: &State,
    scope: &Scope,
    device: String,
    since_unix_ms: i64,
) -> Result<TechResponse, StoreError> {
    Ok({
        let d = match resolve(state, scope, &device).await? {
            Ok(d) => d,
            Err(e) => return Ok(e),
        };
        let changes = state
            .store
            .history(&d.id, since_unix_ms)
            .await?
            .into_iter()
            .map(|(at, change)| ChangeRow {
                at_unix_ms: at,
                change,
            })
            .collect();
        TechResponse::History(Box::new(DeviceHistory {
            device: summary(state, d),
            changes,
        }))
    })
}

fn summary(state: &State, d: DeviceRow) -> DeviceSummary {
    let online = state.presence.is_online(&d.id);
    DeviceSummary {
        online,
        last_seen_unix_ms: if online { now_ms() } else { d.last_seen },
        id: d.id,
        hostname: d.hostname,
        group: d.group,
        os: d.os,
        agent_version: d.agent_version,
        first_seen_unix_ms: d.first_seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(id: &str, hostname: &str, group: &str) -> DeviceRow {
        DeviceRow {
            id: id.into(),
            hostname: hostname.into(),
            group: group.into(),
            os: String::new(),
            agent_version: String::new(),
            first_seen: 0,
            last_seen: 0,
        }
    }

    const A: &str = "c8cf1e2a-0000-4000-8000-000000000001";
    const B: &str = "5b3e9f10-0000-4000-8000-000000000002";
    const C: &str = "5b3e0000-0000-4000-8000-000000000003";

    fn ids(r: Result<&DeviceRow, Unresolved>) -> Result<String, Unresolved> {
        r.map(|d| d.id.clone())
    }

    /// Reproduces the review finding: device B named itself like A's id prefix and received
    /// `tether exec c8cf`, meant for A. Ids and id prefixes win.
    #[test]
    fn id_prefixes_win_over_hostnames() {
        let devices = [dev(A, "ws-a", "default"), dev(B, "c8cf", "default")];
        assert_eq!(ids(pick_device(&devices, "c8cf")), Ok(A.into()));
        assert_eq!(ids(pick_device(&devices, "C8CF1E2A")), Ok(A.into()));
        // B's hostname as a full id of A: still A.
        let devices = [dev(A, "ws-a", "default"), dev(B, A, "default")];
        assert_eq!(ids(pick_device(&devices, A)), Ok(A.into()));
    }

    #[test]
    fn a_hostname_shaped_like_an_id_is_not_trusted() {
        let devices = [dev(A, "ws-a", "default"), dev(B, "beef", "lab")];
        let e = pick_device(&devices, "beef").unwrap_err();
        assert!(matches!(e, Unresolved::Ambiguous(_)), "{e:?}");
        assert!(
            e.message().contains(B) && e.message().contains("group lab"),
            "{e:?}"
        );
        // Its id still works, and a hostname that is not id-shaped resolves.
        assert_eq!(ids(pick_device(&devices, &B[..8])), Ok(B.into()));
        assert_eq!(ids(pick_device(&devices, "WS-A")), Ok(A.into()));
    }

    /// Reproduces the review finding: two devices named "twin" and the first one won.
    #[test]
    fn a_shared_hostname_names_no_device_and_lists_the_candidates() {
        let devices = [
            dev(A, "twin", "default"),
            dev(B, "twin", "lab"),
            dev(C, "\u{1b}[31mother", "default"),
        ];
        let e = pick_device(&devices, "twin").unwrap_err();
        let m = e.message();
        assert!(matches!(e, Unresolved::Ambiguous(_)), "{e:?}");
        assert!(m.contains(A) && m.contains(B) && !m.contains(C), "{m}");
        assert!(
            m.contains("(twin, group default)") && m.contains("(twin, group lab)"),
            "{m}"
        );
        // Ambiguous prefixes list their candidates, cleaned.
        let e = pick_device(&devices, "5b3e").unwrap_err();
        assert!(e.message().contains(B) && e.message().contains(C), "{e:?}");
        assert!(!e.message().contains('\u{1b}'), "{e:?}");
        assert!(matches!(
            pick_device(&devices, "nothing"),
            Err(Unresolved::NotFound(_))
        ));
        assert!(matches!(
            pick_device(&devices, "abcd"),
            Err(Unresolved::NotFound(_))
        ));
    }
}
