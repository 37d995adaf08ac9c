//! Rows both backends read the same way: columns to the store's types, written once. sqlx's
//! `FromRow` is generic over the database, so each backend only writes its SQL.

use super::{RedeemError, SessionRow, StoreError, TokenKind};

/// What a token redemption's `RETURNING` gives.
#[derive(sqlx::FromRow)]
pub(super) struct RedeemedToken {
    kind: String,
    group_name: Option<String>,
    tech_name: Option<String>,
    role: Option<String>,
    replace_existing: bool,
}

impl RedeemedToken {
    pub(super) fn kind(self) -> Result<TokenKind, StoreError> {
        Ok(match self.kind.as_str() {
            "agent" => TokenKind::Agent {
                group: self.group_name.unwrap_or_default(),
            },
            _ => TokenKind::Technician {
                name: self.tech_name.unwrap_or_default(),
                role: self.role.unwrap_or_default().parse().map_err(
                    |e: tether_protocol::identity::IdentityError| {
                        StoreError::Corrupt(e.to_string())
                    },
                )?,
                replace: self.replace_existing,
            },
        })
    }
}

/// A token that was not redeemed, read again to say why.
#[derive(sqlx::FromRow)]
pub(super) struct UnredeemedToken {
    used_at: Option<i64>,
    expires_at: i64,
    tech_name: Option<String>,
}

impl UnredeemedToken {
    /// Why a token (`None`: never issued) could not be redeemed at `now`.
    pub(super) fn why(token: Option<Self>, now: i64) -> RedeemError {
        match token {
            None => RedeemError::Unknown,
            Some(t) if t.used_at.is_some() => RedeemError::AlreadyUsed,
            Some(t) if t.expires_at <= now => RedeemError::Expired,
            Some(t) => RedeemError::AlreadyEnrolled(t.tech_name.unwrap_or_default()),
        }
    }
}

/// A `sessions` row with its device's hostname (`actions` are read apart).
#[derive(sqlx::FromRow)]
pub(super) struct Session {
    id: String,
    technician: String,
    device_id: String,
    hostname: String,
    reason: String,
    ticket: String,
    permissions_asked: String,
    permissions_granted: String,
    decision: String,
    decision_detail: String,
    requested_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    ended_by: Option<String>,
    bytes_up: i64,
    bytes_down: i64,
    notes: String,
    rating: Option<i64>,
    rating_comment: Option<String>,
    activity: String,
    engagement_id: Option<String>,
}

impl From<Session> for SessionRow {
    fn from(s: Session) -> Self {
        SessionRow {
            id: s.id,
            technician: s.technician,
            device_id: s.device_id,
            hostname: s.hostname,
            reason: s.reason,
            ticket: s.ticket,
            permissions_asked: s.permissions_asked,
            permissions_granted: s.permissions_granted,
            decision: s.decision,
            decision_detail: s.decision_detail,
            requested_unix_ms: s.requested_at,
            started_unix_ms: s.started_at,
            ended_unix_ms: s.ended_at,
            ended_by: s.ended_by,
            bytes_up: s.bytes_up.max(0) as u64,
            bytes_down: s.bytes_down.max(0) as u64,
            notes: s.notes,
            rating: s.rating.map(|v| v.clamp(0, 5) as u8),
            rating_comment: s.rating_comment,
            actions: Vec::new(),
            activity: s.activity,
            engagement: s.engagement_id,
        }
    }
}
