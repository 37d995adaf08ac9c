//! Which devices a technician may reach ([`Scope`], from their role and group grants) and which
//! one a name, id or id prefix means ([`pick_device`]). Shared by the request handlers
//! (`tech.rs`) and the session broker (`broker.rs`).

use crate::state::State;
use crate::store::{DeviceRow, StoreError};
use tether_protocol::identity::Role;
use tether_protocol::message::{ErrorCode, TechResponse};
use tether_protocol::text;

fn err(code: ErrorCode, message: String) -> TechResponse {
    TechResponse::Error { code, message }
}

/// The device groups a technician may see: all for admins and for technicians granted every
/// group (`tether-relay grant --all-groups`), else only those granted one by one — none for a
/// technician without grants (withdrawing the last grant must not open every group).
pub(crate) struct Scope(Option<std::collections::HashSet<String>>);

impl Scope {
    pub(crate) async fn of(state: &State, name: &str, role: Role) -> Result<Scope, StoreError> {
        if role == Role::Admin {
            return Ok(Scope(None));
        }
        let grants = state.store.technician_grants(name).await?;
        Ok(Scope(if grants.all_groups {
            None
        } else {
            Some(grants.groups.into_iter().collect())
        }))
    }

    pub(crate) fn allows(&self, group: &str) -> bool {
        self.0.as_ref().is_none_or(|g| g.contains(group))
    }

    /// The devices in scope.
    pub(crate) async fn devices(&self, state: &State) -> Result<Vec<DeviceRow>, StoreError> {
        Ok(state
            .store
            .list_devices()
            .await?
            .into_iter()
            .filter(|d| self.allows(&d.group))
            .collect())
    }
}

/// Finds a device by id, unique id prefix or hostname, among those in `scope` (a device out of
/// scope does not exist for this technician), by the rules of [`pick_device`].
pub(crate) async fn resolve(
    state: &State,
    scope: &Scope,
    query: &str,
) -> Result<Result<DeviceRow, TechResponse>, StoreError> {
    let devices = scope.devices(state).await?;
    Ok(match pick_device(&devices, query) {
        Ok(d) => Ok(d.clone()),
        Err(Unresolved::NotFound(m)) => Err(err(ErrorCode::NotFound, m)),
        Err(Unresolved::Ambiguous(m)) => Err(err(ErrorCode::BadRequest, m)),
    })
}

/// Why a device name does not name exactly one device (the message lists the candidates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    NotFound(String),
    Ambiguous(String),
}

impl Unresolved {
    pub fn message(&self) -> &str {
        match self {
            Unresolved::NotFound(m) | Unresolved::Ambiguous(m) => m,
        }
    }
}

/// Shortest id prefix accepted.
pub const MIN_ID_PREFIX: usize = 4;

/// Does `q` have the shape of a device id or id prefix (hex digits and dashes)?
fn looks_like_id(q: &str) -> bool {
    q.len() >= MIN_ID_PREFIX
        && q.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && q.chars().any(|c| c.is_ascii_hexdigit())
}

/// The one device `query` names. Ids win: an exact id, else a unique id prefix (4+ characters).
/// A device chooses its own hostname, so a hostname is trusted only where it cannot be taken
/// for an id: a query shaped like an id (hex digits and dashes) never resolves by hostname (a
/// device that named itself like another's id prefix would receive what was meant for that
/// device), and a hostname two devices share names neither. Refusals list the candidates (id,
/// hostname, group), so the technician can pick by id. Used for technicians' requests and for
/// `tether-relay revoke`.
pub fn pick_device<'a>(devices: &'a [DeviceRow], query: &str) -> Result<&'a DeviceRow, Unresolved> {
    let q = text::clean(query, 256);
    let id = q.to_ascii_lowercase();
    if let Some(d) = devices.iter().find(|d| d.id == id) {
        return Ok(d);
    }
    let by_host: Vec<&DeviceRow> = devices
        .iter()
        .filter(|d| d.hostname.eq_ignore_ascii_case(&q))
        .collect();
    if looks_like_id(&id) {
        let by_prefix: Vec<&DeviceRow> = devices.iter().filter(|d| d.id.starts_with(&id)).collect();
        return match by_prefix.as_slice() {
            [one] => Ok(one),
            [] if by_host.is_empty() => Err(not_found(&q)),
            [] => Err(Unresolved::Ambiguous(format!(
                "no device id starts with {q:?}, and a hostname that looks like a device id is not trusted: {}; use the device id",
                candidates(&by_host)
            ))),
            many => Err(Unresolved::Ambiguous(format!(
                "{q:?} is the beginning of {} device ids: {}; use more of the id",
                many.len(),
                candidates(many)
            ))),
        };
    }
    match by_host.as_slice() {
        [one] => Ok(one),
        [] => Err(not_found(&q)),
        many => Err(Unresolved::Ambiguous(format!(
            "{} devices are named {q:?}: {}; use the device id",
            many.len(),
            candidates(many)
        ))),
    }
}

fn not_found(q: &str) -> Unresolved {
    Unresolved::NotFound(format!("no device matches {q:?} (see tether devices)"))
}

/// `id (hostname, group g), …`, cleaned (hostnames come from devices), at most 10.
fn candidates(devices: &[&DeviceRow]) -> String {
    const SHOWN: usize = 10;
    let mut list: Vec<String> = devices
        .iter()
        .take(SHOWN)
        .map(|d| {
            format!(
                "{} ({}, group {})",
                text::clean(&d.id, 64),
                text::clean(&d.hostname, 64),
                text::clean(&d.group, 64)
            )
        })
        .collect();
    if devices.len() > SHOWN {
        list.push(format!("and {} more", devices.len() - SHOWN));
    }
    list.join(", ")
}
