//! Enrollment: a token and a CSR in, a certificate out.

use crate::state::State;
use crate::store::{AlreadyEnrolled, DeviceRow, RedeemError, TokenKind, now_ms};
use quinn::{RecvStream, SendStream};
use std::time::Duration;
use tether_net::framed::{read_msg, write_msg};
use tether_net::pki::sha256;
use tether_protocol::identity::Identity;
use tether_protocol::limits;
use tether_protocol::message::{EnrollRefusal, EnrollReply, EnrollRequest};
use tether_protocol::text;
use tracing::{info, warn};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Returns true when a certificate was issued (the peer held a valid token).
pub async fn handle(state: &State, mut send: SendStream, mut recv: RecvStream) -> bool {
    let req: EnrollRequest =
        match tokio::time::timeout(REQUEST_TIMEOUT, read_msg(&mut recv, limits::ENROLL)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                warn!("enrollment request unreadable: {e}");
                return false;
            }
            Err(_) => {
                warn!("enrollment request not sent within {REQUEST_TIMEOUT:?}");
                return false;
            }
        };
    let reply = decide(state, &req).await;
    if let EnrollReply::Refused { message, .. } = &reply {
        warn!("enrollment refused: {message}");
    }
    let issued = matches!(reply, EnrollReply::Issued { .. });
    if write_msg(&mut send, &reply, limits::ENROLL).await.is_ok() {
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    }
    issued
}

fn refuse(reason: EnrollRefusal, message: impl Into<String>) -> EnrollReply {
    EnrollReply::Refused {
        reason,
        message: message.into(),
    }
}

async fn decide(state: &State, req: &EnrollRequest) -> EnrollReply {
    let hostname = text::clean(&req.hostname, 255);
    // Check the CSR before spending the token on it.
    if let Err(e) = rcgen::CertificateSigningRequestParams::from_pem(&req.csr_pem) {
        return refuse(
            EnrollRefusal::BadCsr,
            format!("certificate request is invalid: {e}"),
        );
    }
    let now = now_ms();
    let kind = match state
        .store
        .redeem_token(&sha256(&req.token_secret), now, &hostname)
        .await
    {
        Ok(Ok(kind)) => kind,
        Ok(Err(e)) => {
            let reason = match e {
                RedeemError::Unknown => EnrollRefusal::UnknownToken,
                RedeemError::AlreadyUsed => EnrollRefusal::AlreadyUsed,
                RedeemError::Expired => EnrollRefusal::Expired,
                RedeemError::AlreadyEnrolled(_) => EnrollRefusal::AlreadyEnrolled,
            };
            return refuse(reason, e.to_string());
        }
        Err(e) => {
            warn!("store error while redeeming a token: {e}");
            return refuse(EnrollRefusal::Busy, "relay store unavailable; try again");
        }
    };
    let (identity, replace) = match kind {
        TokenKind::Agent { group } => (
            Identity::Device {
                id: uuid::Uuid::new_v4().to_string(),
                group,
            },
            false,
        ),
        TokenKind::Technician {
            name,
            role,
            replace,
        } => (Identity::Technician { name, role }, replace),
    };
    let (cert_pem, serial) = match state.ca.issue_client(&req.csr_pem, &identity) {
        Ok(x) => x,
        Err(e) => return refuse(EnrollRefusal::BadCsr, e.to_string()),
    };
    // The certificate is recorded before it is handed out: the relay refuses certificates it
    // has no record of.
    let stored = match &identity {
        Identity::Device { id, group } => state
            .store
            .enroll_device(
                &DeviceRow {
                    id: id.clone(),
                    hostname: hostname.clone(),
                    group: group.clone(),
                    os: String::new(),
                    agent_version: String::new(),
                    first_seen: now,
                    last_seen: now,
                },
                &serial,
            )
            .await
            .map(|()| Ok(Vec::new())),
        Identity::Technician { name, role } => {
            state
                .store
                .enroll_technician(name, *role, &serial, replace, now)
                .await
        }
    };
    match stored {
        Ok(Ok(replaced)) if !replaced.is_empty() => {
            info!(%identity, ?replaced, "older certificates revoked by the new enrollment");
        }
        Ok(Ok(_)) => {}
        // Another token enrolled the name between the redemption and now.
        Ok(Err(AlreadyEnrolled)) => {
            return refuse(
                EnrollRefusal::AlreadyEnrolled,
                RedeemError::AlreadyEnrolled(identity_name(&identity)).to_string(),
            );
        }
        Err(e) => {
            warn!("store error while enrolling: {e}");
            return refuse(EnrollRefusal::Busy, "relay store unavailable; try again");
        }
    }
    info!(%identity, host = %hostname, "enrolled");
    EnrollReply::Issued {
        identity,
        cert_pem,
        ca_pem: state.ca.cert_pem.clone(),
    }
}

fn identity_name(identity: &Identity) -> String {
    match identity {
        Identity::Device { id, .. } => id.clone(),
        Identity::Technician { name, .. } => name.clone(),
    }
}
