//! Health reports and alerts on the relay.
//!
//! An agent's connection task hands each report to [`Alerts::ingest`], which rate-limits it,
//! cleans it again ([`HealthReport::sanitize`]), stores it as the device's latest, and passes it
//! to the alert engine without waiting for it. The engine is one task that owns every device's
//! [`DeviceAlerts`] state machine (protocol crate): on a report and on a periodic tick (for
//! silent devices) it feeds the group's thresholds, the report and the time in, records the
//! alerts that open and close in the store, and queues a webhook delivery for each. Deliveries
//! run on a task of their own (blocking HTTP on the blocking pool, bounded timeouts, retries
//! with backoff), so a slow ticket system delays nothing but other deliveries.
//!
//! The engine's per-device state is a cache of the store (open alerts, last report times),
//! rebuilt whenever it may differ. Which relay runs it is a [`Seat`]: with one relay it is
//! always this one ([`SoleRelay`]); with several, only the holder of a shared lease does, the
//! others storing reports for it, and a relay that loses the lease stops and restores from the
//! store when it gets it back.

use crate::store::{AlertFilter, AlertPolicy, DeviceRow, Store, StoreError, now_ms};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether_protocol::health::{
    AlertRow, DeviceAlerts, DeviceHealth, HealthReport, Thresholds, Transition,
};
use tether_protocol::message::{DeviceSummary, ErrorCode, TechResponse};
use thiserror::Error;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Reports from one device closer together than this are dropped (agents send one a minute by
/// default; this only stops a misbehaving agent from making the relay write all the time).
pub const MIN_REPORT_SPACING: Duration = Duration::from_millis(500);
/// Reports waiting for the engine; more are dropped (with a warning), never waited for.
const QUEUE: usize = 4096;
/// Webhook deliveries waiting; more are dropped (with a warning).
const WEBHOOK_QUEUE: usize = 1024;
/// Tries per delivery, and the first pause between them (doubled each time).
const WEBHOOK_ATTEMPTS: u32 = 5;
const WEBHOOK_FIRST_BACKOFF: Duration = Duration::from_millis(500);
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
const WEBHOOK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `tether alerts --all` looks back for closed alerts, and how many rows it returns.
pub const RECENT: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_ROWS: u32 = 1000;
/// Policies are read again from the store at most this often (the CLI changes them, on any
/// relay): a change applies to evaluations from at most this long after it.
const POLICY_TTL: Duration = Duration::from_secs(1);

enum Event {
    Report {
        device: String,
        report: Box<HealthReport>,
        at: i64,
    },
}

/// Whether this relay runs the alert engine.
#[async_trait::async_trait]
pub trait Seat: Send + Sync {
    /// Returns once this relay should run the engine.
    async fn acquire(&self);
    /// Whether it still should; checked before each evaluation.
    fn held(&self) -> bool;
}

/// One relay: it always runs the engine.
pub struct SoleRelay;

#[async_trait::async_trait]
impl Seat for SoleRelay {
    async fn acquire(&self) {}
    fn held(&self) -> bool {
        true
    }
}

/// The relay's side of health: what the connection tasks talk to.
pub struct Alerts {
    /// To the writer, which stores reports in batches and then hands them to the engine.
    reports: mpsc::Sender<(String, HealthReport, i64)>,
    last_accepted: Mutex<HashMap<String, Instant>>,
}

impl Alerts {
    /// Starts the alert engine (run while `seat` is held) and the webhook sender on the
    /// current runtime.
    ///
    /// `shared`: other relays store reports in the same store, which the engine (while this
    /// relay holds the seat) reads back every [`CATCH_UP`] to evaluate them too.
    pub fn spawn(store: Store, relay_name: String, seat: Arc<dyn Seat>, shared: bool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let webhooks = spawn_webhooks();
        let engine = Engine {
            store,
            relay_name,
            devices: HashMap::new(),
            states: HashMap::new(),
            policies: HashMap::new(),
            policies_read: None,
            started: now_ms(),
            stale: true,
            webhooks,
            seat: seat.clone(),
            shared,
            seen: HashMap::new(),
        };
        let (reports, pending) = mpsc::channel(QUEUE);
        tokio::spawn(write_reports(engine.store.clone(), pending, tx, seat));
        tokio::spawn(engine.run(rx));
        Self {
            reports,
            last_accepted: Mutex::new(HashMap::new()),
        }
    }

    /// A health report from a device's agent (untrusted). Queues it to be stored and then
    /// evaluated; waits only when the store falls behind (so that agent's reports slow down).
    pub async fn ingest(&self, device: &str, mut report: HealthReport) {
        let now = Instant::now();
        {
            let Ok(mut last) = self.last_accepted.lock() else {
                return;
            };
            if last
                .get(device)
                .is_some_and(|t| now.duration_since(*t) < MIN_REPORT_SPACING)
            {
                debug!("health report dropped: too soon after the previous one");
                return;
            }
            last.insert(device.to_string(), now);
        }
        let cleaned = report.sanitize();
        if !cleaned.is_empty() {
            info!("health report cleaned: {}", cleaned.join("; "));
        }
        if self
            .reports
            .send((device.to_string(), report, now_ms()))
            .await
            .is_err()
        {
            warn!("health writer stopped: report not stored");
        }
    }
}

/// Most reports written in one transaction.
const WRITE_BATCH: usize = 512;

/// Stores queued reports, as many per transaction as have queued up while the last one was
/// written (one when the relay is quiet: no added delay), then hands them to the engine.
async fn write_reports(
    store: Store,
    mut pending: mpsc::Receiver<(String, HealthReport, i64)>,
    engine: mpsc::Sender<Event>,
    seat: Arc<dyn Seat>,
) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while pending.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        if let Err(e) = store.put_health_many(&batch).await {
            warn!(
                "store error: {e}: {} health reports not stored",
                batch.len()
            );
            batch.clear();
            continue;
        }
        if !seat.held() {
            // Stored for the relay that evaluates (it reads them back from the store).
            batch.clear();
            continue;
        }
        for (device, report, at) in batch.drain(..) {
            let ev = Event::Report {
                device,
                report: Box::new(report),
                at,
            };
            if engine.try_send(ev).is_err() {
                warn!("alert engine busy: health report not evaluated");
            }
        }
    }
}

