//! Requests to the relay: one connection per command, one stream per request.

use crate::SOFTWARE;
use quinn::{Connection, Endpoint};
use tether_net::NetError;
use tether_net::client::{ClientError, Credentials, connect_with_credentials};
use tether_net::framed::{read_msg, write_msg};
use tether_net::tls::TransportOptions;
use tether_protocol::limits;
use tether_protocol::message::{
    DeviceHistory, DeviceInventory, DeviceSummary, Intent, InventoryRow, ReportRow, SessionRow,
    SoftwareRow, TechRequest, TechResponse, TokenFor, capability, close_code,
};
use thiserror::Error;

/// Why a request failed. The texts of `Denied`, `Offline` and `Session` may come from the relay
/// or the agent, so they are shown through [`crate::safe::line`] whatever they hold.
#[derive(Debug, Error)]
pub enum RequestError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{}", crate::safe::line(.0))]
    Denied(String),
    /// The device is not connected to the relay (it may come back).
    #[error("{}", crate::safe::line(.0))]
    Offline(String),
    #[error("unexpected answer from relay")]
    Unexpected,
    #[error("session: {}", crate::safe::line(.0))]
    Session(String),
}

impl From<NetError> for RequestError {
    fn from(e: NetError) -> Self {
        RequestError::Client(ClientError::Net(e))
    }
}

fn unexpected(r: TechResponse) -> RequestError {
    match r {
        TechResponse::Error { message, .. } => RequestError::Denied(message),
        _ => RequestError::Unexpected,
    }
}

/// Called when the relay says the user is being asked ([`TechResponse::Asking`]).
type AskingHook = std::sync::Arc<dyn Fn() + Send + Sync>;

pub struct Session {
    endpoint: Endpoint,
    conn: Connection,
    /// To follow [`TechResponse::Elsewhere`] to another relay.
    creds: Credentials,
    /// The relay sends [`TechResponse::Asking`] (it announced [`capability::ASKING`]).
    relay_asks: bool,
    asking: Option<AskingHook>,
}

impl Session {
    pub async fn open(creds: &Credentials) -> Result<Self, RequestError> {
        let (endpoint, conn, welcome, mut send, _recv) = connect_with_credentials(
            creds,
            Intent::Technician,
            SOFTWARE,
            TransportOptions::default(),
        )
        .await?;
        // The control stream stays open for the life of the connection; nothing more is sent on it.
        let _ = send.finish();
        let relay_asks = welcome.capabilities.iter().any(|c| c == capability::ASKING);
        Ok(Self {
            endpoint,
            conn,
            creds: creds.clone(),
            relay_asks,
            asking: None,
        })
    }

    /// A session with the relay at `addr`, where this relay sent a request
    /// ([`TechResponse::Elsewhere`]): same certificate, same hook.
    pub(crate) async fn follow(&self, relay_id: &str, addr: &str) -> Result<Self, RequestError> {
        tracing::info!(
            relay = relay_id,
            addr,
            "the device is on another relay: asking there"
        );
        let mut other = Self::open(&self.creds.at_relay(addr)).await?;
        other.asking = self.asking.clone();
        Ok(other)
    }

    /// Runs `hook` when the relay has accepted a session request or message and the user is
    /// being asked (with an older relay, which does not say, just before the request).
    pub fn on_asking(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.asking = Some(std::sync::Arc::new(hook));
        self
    }

    /// Before a request the user will see: runs the hook now if the relay will not say when.
    pub(crate) fn asking_if_relay_cannot_tell(&self) {
        if !self.relay_asks {
            self.asked();
        }
    }

    fn asked(&self) {
        if let Some(hook) = &self.asking {
            hook();
        }
    }

