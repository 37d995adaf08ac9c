//! Brokering screen sessions: the relay checks who may reach which device, signs a grant for the
//! agent, and then splices the technician's stream to the agent's. After the splice starts the
//! relay only copies bytes: the session is TLS 1.3 end to end between technician and agent, so
//! the relay can neither read nor undetectably alter it.

use crate::server::State;
use crate::store::{SessionRecord, now_ms};
use crate::tech::{Scope, resolve};
use quinn::{RecvStream, SendStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tether_net::framed::{read_msg, write_msg};
use tether_protocol::identity::Role;
use tether_protocol::message::{ErrorCode, SessionRequest, TechResponse, may_start_session};
use tether_protocol::session::{
    GRANT_TTL_MS, MessageReply, OfferReply, RefuseKind, RelayStream, SessionGrant, UserMessage,
};
use tether_protocol::{codec, limits, text};
use tracing::{info, warn};

/// Byte filter applied to spliced session traffic. Only fault-injection tests set one (to prove
/// that a relay altering bytes breaks the session instead of corrupting it).
pub type SpliceFilter = Arc<dyn Fn(&mut [u8]) + Send + Sync>;

/// How long the agent has to accept or refuse. The user's prompt runs inside it, so it must
/// exceed the longest consent timeout an agent accepts
/// ([`tether_protocol::consent::MAX_TIMEOUT`]); the agent refuses on its own deadline first.
const OFFER_TIMEOUT: Duration =
    Duration::from_secs(tether_protocol::consent::MAX_TIMEOUT.as_secs() + 15);

async fn reply(send: &mut SendStream, resp: &TechResponse) -> bool {
    write_msg(send, resp, limits::CONTROL).await.is_ok()
}

/// Answers with a refusal and ends the request stream.
async fn refuse(send: &mut SendStream, resp: &TechResponse) {
    reply(send, resp).await;
    let _ = send.finish();
}

fn error(code: ErrorCode, message: impl Into<String>) -> TechResponse {
    TechResponse::Error {
        code,
        message: message.into(),
    }
}

pub async fn open_session(
    state: &State,
    technician: &str,
    role: Role,
    req: SessionRequest,
    mut tsend: SendStream,
    trecv: RecvStream,
) {
    let scope = match Scope::of(state, technician, role).await {
        Ok(s) => s,
        Err(e) => {
            warn!("store error: {e}");
            refuse(
                &mut tsend,
                &error(ErrorCode::Internal, "relay store unavailable"),
            )
            .await;
            return;
        }
    };
    let device = match resolve(state, &scope, &req.device).await {
        Ok(Ok(d)) => d,
        Ok(Err(resp)) => {
            refuse(&mut tsend, &resp).await;
            return;
        }
        Err(e) => {
            warn!("store error: {e}");
            refuse(
                &mut tsend,
                &error(ErrorCode::Internal, "relay store unavailable"),
            )
            .await;
            return;
        }
    };
    let now = now_ms();
    let session_id = uuid::Uuid::new_v4().to_string();
    let record = SessionRecord {
        id: session_id.clone(),
        technician: technician.to_string(),
        device_id: device.id.clone(),
        reason: text::clean(&req.reason, 256),
        ticket: text::clean(&req.ticket, 64),
        permissions_asked: req.permissions.describe(),
        requested_at: now,
        ..Default::default()
    };
    if let Err(e) = state.store.session_requested(&record).await {
        warn!("store error recording a session request: {e}");
        refuse(
            &mut tsend,
            &error(ErrorCode::Internal, "relay store unavailable"),
        )
        .await;
        return;
    }
    let decide = |decision: &'static str, detail: String, started: Option<i64>| {
        let store = state.store.clone();
        let id = session_id.clone();
        let granted = if started.is_some() {
            req.permissions.describe()
        } else {
            String::new()
        };
        async move {
            if let Err(e) = store
                .session_decided(&id, decision, &detail, &granted, started)
                .await
            {
                warn!("store error recording a session decision: {e}");
            }
        }
    };
    if !may_start_session(role) {
        let message = format!("role {role} may not start sessions (support or admin needed)");
        decide("denied", message.clone(), None).await;
        refuse(&mut tsend, &error(ErrorCode::Forbidden, message)).await;
        return;
    }
    let Some(agent) = state.presence.connection(&device.id) else {
        decide("failed", "device offline".into(), None).await;
        refuse(
            &mut tsend,
            &error(
                ErrorCode::Offline,
                format!("device {} is offline", device.hostname),
            ),
        )
        .await;
        return;
    };
    // Unattended access needs both the group's policy and the admin role; the agent checks the
    // role again.
    let unattended = role == Role::Admin
        && match state.store.unattended(&device.group).await {
            Ok(on) => on,
            Err(e) => {
                warn!("store error reading policy (treating as attended): {e}");
                false
            }
        };
    if req.batch && !unattended {
        let message = format!(
            "group runs need unattended access: device {} is in group {}, where it is off (or you are not an admin)",
            device.hostname, device.group
        );
        decide("denied", message.clone(), None).await;
        refuse(&mut tsend, &error(ErrorCode::Forbidden, message)).await;
        return;
    }
    let grant = SessionGrant {
        session_id: session_id.clone(),
        device_id: device.id.clone(),
        technician: technician.to_string(),
        role,
        permissions: req.permissions,
        reason: text::clean(&req.reason, 256),
        ticket: text::clean(&req.ticket, 64),
        issued_at_unix_ms: now,
        expires_at_unix_ms: now + GRANT_TTL_MS,
        unattended,
        record_shell: req.permissions.shell
            && match state.store.record_shells(&device.group).await {
                Ok(on) => on,
                Err(e) => {
                    // Recording is an audit duty: without the policy, refuse rather than not record.
                    warn!("store error reading policy: {e}");
                    decide("failed", "relay store unavailable".into(), None).await;
                    refuse(
                        &mut tsend,
                        &error(ErrorCode::Internal, "relay store unavailable"),
                    )
                    .await;
                    return;
                }
            },
    };
    let offer = codec::to_bytes(&grant)
        .map_err(|e| e.to_string())
        .and_then(|g| Ok((state.ca.sign(&g).map_err(|e| e.to_string())?, g)));
    let (signature, grant_bytes) = match offer {
        Ok(x) => x,
        Err(e) => {
            warn!("cannot sign grant: {e}");
            refuse(
                &mut tsend,
                &error(ErrorCode::Internal, "relay cannot sign the session"),
            )
            .await;
            return;
        }
    };
    let offered = async {
        let (mut asend, mut arecv) = agent.open_bi().await?;
        write_msg(
            &mut asend,
            &RelayStream::SessionOffer {
                grant: grant_bytes,
                signature,
            },
            limits::CONTROL,
        )
        .await?;
        let answer: OfferReply = read_msg(&mut arecv, limits::CONTROL).await?;
        Ok::<_, tether_net::NetError>((answer, asend, arecv))
    };
    // The technician may give up while the user decides; dropping the offer then stops the
    // agent's stream, which takes the prompt off the user's screen.
    let answered = tokio::select! {
        a = tokio::time::timeout(OFFER_TIMEOUT, offered) => a,
        _ = tsend.stopped() => {
            decide("failed", "the technician cancelled the request".into(), None).await;
            info!(session = %grant.session_id, technician, "request cancelled by the technician");
            return;
        }
    };
    let (asend, arecv, unattended) = match answered {
        Ok(Ok((OfferReply::Accept { unattended: u }, s, r))) => (s, r, u && unattended),
        Ok(Ok((OfferReply::Refuse { kind, message }, _, _))) => {
            let message = text::clean(&message, 256);
            let (decision, shown) = match kind {
                RefuseKind::Denied => ("denied", message.clone()),
                RefuseKind::TimedOut => ("timed_out", message.clone()),
                RefuseKind::Invalid => ("failed", format!("device refused the session: {message}")),
            };
            decide(decision, message.clone(), None).await;
            info!(session = %grant.session_id, device = %device.id, technician, decision, "refused by agent: {message}");
            refuse(&mut tsend, &error(ErrorCode::Refused, shown)).await;
            return;
        }
        Ok(Err(e)) => {
            decide("failed", format!("device did not answer: {e}"), None).await;
            refuse(
                &mut tsend,
                &error(ErrorCode::Offline, format!("device did not answer: {e}")),
            )
            .await;
            return;
        }
        Err(_) => {
            decide("timed_out", "device did not answer in time".into(), None).await;
            refuse(
                &mut tsend,
                &error(ErrorCode::Refused, "device did not answer in time"),
            )
            .await;
            return;
        }
    };
    // From here the agent may report actions (and a recorded shell's transcript) for this
    // session, until a moment after it ends (`live::GRACE`).
    let _running = state
        .live_sessions
        .start(&grant.session_id, &device.id, grant.record_shell);
    if !reply(
        &mut tsend,
        &TechResponse::SessionReady {
            session_id: grant.session_id.clone(),
            device_id: device.id.clone(),
            hostname: device.hostname.clone(),
        },
    )
    .await
    {
        return;
    }
    if unattended {
        decide(
            "unattended",
            "unattended by policy (admin, group allows it)".into(),
            Some(now_ms()),
        )
        .await;
    } else {
        decide("approved", "approved by the user".into(), Some(now_ms())).await;
    }
    info!(
        session = %grant.session_id,
        device = %device.id,
        technician,
        permissions = %grant.permissions.describe(),
        reason = %grant.reason,
        ticket = %grant.ticket,
        "session started"
    );
    let filter = state.splice_filter.clone();
    let (up_bytes, down_bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let up = pipe(trecv, asend, filter.clone(), up_bytes.clone());
    let down = pipe(arecv, tsend, filter, down_bytes.clone());
    tokio::pin!(up, down);
    // Whichever side finishes first ended the session. The other side follows at once when it
    // is alive (the agent answers a technician's goodbye, and the other way round); when it
    // does not, it vanished: the technician saw the device go quiet, or the technician's
    // connection died.
    let ended_by = tokio::select! {
        () = &mut up => match tokio::time::timeout(OTHER_SIDE, &mut down).await {
            Ok(()) => "technician",
            Err(_) => "device lost",
        },
        () = &mut down => match tokio::time::timeout(OTHER_SIDE, &mut up).await {
            Ok(()) => "device",
            Err(_) => "technician lost",
        },
    };
    let (up, down) = (
        up_bytes.load(Ordering::Relaxed),
        down_bytes.load(Ordering::Relaxed),
    );
    if let Err(e) = state
        .store
        .session_ended(&grant.session_id, now_ms(), ended_by, up, down)
        .await
    {
        warn!("store error recording a session end: {e}");
    }
    info!(session = %grant.session_id, bytes_up = up, bytes_down = down, ended_by, "session ended");
}

/// Shortest and longest time a technician may wait for the user's reply to a message.
const MESSAGE_WAIT: (u64, u64) = (5_000, 600_000);

/// `tether say`: shows a message to the user at a device (through its tray app) and returns
/// their reply. Audited like a session request, with the reply as its detail.
pub async fn say(
    state: &State,
    technician: &str,
    role: Role,
    device: &str,
    text: &str,
    wait_ms: u64,
) -> TechResponse {
    let scope = match Scope::of(state, technician, role).await {
        Ok(s) => s,
        Err(e) => {
            warn!("store error: {e}");
            return error(ErrorCode::Internal, "relay store unavailable");
        }
    };
    let device = match resolve(state, &scope, device).await {
        Ok(Ok(d)) => d,
        Ok(Err(resp)) => return resp,
        Err(e) => {
            warn!("store error: {e}");
            return error(ErrorCode::Internal, "relay store unavailable");
        }
    };
    let text = text::clean(text, tether_protocol::session::MAX_MESSAGE);
    if text.trim().is_empty() {
        return error(ErrorCode::BadRequest, "the message is empty");
    }
    let id = uuid::Uuid::new_v4().to_string();
    let record = SessionRecord {
        id: id.clone(),
        technician: technician.to_string(),
        device_id: device.id.clone(),
        reason: text::clean(&text, 256),
        ticket: String::new(),
        permissions_asked: "message".into(),
        requested_at: now_ms(),
        ..Default::default()
    };
    if let Err(e) = state.store.session_requested(&record).await {
        warn!("store error recording a message: {e}");
        return error(ErrorCode::Internal, "relay store unavailable");
    }
    let decide = |decision: &'static str, detail: String| {
        let store = state.store.clone();
        let id = id.clone();
        async move {
            if let Err(e) = store
                .session_decided(&id, decision, &detail, "", None)
                .await
            {
                warn!("store error recording a message: {e}");
            }
        }
    };
    if !may_start_session(role) {
        let message = format!("role {role} may not message users (support or admin needed)");
        decide("denied", message.clone()).await;
        return error(ErrorCode::Forbidden, message);
    }
    let Some(agent) = state.presence.connection(&device.id) else {
        decide("failed", "device offline".into()).await;
        return error(
            ErrorCode::Offline,
            format!("device {} is offline", device.hostname),
        );
    };
    let wait_ms = wait_ms.clamp(MESSAGE_WAIT.0, MESSAGE_WAIT.1);
    let msg = RelayStream::Message(UserMessage {
        id: id.clone(),
        technician: technician.to_string(),
        role,
        text,
        wait_ms,
    });
    let asked = async {
        let (mut send, mut recv) = agent.open_bi().await?;
        write_msg(&mut send, &msg, limits::CONTROL).await?;
        let reply: MessageReply = read_msg(&mut recv, limits::CONTROL).await?;
        Ok::<_, tether_net::NetError>(reply)
    };
    // The agent closes the message at its own deadline; allow a margin for the network.
    let waited = Duration::from_millis(wait_ms) + Duration::from_secs(10);
    match tokio::time::timeout(waited, asked).await {
        Ok(Ok(MessageReply::Replied { text: reply })) => {
            let reply = text::clean(&reply, tether_protocol::session::MAX_MESSAGE);
            decide("message", format!("reply: {reply}")).await;
            TechResponse::Said { reply: Some(reply) }
        }
        Ok(Ok(MessageReply::NoReply)) => {
            decide("message", "no reply".into()).await;
            TechResponse::Said { reply: None }
        }
        Ok(Ok(MessageReply::NoTray)) => {
            let message = "nobody can see messages on the device (no tray app running)";
            decide("failed", message.into()).await;
            error(ErrorCode::Refused, message)
        }
        Ok(Err(e)) => {
            decide("failed", format!("device did not answer: {e}")).await;
            error(ErrorCode::Offline, format!("device did not answer: {e}"))
        }
        Err(_) => {
            decide("failed", "device did not answer in time".into()).await;
            error(ErrorCode::Refused, "device did not answer in time")
        }
    }
}

/// How long the other side of a splice gets to finish after one side ended.
const OTHER_SIDE: Duration = Duration::from_secs(3);

/// Copies one direction until it ends, then finishes (or resets) the other side. `total`
/// counts the bytes copied so far.
async fn pipe(
    mut from: RecvStream,
    mut to: SendStream,
    filter: Option<SpliceFilter>,
    total: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(Some(n)) => {
                if let Some(f) = &filter {
                    f(&mut buf[..n]);
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    let _ = from.stop(0u32.into());
                    return;
                }
                total.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok(None) => {
                let _ = to.finish();
                return;
            }
            Err(_) => {
                let _ = to.reset(0u32.into());
                return;
            }
        }
    }
}
