//! Brokering screen sessions: the relay checks who may reach which device, signs a grant for the
//! agent, and then splices the technician's stream to the agent's. After the splice starts the
//! relay only copies bytes: the session is TLS 1.3 end to end between technician and agent, so
//! the relay can neither read nor undetectably alter it.

use crate::policy::{self, GroupPolicy};
use crate::scope::{Scope, resolve};
use crate::state::State;
use crate::store::{DeviceRow, PolicyFlag, SessionRow, now_ms};
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

/// What the technician announced it understands.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    /// `capability::ASKING`: it takes `TechResponse::Asking` before an answer.
    pub asking: bool,
    /// `capability::ELSEWHERE`: it follows `TechResponse::Elsewhere` to another relay.
    pub follows: bool,
}

/// The technician's request stream (for [`TechResponse::Asking`] before the answer) and what
/// it understands.
pub struct Peer<'a> {
    pub send: &'a mut SendStream,
    pub caps: Caps,
}

/// The answer for a device whose agent another relay holds: where to ask (a technician that
/// follows), or why not here (one that does not). `None`: connected here, or nowhere.
fn elsewhere(state: &State, device: &DeviceRow, follows: bool) -> Option<TechResponse> {
    let holder = state.presence.elsewhere(&device.id)?;
    info!(device = %device.id, relay = %holder.relay_id, follows, "device held by another relay");
    Some(if follows {
        TechResponse::Elsewhere {
            relay_id: holder.relay_id,
            relay_addr: holder.addr,
        }
    } else {
        error(
            ErrorCode::Offline,
            format!(
                "device {} is connected to relay {} ({}); this tether is too old to follow it there: upgrade it",
                device.hostname, holder.relay_id, holder.addr
            ),
        )
    })
}

/// `caps.asking`: the technician takes [`TechResponse::Asking`] once the user is being asked.
///
/// The steps: find the device, record the request, decide ([`policy::decide`], pure), sign and
/// offer the grant to the agent, then splice until either side ends; every outcome is written
/// to the audit trail.
pub async fn open_session(
    state: &State,
    technician: &str,
    role: Role,
    caps: Caps,
    req: SessionRequest,
    mut tsend: SendStream,
    trecv: RecvStream,
) {
    let asking = caps.asking;
    let device = match reachable_device(state, technician, role, &req.device).await {
        Ok(d) => d,
        Err(resp) => {
            refuse(&mut tsend, &resp).await;
            return;
        }
    };
    // Held by another relay: the request is answered (and audited) there.
    if let Some(resp) = elsewhere(state, &device, caps.follows) {
        refuse(&mut tsend, &resp).await;
        return;
    }
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
    let audit = Audit {
        state,
        id: &session_id,
        granted: req.permissions.describe(),
    };
    let agent = state.presence.connection(&device.id);
    let target = policy::Target {
        id: &device.id,
        hostname: &device.hostname,
        group: &device.group,
        online: agent.is_some(),
    };
    let group_policy = group_policy_of(state, role, &req, &device.group).await;
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
            audit.refused(refusal.decision(), refusal.detail()).await;
            refuse(&mut tsend, &error(refusal.code(), refusal.to_string())).await;
            return;
        }
    };
    let accepted = match offer(state, &grant, &agent, asking, &mut tsend).await {
        Offered::Accepted(a) => a,
        Offered::Refused {
            decision,
            detail,
            answer,
        } => {
            audit.refused(decision, detail.clone()).await;
            info!(session = %grant.session_id, device = %device.id, technician, decision = %decision, "refused: {detail}");
            refuse(&mut tsend, &answer).await;
            return;
        }
        Offered::Cancelled => {
            audit
                .refused(
                    Decision::Failed,
                    "the technician cancelled the request".into(),
                )
                .await;
            info!(session = %grant.session_id, technician, "request cancelled by the technician");
            return;
        }
    };
    let continued = match accepted.engagement.filter(|_| !accepted.unattended) {
        Some(e) => file_engagement(state, &grant.session_id, &e).await,
        None => false,
    };
    let unattended = accepted.unattended && grant.unattended;
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
    let why = if unattended {
        (
            Decision::Unattended,
            "unattended by policy (admin, group allows it)",
        )
    } else if continued {
        (Decision::Approved, "approved earlier in this engagement")
    } else {
        (Decision::Approved, "approved by the user")
    };
    audit.started(why.0, why.1.into()).await;
    info!(
        session = %grant.session_id,
        device = %device.id,
        technician,
        permissions = %grant.permissions.describe(),
        reason = %grant.reason,
        ticket = %grant.ticket,
        "session started"
    );
    let (ended_by, up, down) = splice(state, &agent, tsend, trecv, accepted.streams).await;
    if let Err(e) = state
        .store
        .session_ended(&grant.session_id, now_ms(), ended_by, up, down)
        .await
    {
        warn!("store error recording a session end: {e}");
    }
    info!(session = %grant.session_id, bytes_up = up, bytes_down = down, ended_by, "session ended");
}

/// Writes a session's decision to the audit trail (a store error is logged: the session's
/// outcome does not wait on the audit).
struct Audit<'a> {
    state: &'a State,
    id: &'a str,
    /// The permissions, recorded as granted once the session starts.
    granted: String,
}

impl Audit<'_> {
    async fn refused(&self, decision: Decision, detail: String) {
        self.write(decision, &detail, "", None).await;
    }

    async fn started(&self, decision: Decision, detail: String) {
        self.write(decision, &detail, &self.granted, Some(now_ms()))
            .await;
    }

    async fn write(&self, decision: Decision, detail: &str, granted: &str, at: Option<i64>) {
        if let Err(e) = self
            .state
            .store
            .session_decided(self.id, decision, detail, granted, at)
            .await
        {
            warn!("store error recording a session decision: {e}");
        }
    }
}

