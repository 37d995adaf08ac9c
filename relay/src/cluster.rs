//! Several relays on one shared store: presence across relays ([`SharedPresence`]) and the
//! relay's own heartbeat.
//!
//! Each relay writes a lease for every agent connected to it (device → relay id, connection
//! epoch, expiry) in batches, renews all of them in one statement, and says it is alive every
//! [`BEAT`]; every beat it also reads the live leases of the others into memory, so "is this
//! device online" and "which relay holds it" stay answers from memory. A relay killed without
//! cleaning up is forgotten after [`RELAY_ALIVE_MS`] (its leases stop counting), and its agents
//! take fresh leases where they reconnect.

use crate::presence::{Holder, LocalPresence, Presence};
use crate::store::cluster::{LeaseChange, RELAY_ALIVE_MS};
use crate::store::{Store, now_ms};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// How often a relay says it is alive and reads the others' leases.
pub const BEAT: Duration = Duration::from_secs(1);
/// A lease lasts this long unless renewed (every [`RENEW`]).
const LEASE_MS: i64 = 30_000;
const RENEW: Duration = Duration::from_secs(10);
/// Failed beats in a row after which the other relays' leases are forgotten.
const FORGET_AFTER: u32 = 4;
/// Lease changes written in one transaction, at most.
const BATCH: usize = 1024;

/// This relay's identity in the cluster.
#[derive(Debug, Clone)]
pub struct Me {
    pub id: String,
    /// Where technicians and agents reach this relay (given to those sent here).
    pub addr: String,
}

/// Presence over a shared store: this relay's connections, plus the leases of the others.
pub struct SharedPresence {
    local: LocalPresence,
    me: Me,
    changes: mpsc::UnboundedSender<LeaseChange>,
    view: RwLock<View>,
}

/// What the last beat read: devices held by other live relays, and their addresses.
#[derive(Default)]
struct View {
    held: HashMap<String, String>,
    relays: HashMap<String, String>,
}

impl SharedPresence {
    /// Starts the lease writer and the heartbeat on the current runtime. The store must be
    /// one several relays can share ([`crate::store::backend::Backend::cluster`]).
    pub async fn start(store: Store, me: Me) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let presence = Arc::new(Self {
            local: LocalPresence::default(),
            me,
            changes: tx,
            view: RwLock::new(View::default()),
        });
        if let Some(c) = store.cluster() {
            match c.clear_leases(&presence.me.id).await {
                Ok(0) => {}
                Ok(n) => info!(n, "dropped the leases of this relay's previous run"),
                Err(e) => warn!("store error clearing old leases: {e}"),
            }
        }
        let started = now_ms();
        tokio::spawn(write_leases(store.clone(), presence.me.id.clone(), rx));
        tokio::spawn(beat(store, Arc::downgrade(&presence), started));
        presence
    }

    fn send(&self, change: LeaseChange) {
        // The writer lives as long as the runtime; a send after it stopped changes nothing.
        let _ = self.changes.send(change);
    }
}

impl Presence for SharedPresence {
    fn register(&self, device: &str, conn_id: u64, conn: quinn::Connection) {
        self.local.register(device, conn_id, conn);
        self.send(LeaseChange::Take {
            device: device.to_string(),
            epoch: epoch(conn_id),
        });
    }

    fn unregister(&self, device: &str, conn_id: u64) -> bool {
        let gone = self.local.unregister(device, conn_id);
        if gone {
            self.send(LeaseChange::Give {
                device: device.to_string(),
                epoch: epoch(conn_id),
            });
        }
        gone
    }

    fn connection(&self, device: &str) -> Option<quinn::Connection> {
        self.local.connection(device)
    }

    fn is_online(&self, device: &str) -> bool {
        self.local.is_online(device) || self.elsewhere(device).is_some()
    }

    fn devices(&self) -> Vec<String> {
        self.local.devices()
    }

    fn count(&self) -> usize {
        self.local.count()
    }

    fn elsewhere(&self, device: &str) -> Option<Holder> {
        if self.local.is_online(device) {
            return None;
        }
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        let relay = view.held.get(device)?;
        Some(Holder {
            relay_id: relay.clone(),
            addr: view.relays.get(relay)?.clone(),
        })
    }
}

fn epoch(conn_id: u64) -> i64 {
    i64::try_from(conn_id).unwrap_or(i64::MAX)
}

/// Writes lease changes in batches: as many per transaction as queued up while the last one
/// was written. A batch the store refused is retried (in order) at the next beat.
async fn write_leases(store: Store, me: String, mut rx: mpsc::UnboundedReceiver<LeaseChange>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if batch.is_empty() && rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let Some(c) = store.cluster() else { return };
        match c
            .change_leases(&me, &batch, now_ms().saturating_add(LEASE_MS))
            .await
        {
            Ok(()) => batch.clear(),
            Err(e) => {
                warn!("store error writing {} presence leases: {e}", batch.len());
                tokio::time::sleep(BEAT).await;
            }
        }
    }
}

