//! Creating enrollment tokens (the admin side of `tether-relay token`).

use crate::ca::Ca;
use crate::config::DataDir;
use crate::store::{NewToken, Store, StoreError, TokenKind, now_ms};
use std::time::Duration;
use tether_net::pki::sha256;
use tether_protocol::token::EnrollToken;

/// Creates a single-use token valid for `ttl` and stores the hash of its secret.
pub async fn create(
    store: &Store,
    data: &DataDir,
    relay_addr: &str,
    server_name: &str,
    kind: TokenKind,
    ttl: Duration,
) -> Result<(EnrollToken, i64), TokenCreateError> {
    let ca = Ca::load(data)?;
    create_for_ca(store, ca.fingerprint(), relay_addr, server_name, kind, ttl).await
}

/// [`create`] for a relay that has its CA loaded already.
pub async fn create_for_ca(
    store: &Store,
    ca_fingerprint: [u8; 32],
    relay_addr: &str,
    server_name: &str,
    kind: TokenKind,
    ttl: Duration,
) -> Result<(EnrollToken, i64), TokenCreateError> {
    // Re-enrolling someone who holds a valid certificate is an explicit choice (`--replace`,
    // which revokes their certificates when the new one is issued): otherwise an old
    // certificate, perhaps with a higher role, would stay valid beside the new one.
    if let TokenKind::Technician {
        name,
        replace: false,
        ..
    } = &kind
        && store.technician_enrolled(name).await?
    {
        return Err(TokenCreateError::AlreadyEnrolled(name.clone()));
    }
    let secret: [u8; 32] = rand::random();
    let now = now_ms();
    let expires_at = now.saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64);
    store
        .insert_token(&NewToken {
            secret_hash: sha256(&secret),
            kind,
            created_at: now,
            expires_at,
        })
        .await?;
    Ok((
        EnrollToken {
            relay_addr: relay_addr.to_string(),
            server_name: server_name.to_string(),
            ca_fingerprint,
            secret,
        },
        expires_at,
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum TokenCreateError {
    #[error(transparent)]
    Ca(#[from] crate::ca::CaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "technician {0} is already enrolled; add --replace to re-enroll them (their current certificates are revoked when the new one is issued)"
    )]
    AlreadyEnrolled(String),
}
