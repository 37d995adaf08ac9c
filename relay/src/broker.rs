//! Brokering screen sessions: the relay checks who may reach which device, signs a grant for the
//! agent, and then splices the technician's stream to the agent's. After the splice starts the
//! relay only copies bytes: the session is TLS 1.3 end to end between technician and agent, so
//! the relay can neither read nor undetectably alter it.

use crate::policy::{self, GroupPolicy};
use crate::scope::{Scope, resolve};
use crate::state::State;
use crate::store::{DeviceRow, SessionRow, now_ms};
use quinn::{RecvStream, SendStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tether_net::framed::{read_msg, write_msg};
use tether_protocol::decision::Decision;
use tether_protocol::identity::Role;
use tether_protocol::message::{ErrorCode, SessionRequest, TechResponse, may_start_session};
use tether_protocol::session::{
    MessageReply, OfferReply, RefuseKind, RelayStream, SILENT_MS, UserMessage, splice_reset,
};
use tether_protocol::{codec, limits, text};
use tracing::{info, warn};

pub use crate::state::SpliceFilter;

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

/// The device `query` names among those `technician` may reach, or the answer to give instead
/// (not found, ambiguous, or the store unavailable).
async fn reachable_device(
    state: &State,
    technician: &str,
    role: Role,
    query: &str,
) -> Result<DeviceRow, TechResponse> {
    let store_down = |e: crate::store::StoreError| {
        warn!("store error: {e}");
        error(ErrorCode::Internal, "relay store unavailable")
    };
    let scope = Scope::of(state, technician, role)
        .await
        .map_err(store_down)?;
    resolve(state, &scope, query).await.map_err(store_down)?
}

/// `asking`: the technician takes [`TechResponse::Asking`] once the user is being asked.
pub async fn open_session(
    state: &State,
    technician: &str,
    role: Role,
    asking: bool,
    req: SessionRequest,
    mut tsend: SendStream,
    trecv: RecvStream,
) {
    let device = match reachable_device(state, technician, role, &req.device).await {
        Ok(d) => d,
        Err(resp) => {
            refuse(&mut tsend, &resp).await;
            return;
        }
    };
    let activity = req.activity.cleaned();
    if !activity.fits(req.permissions) {
        refuse(
            &mut tsend,
            &error(
                ErrorCode::BadRequest,
                format!(
                    "the request's activity ({}) needs a permission it does not ask for",
                    activity.describe()
                ),
            ),
        )
        .await;
        return;
    }
    let now = now_ms();
    let session_id = uuid::Uuid::new_v4().to_string();
    let record = SessionRow {
        id: session_id.clone(),
        technician: technician.to_string(),
        device_id: device.id.clone(),
        reason: text::clean(&req.reason, 256),
        ticket: text::clean(&req.ticket, 64),
        permissions_asked: req.permissions.describe(),
        requested_unix_ms: now,
        activity: activity.describe(),
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
    let decide = |decision: Decision, detail: String, started: Option<i64>| {
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
    // The facts the policy decides on. A store error reads as the safe side: attended, no root,
    // and a shell whose recording is unknown (which the policy refuses).
    let agent = state.presence.connection(&device.id);
    let group_policy = GroupPolicy {
        unattended: role == Role::Admin
            && match state.store.unattended(&device.group).await {
                Ok(on) => on,
                Err(e) => {
                    warn!("store error reading policy (treating as attended): {e}");
                    false
                }
            },
        allow_root: req.permissions.root
            && match state.store.allow_root(&device.group).await {
                Ok(on) => on,
                Err(e) => {
                    warn!("store error reading policy (treating root as not allowed): {e}");
                    false
                }
            },
        record_shells: if req.permissions.shell {
            match state.store.record_shells(&device.group).await {
                Ok(on) => Some(on),
                Err(e) => {
                    warn!("store error reading policy: {e}");
                    None
                }
            }
        } else {
            Some(false)
        },
    };
    let target = policy::Target {
        id: &device.id,
        hostname: &device.hostname,
        group: &device.group,
        online: agent.is_some(),
    };
    let decided = policy::decide(
        technician,
        role,
        &req,
        activity,
        target,
        group_policy,
        &session_id,
        now,
    )
    .and_then(|g| {
        let a = agent.ok_or_else(|| policy::Refusal::Offline(device.hostname.clone()))?;
        Ok((g, a))
    });
    let (grant, agent) = match decided {
        Ok(x) => x,
        Err(refusal) => {
            decide(refusal.decision(), refusal.detail(), None).await;
            refuse(&mut tsend, &error(refusal.code(), refusal.to_string())).await;
            return;
        }
    };
    let unattended = grant.unattended;
    let offer = codec::to_bytes(&grant)
        .map_err(|e| e.to_string())
        .and_then(|g| Ok((state.signer.sign(&g).map_err(|e| e.to_string())?, g)));
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
    // Every check passed: the offer goes to the agent, which puts it before the user.
    if asking && !grant.unattended {
        reply(&mut tsend, &TechResponse::Asking).await;
    }
    let offered = async {
        let (mut asend, mut arecv) = agent.open_bi().await?;
        write_msg(
            &mut asend,
            &RelayStream::SessionOffer {
                grant: grant_bytes,
                signature,
                signer_cert: state.signer.cert_der.to_vec(),
            },
            limits::CONTROL,
        )
        .await?;
        let answer: OfferReply = read_msg(&mut arecv, limits::CONTROL).await?;
        Ok::<_, tether_net::NetError>((answer, asend, arecv))
    };
    // The technician may give up while the user decides; dropping the offer then stops the
    // agent's stream, which takes the prompt off the user's screen.
    let mut continued = false;
    let answered = tokio::select! {
        a = tokio::time::timeout(OFFER_TIMEOUT, offered) => a,
        _ = tsend.stopped() => {
            decide(Decision::Failed, "the technician cancelled the request".into(), None).await;
            info!(session = %grant.session_id, technician, "request cancelled by the technician");
            return;
        }
    };
    let (asend, arecv, unattended) = match answered {
        Ok(Ok((
            OfferReply::Accept {
                unattended: u,
                engagement,
            },
            s,
            r,
        ))) => {
            if let Some(e) = engagement.filter(|_| !u) {
                let e = text::clean(&e, 64);
                match state.store.session_engaged(&grant.session_id, &e).await {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(session = %grant.session_id, engagement = %e, "agent named an engagement that is not this technician's on this device; not filed under it")
                    }
                    Err(err) => warn!("store error filing a session's engagement: {err}"),
                }
                continued = e != grant.session_id;
            }
            (s, r, u && unattended)
        }
        Ok(Ok((OfferReply::Refuse { kind, message }, _, _))) => {
            let message = text::clean(&message, 256);
            let (decision, shown) = match kind {
                RefuseKind::Denied => (Decision::Denied, message.clone()),
                RefuseKind::TimedOut => (Decision::TimedOut, message.clone()),
                RefuseKind::Invalid => (
                    Decision::Failed,
                    format!("device refused the session: {message}"),
                ),
            };
            decide(decision, message.clone(), None).await;
            info!(session = %grant.session_id, device = %device.id, technician, decision = %decision, "refused by agent: {message}");
            refuse(&mut tsend, &error(ErrorCode::Refused, shown)).await;
            return;
        }
        Ok(Err(e)) => {
            decide(
                Decision::Failed,
                format!("device did not answer: {e}"),
                None,
            )
            .await;
            refuse(
                &mut tsend,
                &error(ErrorCode::Offline, format!("device did not answer: {e}")),
            )
            .await;
            return;
        }
        Err(_) => {
            decide(
                Decision::TimedOut,
                "device did not answer in time".into(),
                None,
            )
            .await;
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
            Decision::Unattended,
            "unattended by policy (admin, group allows it)".into(),
            Some(now_ms()),
        )
        .await;
    } else if continued {
        decide(
            Decision::Approved,
            "approved earlier in this engagement".into(),
            Some(now_ms()),
        )
        .await;
    } else {
        decide(
            Decision::Approved,
            "approved by the user".into(),
            Some(now_ms()),
        )
        .await;
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
    // The device's certificate serial, to tell a revocation from a lost connection at the end.
    let device_serial = tether_net::tls::peer_certs(&agent)
        .and_then(|c| c.first().and_then(|c| tether_net::pki::cert_info(c).ok()))
        .map(|i| i.serial);
    let filter = state.splice_filter.clone();
    let (up_bytes, down_bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (mut tsend, mut trecv, mut asend, mut arecv) = (tsend, trecv, asend, arecv);
    let first = {
        let up = pipe(
            &mut trecv,
            &mut asend,
            filter.clone(),
            up_bytes.clone(),
            None,
        );
        let down = pipe(
            &mut arecv,
            &mut tsend,
            filter,
            down_bytes.clone(),
            Some(DEVICE_SILENT),
        );
        tokio::pin!(up, down);
        // Whichever side finishes first ended the session. The other side follows at once when
        // it is alive (the agent answers a technician's goodbye, and the other way round); when
        // it does not, it vanished. A device whose direction broke or went quiet is gone at
        // once: nothing to wait for.
        tokio::select! {
            u = &mut up => First::Technician(u, tokio::time::timeout(OTHER_SIDE, &mut down).await.ok()),
            d = &mut down => match d {
                End::Broken | End::Silent => First::Device(d, None),
                _ => First::Device(d, tokio::time::timeout(OTHER_SIDE, &mut up).await.ok()),
            },
        }
    };
    let down_end = match first {
        First::Technician(_, d) => d,
        First::Device(d, _) => Some(d),
    };
    let device_gone = matches!(down_end, Some(End::Broken | End::Silent));
    let revoked = device_gone
        && down_end == Some(End::Broken)
        && match &device_serial {
            Some(serial) => matches!(
                state.store.certificate_status(serial).await,
                Ok(crate::store::CertStatus::Revoked)
            ),
            None => false,
        };
    let ended_by = ended_by(first, revoked);
    if device_gone {
        // Tell the technician why, in the one word the relay can still send: the reset code.
        let code = if revoked {
            splice_reset::DEVICE_REVOKED
        } else {
            splice_reset::DEVICE_LOST
        };
        let _ = tsend.reset(code.into());
        let _ = trecv.stop(0u32.into());
        let _ = asend.reset(0u32.into());
    }
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
/// their reply. Audited like a session request, with the reply as its detail. `asking`: where
/// to send [`TechResponse::Asking`] once the message is with the agent.
pub async fn say(
    state: &State,
    technician: &str,
    role: Role,
    device: &str,
    text: &str,
    wait_ms: u64,
    asking: Option<&mut SendStream>,
) -> TechResponse {
    let device = match reachable_device(state, technician, role, device).await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    let text = text::clean(text, tether_protocol::session::MAX_MESSAGE);
    if text.trim().is_empty() {
        return error(ErrorCode::BadRequest, "the message is empty");
    }
    let id = uuid::Uuid::new_v4().to_string();
    let record = SessionRow {
        id: id.clone(),
        technician: technician.to_string(),
        device_id: device.id.clone(),
        reason: text::clean(&text, 256),
        ticket: String::new(),
        permissions_asked: "message".into(),
        requested_unix_ms: now_ms(),
        ..Default::default()
    };
    if let Err(e) = state.store.session_requested(&record).await {
        warn!("store error recording a message: {e}");
        return error(ErrorCode::Internal, "relay store unavailable");
    }
    let decide = |decision: Decision, detail: String| {
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
        decide(Decision::Denied, message.clone()).await;
        return error(ErrorCode::Forbidden, message);
    }
    let Some(agent) = state.presence.connection(&device.id) else {
        decide(Decision::Failed, "device offline".into()).await;
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
        if let Some(tsend) = asking {
            reply(tsend, &TechResponse::Asking).await;
        }
        let reply: MessageReply = read_msg(&mut recv, limits::CONTROL).await?;
        Ok::<_, tether_net::NetError>(reply)
    };
    // The agent closes the message at its own deadline; allow a margin for the network.
    let waited = Duration::from_millis(wait_ms) + Duration::from_secs(10);
    match tokio::time::timeout(waited, asked).await {
        Ok(Ok(MessageReply::Replied { text: reply })) => {
            let reply = text::clean(&reply, tether_protocol::session::MAX_MESSAGE);
            decide(Decision::Message, format!("reply: {reply}")).await;
            TechResponse::Said { reply: Some(reply) }
        }
        Ok(Ok(MessageReply::NoReply)) => {
            decide(Decision::Message, "no reply".into()).await;
            TechResponse::Said { reply: None }
        }
        Ok(Ok(MessageReply::NoTray)) => {
            let message = "nobody can see messages on the device (no tray app running)";
            decide(Decision::Failed, message.into()).await;
            error(ErrorCode::Refused, message)
        }
        Ok(Err(e)) => {
            decide(Decision::Failed, format!("device did not answer: {e}")).await;
            error(ErrorCode::Offline, format!("device did not answer: {e}"))
        }
        Err(_) => {
            decide(Decision::Failed, "device did not answer in time".into()).await;
            error(ErrorCode::Refused, "device did not answer in time")
        }
    }
}

/// `tether end`: the technician ends their engagement on a device for a ticket. Needs the role
/// and the device scope a session would; the agent ends only that technician's engagement.
pub async fn end_engagement(
    state: &State,
    technician: &str,
    role: Role,
    device: &str,
    ticket: &str,
) -> TechResponse {
    if !may_start_session(role) {
        return error(
            ErrorCode::Forbidden,
            format!("role {role} has no engagements (support or admin needed)"),
        );
    }
    let device = match reachable_device(state, technician, role, device).await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    let Some(agent) = state.presence.connection(&device.id) else {
        return error(
            ErrorCode::Offline,
            format!("device {} is offline", device.hostname),
        );
    };
    let msg = RelayStream::EndEngagement {
        technician: technician.to_string(),
        role,
        ticket: text::clean(ticket, 64),
    };
    let asked = async {
        let (mut send, mut recv) = agent.open_bi().await?;
        write_msg(&mut send, &msg, limits::CONTROL).await?;
        read_msg::<tether_protocol::session::EngagementReply>(&mut recv, limits::CONTROL).await
    };
    match tokio::time::timeout(Duration::from_secs(10), asked).await {
        Ok(Ok(r)) => {
            let ended = r == tether_protocol::session::EngagementReply::Ended;
            info!(technician, device = %device.id, ticket, ended, "technician ended the engagement");
            TechResponse::EngagementEnded { ended }
        }
        Ok(Err(e)) => error(ErrorCode::Offline, format!("device did not answer: {e}")),
        Err(_) => error(ErrorCode::Refused, "device did not answer in time"),
    }
}

/// How long the other side of a splice gets to finish after one side ended.
const OTHER_SIDE: Duration = Duration::from_secs(3);

/// A device in a session sends at least a keep-alive every
/// [`tether_protocol::session::KEEPALIVE_MS`]; after this long without a byte from it the relay
/// calls it lost (the technician does after [`SILENT_MS`]; the relay would otherwise learn only
/// from QUIC's idle timeout, seconds later).
const DEVICE_SILENT: Duration = Duration::from_millis(SILENT_MS + 500);

/// How long the device may take to send its first bytes (the TLS handshake waits for the
/// technician's first flight).
const DEVICE_FIRST_BYTES: Duration = Duration::from_secs(10);

/// How one direction of a splice ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The sender finished its direction: a goodbye.
    Finished,
    /// Reading failed: the sender reset its stream or its connection is gone.
    Broken,
    /// Nothing from the sender for [`DEVICE_SILENT`] (the device's direction only).
    Silent,
    /// The receiver stopped reading or its connection is gone.
    Unwritable,
}

/// Which direction of a splice ended first, how, and how the other one ended (`None`: not
/// within [`OTHER_SIDE`], or not waited for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    /// The technician's direction ended first; then the device's.
    Technician(End, Option<End>),
    /// The device's direction ended first; then the technician's.
    Device(End, Option<End>),
}

/// Who ended a session, for its audit record.
fn ended_by(first: First, device_revoked: bool) -> &'static str {
    use End::*;
    match first {
        First::Technician(_, Some(Broken)) | First::Device(Broken, _) if device_revoked => {
            "device revoked"
        }
        First::Technician(_, Some(Broken | Silent)) | First::Device(Broken | Silent, _) => {
            "device lost"
        }
        // A goodbye, answered or not.
        First::Technician(Finished, Some(_)) => "technician",
        First::Technician(Finished | Unwritable, None) => "device lost",
        First::Technician(_, _) => "technician lost",
        First::Device(Finished, Some(_)) => "device",
        First::Device(_, _) => "technician lost",
    }
}

/// Copies one direction until it ends. A goodbye (finish) is passed on at once; a broken
/// technician's direction resets the device's; when the device's direction (`silence` set)
/// breaks or goes quiet, the caller resets the technician's side with the reason. `total` counts
/// the bytes copied so far.
async fn pipe(
    from: &mut RecvStream,
    to: &mut SendStream,
    filter: Option<SpliceFilter>,
    total: Arc<AtomicU64>,
    silence: Option<Duration>,
) -> End {
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = true;
    loop {
        let read = from.read(&mut buf);
        let read = match silence {
            Some(limit) => {
                let limit = if first { DEVICE_FIRST_BYTES } else { limit };
                match tokio::time::timeout(limit, read).await {
                    Ok(r) => r,
                    Err(_) => return End::Silent,
                }
            }
            None => read.await,
        };
        first = false;
        match read {
            Ok(Some(n)) => {
                if let Some(f) = &filter {
                    f(&mut buf[..n]);
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    let _ = from.stop(0u32.into());
                    return End::Unwritable;
                }
                total.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok(None) => {
                let _ = to.finish();
                return End::Finished;
            }
            Err(_) => {
                if silence.is_none() {
                    let _ = to.reset(0u32.into());
                }
                return End::Broken;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_ended_a_session() {
        use End::*;
        use First::{Device, Technician};
        // Goodbyes, answered.
        assert_eq!(
            ended_by(Technician(Finished, Some(Finished)), false),
            "technician"
        );
        assert_eq!(ended_by(Device(Finished, Some(Finished)), false), "device");
        // The technician said goodbye; the device never answered, went quiet or vanished.
        assert_eq!(ended_by(Technician(Finished, None), false), "device lost");
        assert_eq!(
            ended_by(Technician(Finished, Some(Silent)), false),
            "device lost"
        );
        assert_eq!(
            ended_by(Technician(Finished, Some(Broken)), false),
            "device lost"
        );
        // The device vanished, or was revoked, while the technician waited.
        assert_eq!(ended_by(Device(Silent, None), false), "device lost");
        assert_eq!(ended_by(Device(Broken, None), false), "device lost");
        assert_eq!(ended_by(Device(Broken, None), true), "device revoked");
        assert_eq!(
            ended_by(Technician(Finished, Some(Broken)), true),
            "device revoked"
        );
        // The technician vanished.
        assert_eq!(
            ended_by(Technician(Broken, Some(Unwritable)), false),
            "technician lost"
        );
        assert_eq!(ended_by(Device(Unwritable, None), false), "technician lost");
        assert_eq!(ended_by(Device(Finished, None), false), "technician lost");
    }
}