/// Says this relay is alive, renews its leases and reads everyone's, until the presence goes.
async fn beat(store: Store, presence: std::sync::Weak<SharedPresence>, started: i64) {
    let Some(c) = store.cluster() else { return };
    let mut renewed = tokio::time::Instant::now();
    let mut failures = 0u32;
    loop {
        let Some(p) = presence.upgrade() else { return };
        let now = now_ms();
        let result = async {
            c.relay_alive(&p.me.id, &p.me.addr, started, now).await?;
            if renewed.elapsed() >= RENEW {
                let n = c
                    .renew_leases(&p.me.id, now.saturating_add(LEASE_MS))
                    .await?;
                debug!(n, "presence leases renewed");
                renewed = tokio::time::Instant::now();
            }
            let alive_since = now.saturating_sub(RELAY_ALIVE_MS);
            let relays = c.relays(alive_since).await?;
            let leases = c.leases(now, alive_since).await?;
            Ok::<_, crate::store::StoreError>((relays, leases))
        }
        .await;
        match result {
            Ok((relays, leases)) => {
                let view = View {
                    held: leases
                        .into_iter()
                        .filter(|l| l.relay_id != p.me.id)
                        .map(|l| (l.device_id, l.relay_id))
                        .collect(),
                    relays: relays
                        .into_iter()
                        .filter(|r| r.id != p.me.id)
                        .map(|r| (r.id, r.public_addr))
                        .collect(),
                };
                *p.view.write().unwrap_or_else(|e| e.into_inner()) = view;
                if failures > 0 {
                    info!("shared store reachable again: presence across relays restored");
                    failures = 0;
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    warn!("store error in the cluster heartbeat: {e}");
                }
                if failures == FORGET_AFTER {
                    // What the others hold can no longer be known: their devices show offline
                    // here (and are not sent to them) until the store answers again.
                    warn!("shared store unreachable: other relays' devices show offline here");
                    *p.view.write().unwrap_or_else(|e| e.into_inner()) = View::default();
                }
            }
        }
        drop(p);
        tokio::time::sleep(BEAT).await;
    }
}

/// The addresses of every live relay (`me` first), for enrollment tokens: an agent or a
/// technician fails over between them. `me.addr` is the fallback for `me`'s address: the
/// address a running `me` announced wins (a command run beside the relay knows only the
/// settings).
pub async fn relay_addrs(store: &Store, me: &Me) -> Vec<String> {
    let mut mine = me.addr.clone();
    let mut others = Vec::new();
    if let Some(c) = store.cluster()
        && let Ok(relays) = c.relays(now_ms().saturating_sub(RELAY_ALIVE_MS)).await
    {
        for r in relays {
            if r.id == me.id {
                mine = r.public_addr;
            } else if !others.contains(&r.public_addr) {
                others.push(r.public_addr);
            }
        }
    }
    others.retain(|a| a != &mine);
    others.insert(0, mine);
    others
}

/// A relay seen alive this recently is counted among those sharing the fleet (long enough that
/// a relay restarting, or one that starts before the others, still counts its peers).
const SERVING_WITHIN_MS: i64 = 10 * 60 * 1000;

/// How many relays share the fleet's agents (1 for a store of its own): each sets its
/// keep-alive interval by its share.
pub async fn serving_relays(store: &Store) -> u64 {
    let Some(c) = store.cluster() else { return 1 };
    match c.relays(now_ms().saturating_sub(SERVING_WITHIN_MS)).await {
        Ok(relays) => (relays.len() as u64).max(1),
        Err(e) => {
            debug!("store error counting relays: {e}");
            1
        }
    }
}

/// How often a relay without the lead tries to take it, and the leader checks it still has it.
const LEAD_CHECK: Duration = Duration::from_secs(1);

/// The fleet-wide alert evaluator's seat among relays sharing the store: whoever holds the
/// store's `alerts` lock (a PostgreSQL advisory lock, released by the server when its holder's
/// connection ends). When the leader dies another relay takes it within [`LEAD_CHECK`] of the
/// server noticing.
pub struct Lead {
    store: Store,
    held: Arc<std::sync::atomic::AtomicBool>,
}

impl Lead {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            held: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl crate::alerts::Seat for Lead {
    async fn acquire(&self) {
        use std::sync::atomic::Ordering;
        let Some(c) = self.store.cluster() else {
            return;
        };
        loop {
            match c.try_lock("alerts").await {
                Ok(Some(mut lock)) => {
                    info!("this relay now evaluates the fleet's alerts");
                    self.held.store(true, Ordering::SeqCst);
                    let held = self.held.clone();
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(LEAD_CHECK).await;
                            if !lock.still_held().await {
                                warn!("lost the lead for the fleet's alerts (store unreachable)");
                                held.store(false, Ordering::SeqCst);
                                return;
                            }
                        }
                    });
                    return;
                }
                Ok(None) => {}
                Err(e) => debug!("store error taking the lead for alerts: {e}"),
            }
            tokio::time::sleep(LEAD_CHECK).await;
        }
    }

    fn held(&self) -> bool {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }
}
