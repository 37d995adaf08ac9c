//! Changing a device group's session policy (unattended access, shell recording, root): the
//! one code path behind `tether-relay policy` and an admin's `SetPolicy` request.

use crate::store::{PolicyFlag, Store, StoreError, now_ms};
use tether_protocol::identity::{IdentityError, validate_name};

/// What to change; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyChange {
    pub group: String,
    pub unattended: Option<bool>,
    pub record_shells: Option<bool>,
    pub allow_root: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum GroupPolicyError {
    #[error(transparent)]
    Name(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies `change` (the group name checked first) and logs it, attributed to `by`.
pub async fn change(store: &Store, by: &str, c: &PolicyChange) -> Result<(), GroupPolicyError> {
    validate_name("group", &c.group)?;
    let now = now_ms();
    if let Some(on) = c.unattended {
        store
            .set_policy_flag(&c.group, PolicyFlag::Unattended, on, now)
            .await?;
    }
    if let Some(on) = c.record_shells {
        store
            .set_policy_flag(&c.group, PolicyFlag::RecordShells, on, now)
            .await?;
    }
    if let Some(on) = c.allow_root {
        store
            .set_policy_flag(&c.group, PolicyFlag::AllowRoot, on, now)
            .await?;
    }
    tracing::info!(
        by,
        group = c.group,
        unattended = ?c.unattended,
        record_shells = ?c.record_shells,
        allow_root = ?c.allow_root,
        "policy changed"
    );
    Ok(())
}