/// The facts the policy decides on. A store error reads as the safe side: attended, no root,
/// and a shell whose recording is unknown (which the policy refuses).
async fn group_policy_of(
    state: &State,
    role: Role,
    req: &SessionRequest,
    group: &str,
) -> GroupPolicy {
    GroupPolicy {
        unattended: role == Role::Admin
            && match state.store.policy_flag(group, PolicyFlag::Unattended).await {
                Ok(on) => on,
                Err(e) => {
                    warn!("store error reading policy (treating as attended): {e}");
                    false
                }
            },
        allow_root: req.permissions.root
            && match state.store.policy_flag(group, PolicyFlag::AllowRoot).await {
                Ok(on) => on,
                Err(e) => {
                    warn!("store error reading policy (treating root as not allowed): {e}");
                    false
                }
            },
        record_shells: if req.permissions.shell {
            match state
                .store
                .policy_flag(group, PolicyFlag::RecordShells)
                .await
            {
                Ok(on) => Some(on),
                Err(e) => {
                    warn!("store error reading policy: {e}");
                    None
                }
            }
        } else {
            Some(false)
        },
    }
}

/// What became of a grant offered to the agent.
enum Offered {
    Accepted(Accepted),
    /// Refused by the agent or the user, or the device did not answer: the decision to
    /// record, its detail, and the answer for the technician.
    Refused {
        decision: Decision,
        detail: String,
        answer: TechResponse,
    },
    /// The technician gave up while the user decided.
    Cancelled,
}

struct Accepted {
    /// The agent's side of the session's stream.
    streams: (SendStream, RecvStream),
    unattended: bool,
    /// The engagement the agent says the session joined.
    engagement: Option<String>,
}

/// Signs the grant and offers it to the agent, which puts it before the user; tells the
/// technician (with `asking`) once the user is being asked.
async fn offer(
    state: &State,
    grant: &tether_protocol::session::SessionGrant,
    agent: &quinn::Connection,
    asking: bool,
    tsend: &mut SendStream,
) -> Offered {
    let signed = codec::to_bytes(grant)
        .map_err(|e| e.to_string())
        .and_then(|g| Ok((state.signer.sign(&g).map_err(|e| e.to_string())?, g)));
    let (signature, grant_bytes) = match signed {
        Ok(x) => x,
        Err(e) => {
            warn!("cannot sign grant: {e}");
            return Offered::Refused {
                decision: Decision::Failed,
                detail: format!("relay cannot sign the session: {e}"),
                answer: error(ErrorCode::Internal, "relay cannot sign the session"),
            };
        }
    };
    if asking && !grant.unattended {
        reply(tsend, &TechResponse::Asking).await;
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
    let answered = tokio::select! {
        a = tokio::time::timeout(OFFER_TIMEOUT, offered) => a,
        _ = tsend.stopped() => return Offered::Cancelled,
    };
    match answered {
        Ok(Ok((
            OfferReply::Accept {
                unattended,
                engagement,
            },
            s,
            r,
        ))) => Offered::Accepted(Accepted {
            streams: (s, r),
            unattended,
            engagement,
        }),
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
            Offered::Refused {
                decision,
                detail: message,
                answer: error(ErrorCode::Refused, shown),
            }
        }
        Ok(Err(e)) => Offered::Refused {
            decision: Decision::Failed,
            detail: format!("device did not answer: {e}"),
            answer: error(ErrorCode::Offline, format!("device did not answer: {e}")),
        },
        Err(_) => Offered::Refused {
            decision: Decision::TimedOut,
            detail: "device did not answer in time".into(),
            answer: error(ErrorCode::Refused, "device did not answer in time"),
        },
    }
}

/// Files the session under the engagement the agent names (only one of this technician's on
/// this device, see the store); true when it continues an earlier session's approval.
async fn file_engagement(state: &State, session_id: &str, engagement: &str) -> bool {
    let e = text::clean(engagement, 64);
    match state.store.session_engaged(session_id, &e).await {
        Ok(true) => {}
        Ok(false) => {
            warn!(session = %session_id, engagement = %e, "agent named an engagement that is not this technician's on this device; not filed under it")
        }
        Err(err) => warn!("store error filing a session's engagement: {err}"),
    }
    e != session_id
}

/// Copies bytes both ways until the session ends: who ended it (for the audit) and the bytes
/// copied up and down.
async fn splice(
    state: &State,
    agent: &quinn::Connection,
    mut tsend: SendStream,
    mut trecv: RecvStream,
    (mut asend, mut arecv): (SendStream, RecvStream),
) -> (&'static str, u64, u64) {
    // The device's certificate serial, to tell a revocation from a lost connection at the end.
    let device_serial = tether_net::tls::peer_certs(agent)
        .and_then(|c| c.first().and_then(|c| tether_net::pki::cert_info(c).ok()))
        .map(|i| i.serial);
    let filter = state.splice_filter.clone();
    let (up_bytes, down_bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
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
    (
        ended_by(first, revoked),
        up_bytes.load(Ordering::Relaxed),
        down_bytes.load(Ordering::Relaxed),
    )
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
    peer: Peer<'_>,
) -> TechResponse {
    let Peer { send, caps } = peer;
    let follows = caps.follows;
    let asking = caps.asking.then_some(send);
    let device = match reachable_device(state, technician, role, device).await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    if let Some(resp) = elsewhere(state, &device, follows) {
        return resp;
    }
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
    follows: bool,
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
    if let Some(resp) = elsewhere(state, &device, follows) {
        return resp;
    }
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