    /// The answer on a request stream, after any [`TechResponse::Asking`] (each runs the hook).
    pub(crate) async fn answer(
        &self,
        recv: &mut quinn::RecvStream,
        limit: usize,
    ) -> Result<TechResponse, RequestError> {
        loop {
            match read_msg(recv, limit).await? {
                TechResponse::Asking => self.asked(),
                other => return Ok(other),
            }
        }
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Sends `req` and reads the answer. A relay that says the device is held by another
    /// relay is followed there, once.
    pub async fn request(&self, req: &TechRequest) -> Result<TechResponse, RequestError> {
        match self.request_here(req).await? {
            TechResponse::Elsewhere {
                relay_id,
                relay_addr,
            } => {
                let other = self.follow(&relay_id, &relay_addr).await?;
                match other.request_here(req).await? {
                    TechResponse::Elsewhere { .. } => Err(RequestError::Offline(
                        "the relays disagree on which holds the device; try again".into(),
                    )),
                    answer => Ok(answer),
                }
            }
            answer => Ok(answer),
        }
    }

    async fn request_here(&self, req: &TechRequest) -> Result<TechResponse, RequestError> {
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(NetError::from)?;
        write_msg(&mut send, req, limits::CONTROL).await?;
        let _ = send.finish();
        self.answer(&mut recv, limits::BULK).await
    }

    pub async fn devices(&self) -> Result<Vec<DeviceSummary>, RequestError> {
        match self.request(&TechRequest::ListDevices).await? {
            TechResponse::Devices(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    pub async fn inventory(&self, device: &str) -> Result<DeviceInventory, RequestError> {
        match self
            .request(&TechRequest::Inventory {
                device: device.to_string(),
            })
            .await?
        {
            TechResponse::Inventory(d) => Ok(*d),
            other => Err(unexpected(other)),
        }
    }

    pub async fn inventory_all(&self) -> Result<Vec<InventoryRow>, RequestError> {
        match self.request(&TechRequest::InventoryAll).await? {
            TechResponse::InventoryRows(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    pub async fn software(
        &self,
        name: &str,
        version_below: Option<String>,
    ) -> Result<Vec<SoftwareRow>, RequestError> {
        match self
            .request(&TechRequest::Software {
                name: name.to_string(),
                version_below,
            })
            .await?
        {
            TechResponse::Software(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    pub async fn history(
        &self,
        device: &str,
        since_unix_ms: i64,
    ) -> Result<DeviceHistory, RequestError> {
        match self
            .request(&TechRequest::History {
                device: device.to_string(),
                since_unix_ms,
            })
            .await?
        {
            TechResponse::History(h) => Ok(*h),
            other => Err(unexpected(other)),
        }
    }

    pub async fn sessions(
        &self,
        device: Option<String>,
        technician: Option<String>,
        since_unix_ms: i64,
    ) -> Result<Vec<SessionRow>, RequestError> {
        match self
            .request(&TechRequest::Sessions {
                device,
                technician,
                since_unix_ms,
            })
            .await?
        {
            TechResponse::Sessions(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    pub async fn report(&self, since_unix_ms: i64) -> Result<Vec<ReportRow>, RequestError> {
        match self.request(&TechRequest::Report { since_unix_ms }).await? {
            TechResponse::Report(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Shows `text` to the user at `device` and waits up to `wait` for their reply.
    pub async fn say(
        &self,
        device: &str,
        text: &str,
        wait: std::time::Duration,
    ) -> Result<Option<String>, RequestError> {
        self.asking_if_relay_cannot_tell();
        match self
            .request(&TechRequest::Say {
                device: device.to_string(),
                text: text.to_string(),
                wait_ms: wait.as_millis() as u64,
            })
            .await?
        {
            TechResponse::Said { reply } => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// Ends this technician's engagement on `device` for `ticket`. False if none was open.
    pub async fn end_engagement(&self, device: &str, ticket: &str) -> Result<bool, RequestError> {
        match self
            .request(&TechRequest::EndEngagement {
                device: device.to_string(),
                ticket: ticket.to_string(),
            })
            .await?
        {
            TechResponse::EngagementEnded { ended } => Ok(ended),
            other => Err(unexpected(other)),
        }
    }

    /// Admins: a one-time enrollment token and its expiry.
    pub async fn create_token(
        &self,
        for_whom: TokenFor,
        ttl: std::time::Duration,
        relay_addr: Option<String>,
    ) -> Result<(String, i64), RequestError> {
        match self
            .request(&TechRequest::CreateToken {
                for_whom,
                ttl_ms: ttl.as_millis() as u64,
                relay_addr,
            })
            .await?
        {
            TechResponse::Token {
                token,
                expires_unix_ms,
            } => Ok((token, expires_unix_ms)),
            other => Err(unexpected(other)),
        }
    }

    /// Admins: change a device group's policy.
    pub async fn set_policy(
        &self,
        group: &str,
        unattended: Option<bool>,
        record_shells: Option<bool>,
        allow_root: Option<bool>,
    ) -> Result<(), RequestError> {
        match self
            .request(&TechRequest::SetPolicy {
                group: group.to_string(),
                unattended,
                record_shells,
                allow_root,
            })
            .await?
        {
            TechResponse::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub async fn add_notes(&self, session_id: &str, text: &str) -> Result<(), RequestError> {
        match self
            .request(&TechRequest::AddNotes {
                session_id: session_id.to_string(),
                text: text.to_string(),
            })
            .await?
        {
            TechResponse::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub async fn close(self) {
        self.conn.close(close_code::NORMAL.into(), b"bye");
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.endpoint.wait_idle())
            .await;
    }
}
