//! Inventory sources on Windows (registry, WMI).

pub use crate::platform::collector::{CollectError, Ctx, Spawn, Warnings};

/// Starts every collector this platform has.
pub(crate) fn spawn_all(r: &mut impl Spawn) {
    let _ = r;
}