#[derive(Debug, Clone)]
struct DeviceInfo {
    group: String,
    first_seen: i64,
}

struct Engine {
    store: Store,
    relay_name: String,
    devices: HashMap<String, DeviceInfo>,
    states: HashMap<String, DeviceAlerts>,
    policies: HashMap<String, AlertPolicy>,
    policies_read: Option<Instant>,
    /// When this relay started: silence before it is not the devices' fault.
    started: i64,
    /// The states must be read from the store again (at start, and after a store error left
    /// them possibly different from what the store holds).
    stale: bool,
    webhooks: mpsc::Sender<Delivery>,
    seat: Arc<dyn Seat>,
    /// Other relays store reports too: read them back every [`CATCH_UP`].
    shared: bool,
    /// When the last report of each device the engine evaluated was received.
    seen: HashMap<String, i64>,
}

/// How often the evaluating relay reads back the reports other relays stored.
const CATCH_UP: Duration = Duration::from_secs(2);

impl Engine {
    async fn run(mut self, mut rx: mpsc::Receiver<Event>) {
        let mut next_tick = tokio::time::Instant::now();
        let mut next_catch_up = tokio::time::Instant::now() + CATCH_UP;
        loop {
            if !self.seat.held() {
                // Another relay evaluates meanwhile: what this one held is no longer the truth.
                self.stale = true;
                self.seat.acquire().await;
                // Reports queued before the seat changed hands were stored; the catch-up reads
                // them back.
                while rx.try_recv().is_ok() {}
            }
            tokio::select! {
                () = tokio::time::sleep_until(next_catch_up), if self.shared => {
                    if let Err(e) = self.catch_up().await {
                        warn!("alerts: store error reading other relays' reports: {e}");
                        self.stale = true;
                    }
                    next_catch_up = tokio::time::Instant::now() + CATCH_UP;
                }
                ev = rx.recv() => match ev {
                    Some(Event::Report { device, report, at }) => {
                        if let Err(e) = self.on_report(&device, &report, at).await {
                            warn!(device, "alerts: store error: {e}");
                            self.stale = true;
                        }
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(next_tick) => {
                    if let Err(e) = self.on_tick().await {
                        warn!("alerts: store error: {e}");
                        self.stale = true;
                    }
                    next_tick = tokio::time::Instant::now() + self.tick_period();
                }
            }
        }
    }

    /// Reads the states from the store if they may differ from it.
    async fn restore_if_stale(&mut self) -> Result<(), StoreError> {
        if self.stale {
            self.restore().await?;
            self.stale = false;
        }
        Ok(())
    }

    /// Open alerts and the time of each device's last report, from the store.
    async fn restore(&mut self) -> Result<(), StoreError> {
        let mut open: HashMap<String, Vec<_>> = HashMap::new();
        for (device, key) in self.store.open_alert_keys().await? {
            open.entry(device).or_default().push(key);
        }
        let last: HashMap<String, i64> = self.store.health_received().await?.into_iter().collect();
        // What is restored counts as seen: the catch-up evaluates only what comes after.
        self.seen = last.clone();
        let mut ids: Vec<&String> = open.keys().chain(last.keys()).collect();
        ids.sort();
        ids.dedup();
        self.states = ids
            .into_iter()
            .map(|id| {
                let keys = open.get(id).cloned().unwrap_or_default();
                (
                    id.clone(),
                    DeviceAlerts::restore(keys, last.get(id).copied()),
                )
            })
            .collect();
        if !open.is_empty() {
            info!(
                "alerts: {} open alerts restored",
                open.values().map(Vec::len).sum::<usize>()
            );
        }
        Ok(())
    }

    /// One device's state (after a restore, a device the engine does not hold has no open
    /// alerts and no report).
    fn state(&mut self, device: &str) -> &mut DeviceAlerts {
        self.states.entry(device.to_string()).or_default()
    }

    async fn refresh_devices(&mut self) -> Result<(), StoreError> {
        self.devices = self
            .store
            .list_devices()
            .await?
            .into_iter()
            .map(|d: DeviceRow| {
                (
                    d.id,
                    DeviceInfo {
                        group: d.group,
                        first_seen: d.first_seen,
                    },
                )
            })
            .collect();
        Ok(())
    }

    async fn refresh_policies(&mut self, force: bool) -> Result<(), StoreError> {
        if !force && self.policies_read.is_some_and(|t| t.elapsed() < POLICY_TTL) {
            return Ok(());
        }
        self.policies = self
            .store
            .alert_policies()
            .await?
            .into_iter()
            .map(|p| (p.group.clone(), p))
            .collect();
        self.policies_read = Some(Instant::now());
        Ok(())
    }

    fn policy(&self, group: &str) -> AlertPolicy {
        self.policies
            .get(group)
            .cloned()
            .unwrap_or_else(|| AlertPolicy::defaults(group))
    }

    /// Often enough to notice silence within a quarter of the shortest silence time.
    fn tick_period(&self) -> Duration {
        let shortest = self
            .policies
            .values()
            .map(|p| p.thresholds.silent_after)
            .chain([Thresholds::default().silent_after])
            .min()
            .unwrap_or(Duration::from_secs(600));
        (shortest / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
    }

    /// Evaluates the reports stored since the engine last saw each device's (by other relays,
    /// or by this one before it held the seat).
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        self.restore_if_stale().await?;
        for (device, at) in self.store.health_received().await? {
            if self.seen.get(&device).is_some_and(|seen| *seen >= at) {
                continue;
            }
            if let Some((at, report)) = self.store.health(&device).await? {
                self.on_report(&device, &report, at).await?;
            }
        }
        Ok(())
    }

    async fn on_report(
        &mut self,
        device: &str,
        report: &HealthReport,
        at: i64,
    ) -> Result<(), StoreError> {
        self.restore_if_stale().await?;
        self.seen.insert(device.to_string(), at);
        if !self.devices.contains_key(device) {
            self.refresh_devices().await?;
        }
        self.refresh_policies(false).await?;
        let group = self
            .devices
            .get(device)
            .map(|d| d.group.clone())
            .unwrap_or_default();
        let policy = self.policy(&group);
        let transitions = self.state(device).on_report(&policy.thresholds, report, at);
        self.apply(device, &policy, transitions, at).await
    }

    async fn on_tick(&mut self) -> Result<(), StoreError> {
        self.restore_if_stale().await?;
        self.refresh_devices().await?;
        self.refresh_policies(true).await?;
        let now = now_ms();
        let devices: Vec<(String, DeviceInfo)> = self
            .devices
            .iter()
            .map(|(id, d)| (id.clone(), d.clone()))
            .collect();
        for (id, info) in devices {
            let policy = self.policy(&info.group);
            let baseline = info.first_seen.max(self.started);
            let transitions = self.state(&id).on_tick(&policy.thresholds, now, baseline);
            self.apply(&id, &policy, transitions, now).await?;
        }
        Ok(())
    }

    /// Records what opened and closed, and tells the group's webhook.
    async fn apply(
        &mut self,
        device: &str,
        policy: &AlertPolicy,
        transitions: Vec<Transition>,
        at: i64,
    ) -> Result<(), StoreError> {
        for t in transitions {
            let (event, id) = match &t {
                Transition::Open { key, reading } => (
                    "alert.opened",
                    self.store.open_alert(device, key, reading, at).await?,
                ),
                Transition::Close { key, reading } => (
                    "alert.closed",
                    self.store
                        .close_alert(device, key, &reading.detail, at)
                        .await?,
                ),
            };
            let Some(id) = id else {
                debug!(device, key = ?t.key(), "alert already in that state in the store");
                continue;
            };
            let Some(row) = self.store.alert(id).await? else {
                continue;
            };
            info!(
                device,
                kind = %row.kind,
                subject = row.subject,
                "{event}: {}",
                if event == "alert.opened" {
                    &row.detail
                } else {
                    row.close_detail.as_deref().unwrap_or("")
                }
            );
            if let Some(url) = &policy.webhook {
                let body = webhook_body(event, &self.relay_name, &row);
                let delivery = Delivery {
                    url: url.clone(),
                    body,
                    what: format!("{event} #{id}"),
                };
                if self.webhooks.try_send(delivery).is_err() {
                    warn!("webhook queue full: {event} #{id} not sent");
                }
            }
        }
        Ok(())
    }
}

/// One alert as JSON (the webhook's `alert` and `tether alerts --json` rows).
pub fn alert_json(a: &AlertRow) -> serde_json::Value {
    serde_json::to_value(a.json()).unwrap_or_default()
}

/// `{"event": "alert.opened"|"alert.closed", "relay": NAME, "alert": {…}}`.
pub fn webhook_body(event: &str, relay: &str, a: &AlertRow) -> Vec<u8> {
    let v = json!({ "event": event, "relay": relay, "alert": alert_json(a) });
    serde_json::to_vec(&v).unwrap_or_default()
}

struct Delivery {
    url: String,
    body: Vec<u8>,
    what: String,
}

fn spawn_webhooks() -> mpsc::Sender<Delivery> {
    let (tx, mut rx) = mpsc::channel::<Delivery>(WEBHOOK_QUEUE);
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(WEBHOOK_TIMEOUT))
        .timeout_connect(Some(WEBHOOK_CONNECT_TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(true)
        .user_agent(concat!("tether-relay/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    // One delivery at a time keeps each alert's opening before its closing.
    tokio::spawn(async move {
        while let Some(d) = rx.recv().await {
            deliver(&agent, d).await;
        }
    });
    tx
}

async fn deliver(agent: &ureq::Agent, d: Delivery) {
    let mut pause = WEBHOOK_FIRST_BACKOFF;
    for attempt in 1..=WEBHOOK_ATTEMPTS {
        let (a, url, body) = (agent.clone(), d.url.clone(), d.body.clone());
        let sent = tokio::task::spawn_blocking(move || {
            a.post(&url)
                .header("Content-Type", "application/json")
                .send(&body[..])
                .map(|r| r.status().as_u16())
        })
        .await;
        let err = match sent {
            Ok(Ok(status)) => {
                debug!(status, "webhook: {} delivered", d.what);
                return;
            }
            Ok(Err(e)) => e,
            Err(e) => {
                warn!("webhook: {} not sent: {e}", d.what);
                return;
            }
        };
        let permanent = matches!(err, ureq::Error::StatusCode(s) if (400..500).contains(&s) && s != 408 && s != 429)
            || matches!(
                err,
                ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::RedirectFailed
            );
        if permanent || attempt == WEBHOOK_ATTEMPTS {
            warn!(
                "webhook: {} to {} failed after {attempt} attempts: {err}",
                d.what,
                redact(&d.url)
            );
            return;
        }
        debug!("webhook: {} attempt {attempt} failed: {err}", d.what);
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}

/// The URL without its path and query (which may hold a token), for logs.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    format!("{scheme}://{host}/…")
}

/// Answers `TechRequest::Health` for a resolved device.
pub(crate) async fn device_health(
    store: &Store,
    device: DeviceSummary,
) -> Result<TechResponse, StoreError> {
    let Some((received, report)) = store.health(&device.id).await? else {
        return Ok(TechResponse::Error {
            code: ErrorCode::NotFound,
            message: format!(
                "device {} has not reported its health yet (is its agent running, and recent?)",
                device.hostname
            ),
        });
    };
    let alerts = store
        .alerts(&AlertFilter {
            closed_since: None,
            device_id: Some(device.id.clone()),
            limit: MAX_ROWS,
        })
        .await?;
    Ok(TechResponse::Health(Box::new(DeviceHealth {
        device,
        received_unix_ms: received,
        report,
        alerts,
    })))
}

/// Answers `TechRequest::Alerts`.
pub(crate) async fn list(store: &Store, all: bool) -> Result<TechResponse, StoreError> {
    let recent = i64::try_from(RECENT.as_millis()).unwrap_or(i64::MAX);
    let rows = store
        .alerts(&AlertFilter {
            closed_since: all.then(|| now_ms().saturating_sub(recent)),
            device_id: None,
            limit: MAX_ROWS,
        })
        .await?;
    Ok(TechResponse::Alerts(rows))
}

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// A change to one group's alert policy (`tether-relay alerts-policy`); `None` keeps a value.
#[derive(Debug, Clone, Default)]
pub struct PolicyChange {
    pub group: String,
    pub disk_percent: Option<u8>,
    pub memory_percent: Option<u8>,
    pub memory_for: Option<Duration>,
    pub silent_after: Option<Duration>,
    /// `Some(None)` removes the webhook.
    pub webhook: Option<Option<String>>,
}

impl PolicyChange {
    pub fn is_empty(&self) -> bool {
        self.disk_percent.is_none()
            && self.memory_percent.is_none()
            && self.memory_for.is_none()
            && self.silent_after.is_none()
            && self.webhook.is_none()
    }
}

/// Checks a webhook URL: http or https, a host, no spaces or control characters, bounded.
pub fn check_webhook(url: &str) -> Result<(), String> {
    if url.len() > 2048 {
        return Err("webhook URL is longer than 2048 bytes".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("webhook URL contains spaces or control characters".into());
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("webhook URL must start with http:// or https://")?;
    if rest.split(['/', '?', '#']).next().unwrap_or("").is_empty() {
        return Err("webhook URL has no host".into());
    }
    url.parse::<ureq::http::Uri>()
        .map_err(|e| format!("webhook URL: {e}"))?;
    Ok(())
}

/// Applies a change on top of the group's current policy and stores it.
pub async fn change_policy(store: &Store, c: &PolicyChange) -> Result<AlertPolicy, PolicyError> {
    let mut p = store
        .alert_policies()
        .await?
        .into_iter()
        .find(|p| p.group == c.group)
        .unwrap_or_else(|| AlertPolicy::defaults(&c.group));
    let t = &mut p.thresholds;
    if let Some(v) = c.disk_percent {
        t.disk_percent = v;
    }
    if let Some(v) = c.memory_percent {
        t.memory_percent = v;
    }
    if let Some(v) = c.memory_for {
        t.memory_for = v;
    }
    if let Some(v) = c.silent_after {
        t.silent_after = v;
    }
    t.validate().map_err(PolicyError::Invalid)?;
    if let Some(w) = &c.webhook {
        if let Some(url) = w {
            check_webhook(url).map_err(PolicyError::Invalid)?;
        }
        p.webhook = w.clone();
    }
    let now = now_ms();
    store.set_alert_policy(&p, now).await?;
    p.updated_at = Some(now);
    Ok(p)
}

/// One policy as JSON (`tether-relay alerts-policy --json`).
pub fn policy_json(p: &AlertPolicy) -> serde_json::Value {
    let t = &p.thresholds;
    json!({
        "group": p.group,
        "disk_percent": t.disk_percent,
        "memory_percent": t.memory_percent,
        "memory_for_s": t.memory_for.as_secs(),
        "silent_after_s": t.silent_after.as_secs(),
        "webhook": p.webhook,
        "default": p.updated_at.is_none(),
        "updated_unix_ms": p.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        assert!(check_webhook("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_webhook("https://tickets.example.com/api/alerts?token=x").is_ok());
        for bad in [
            "ftp://x/",
            "http://",
            "https:///path",
            "http://a b/",
            "http://x/\u{1b}[31m",
            "tickets.example.com",
        ] {
            assert!(check_webhook(bad).is_err(), "{bad}");
        }
        assert!(check_webhook(&format!("https://x/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn redacts_paths_and_credentials() {
        assert_eq!(
            redact("https://user:pw@tickets.example.com/hook?token=secret"),
            "https://tickets.example.com/…"
        );
        assert_eq!(redact("http://127.0.0.1:9/x"), "http://127.0.0.1:9/…");
    }

    #[test]
    fn webhook_body_shape() {
        let row = AlertRow {
            id: 7,
            device_id: "d".into(),
            hostname: "ws-1".into(),
            group: "default".into(),
            kind: tether_protocol::health::AlertKind::Disk,
            subject: "/".into(),
            value: 93,
            threshold: 90,
            detail: "/: 93 % used".into(),
            opened_unix_ms: 0,
            closed_unix_ms: None,
            close_detail: None,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&webhook_body("alert.opened", "relay.example", &row)).unwrap();
        assert_eq!(v["event"], "alert.opened");
        assert_eq!(v["relay"], "relay.example");
        assert_eq!(v["alert"]["kind"], "disk");
        assert_eq!(v["alert"]["value"], 93);
        assert_eq!(v["alert"]["opened_at"], "1970-01-01T00:00:00.000Z");
        assert!(v["alert"]["closed_at"].is_null());
    }
}
