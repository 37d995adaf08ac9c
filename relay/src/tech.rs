//! Requests from technicians: one bidirectional stream per request.

use crate::server::State;
use crate::store::now_ms;
use quinn::{RecvStream, SendStream};
use std::time::Duration;
use tether_net::framed::{read_msg, write_msg};
use tether_protocol::identity::Role;
use tether_protocol::limits;
use tether_protocol::message::{
    DeviceSummary, ErrorCode, TechRequest, TechResponse, may_list_devices,
};
use tracing::{debug, warn};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn handle_stream(
    state: &State,
    name: &str,
    role: Role,
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
    let resp = match req {
        TechRequest::ListDevices if may_list_devices(role) => list_devices(state).await,
        TechRequest::ListDevices => TechResponse::Error {
            code: ErrorCode::Forbidden,
            message: format!("role {role} may not list devices"),
        },
    };
    if let Err(e) = write_msg(&mut send, &resp, limits::BULK).await {
        debug!(technician = name, "reply not delivered: {e}");
        return;
    }
    let _ = send.finish();
}

async fn list_devices(state: &State) -> TechResponse {
    match state.store.list_devices().await {
        Ok(rows) => {
            let now = now_ms();
            TechResponse::Devices(
                rows.into_iter()
                    .map(|d| {
                        let online = state.presence.is_online(&d.id);
                        DeviceSummary {
                            online,
                            last_seen_unix_ms: if online { now } else { d.last_seen },
                            id: d.id,
                            hostname: d.hostname,
                            group: d.group,
                            os: d.os,
                            agent_version: d.agent_version,
                            first_seen_unix_ms: d.first_seen,
                        }
                    })
                    .collect(),
            )
        }
        Err(e) => {
            warn!("store error listing devices: {e}");
            TechResponse::Error {
                code: ErrorCode::Internal,
                message: "relay store unavailable".into(),
            }
        }
    }
}
