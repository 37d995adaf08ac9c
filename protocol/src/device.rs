//! A device as lists show it. Its own module because both the request/response messages
//! (`message.rs`) and the health model (`health.rs`) carry it, and neither may import the other.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSummary {
    pub id: String,
    pub hostname: String,
    pub group: String,
    pub online: bool,
    pub os: String,
    pub agent_version: String,
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
}
