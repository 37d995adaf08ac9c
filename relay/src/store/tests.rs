//! The store's behaviour, written once and run against every backend: each test is an
//! `async fn(Store)`, and `backend_tests!` makes one `#[tokio::test]` per backend for it
//! (SQLite in a fresh file; PostgreSQL in a fresh database on the test process's private
//! server, `tether_pg`, which fails the test when PostgreSQL is not installed).

use super::*;
use tether_protocol::identity::Role;

/// A fresh, empty SQLite store in its own directory.
pub(super) async fn fresh_sqlite(name: &str) -> Store {
    let dir = std::env::temp_dir().join(format!("tether-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Store::open_sqlite(&dir.join("tether.db")).await.unwrap()
}

/// A fresh, empty PostgreSQL store: its own database on the process's private cluster.
pub(super) async fn fresh_postgres(name: &str) -> Store {
    let url = tokio::task::spawn_blocking({
        let name = name.to_string();
        move || tether_pg::database(&name)
    })
    .await
    .unwrap();
    Store::open(&StoreUrl::Postgres(url)).await.unwrap()
}

macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::fresh_sqlite(stringify!($name)).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::fresh_postgres(stringify!($name)).await).await
                }
            )*
        }
    };
}

backend_tests!(
    a_session_joins_only_an_engagement_of_its_technician_on_its_device,
    token_is_single_use_and_expires,
    re_enrollment_needs_replace_and_revocation_covers_every_serial,
    inventories_keep_history_and_the_package_index,
    alerts_open_and_close_once_per_key,
    group_policy_defaults_off_and_is_per_group,
    concurrent_uploads_of_one_device_both_land_with_a_consistent_history,
    software_globs_match_like_sqlite_glob,
    session_actions_are_numbered_once_each,
    racing_re_enrollments_leave_one_valid_certificate,
);

/// A hostile agent naming an engagement that is another technician's, or another device's,
/// does not get its session filed there.
async fn a_session_joins_only_an_engagement_of_its_technician_on_its_device(store: Store) {
    for (id, tech, device) in [
        ("s1", "ana", "d1"),
        ("s2", "ana", "d1"),
        ("s3", "bo", "d1"),
        ("s4", "ana", "d2"),
    ] {
        store
            .session_requested(&crate::store::SessionRow {
                id: id.into(),
                technician: tech.into(),
                device_id: device.into(),
                requested_unix_ms: 1,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert!(store.session_engaged("s2", "s1").await.unwrap());
    assert!(store.session_engaged("s1", "s1").await.unwrap());
    assert!(!store.session_engaged("s3", "s1").await.unwrap());
    assert!(!store.session_engaged("s4", "s1").await.unwrap());
    assert!(!store.session_engaged("s2", "no-such").await.unwrap());
    let rows = store
        .sessions(&crate::store::SessionFilter::default())
        .await
        .unwrap();
    let of = |id: &str| rows.iter().find(|r| r.id == id).unwrap().engagement.clone();
    assert_eq!(of("s2").as_deref(), Some("s1"));
    assert_eq!(of("s3"), None);
    assert_eq!(of("s4"), None);
}

async fn token_is_single_use_and_expires(store: Store) {
    let now = now_ms();
    let t = NewToken {
        secret_hash: [1; 32],
        kind: TokenKind::Agent {
            group: "default".into(),
        },
        created_at: now,
        expires_at: now + 1000,
    };
    store.insert_token(&t).await.unwrap();
    let expired = NewToken {
        secret_hash: [2; 32],
        expires_at: now - 1,
        ..t.clone()
    };
    store.insert_token(&expired).await.unwrap();

    // Two redemptions race: exactly one wins.
    let (a, b) = tokio::join!(
        store.redeem_token(&[1; 32], now, "a"),
        store.redeem_token(&[1; 32], now, "b")
    );
    let results = [a.unwrap(), b.unwrap()];
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.contains(&Err(RedeemError::AlreadyUsed)));
    assert_eq!(
        store.redeem_token(&[2; 32], now, "c").await.unwrap(),
        Err(RedeemError::Expired)
    );
    assert_eq!(
        store.redeem_token(&[3; 32], now, "d").await.unwrap(),
        Err(RedeemError::Unknown)
    );
}

async fn re_enrollment_needs_replace_and_revocation_covers_every_serial(store: Store) {
    assert_eq!(
        store
            .enroll_technician("ana", Role::Admin, "01", false, 1)
            .await
            .unwrap(),
        Ok(vec![])
    );
    assert_eq!(
        store
            .enroll_technician("ana", Role::Viewer, "02", false, 2)
            .await
            .unwrap(),
        Err(AlreadyEnrolled)
    );
    assert_eq!(
        store.certificate_status("02").await.unwrap(),
        CertStatus::Unknown
    );
    assert_eq!(
        store
            .enroll_technician("ana", Role::Viewer, "03", true, 3)
            .await
            .unwrap(),
        Ok(vec!["01".to_string()])
    );
    assert_eq!(
        store.certificate_status("01").await.unwrap(),
        CertStatus::Revoked
    );
    match store
        .revoke(RevokeTarget::Technician("ana"), "left", 4)
        .await
        .unwrap()
    {
        RevokeOutcome::Revoked { subject, serials } => {
            assert_eq!(subject, "tech:ana");
            assert_eq!(serials, vec!["03".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store
            .revoke(RevokeTarget::Serial("FF"), "", 5)
            .await
            .unwrap(),
        RevokeOutcome::NotFound
    );
}

fn device(id: &str, hostname: &str) -> DeviceRow {
    DeviceRow {
        id: id.into(),
        hostname: hostname.into(),
        group: "lab".into(),
        os: String::new(),
        agent_version: String::new(),
        first_seen: 1,
        last_seen: 1,
    }
}

fn package(name: &str, version: &str) -> tether_protocol::inventory::Package {
    tether_protocol::inventory::Package {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
        source: PackageSource::Dpkg,
    }
}

/// The domain step over the backend's primitives: the first inventory is one history entry,
/// the next records what changed, the package index follows both, and a read gives back what
/// was stored, packages included.
async fn inventories_keep_history_and_the_package_index(store: Store) {
    use tether_protocol::history::ChangeKind;
    use tether_protocol::inventory::Inventory;
    store
        .enroll_device(&device("d1", "ws1"), "01")
        .await
        .unwrap();
    store
        .enroll_device(&device("d2", "ws2"), "02")
        .await
        .unwrap();
    let first = Inventory {
        software: vec![package("curl", "7.88"), package("vim", "9.0")],
        ..Default::default()
    };
    assert_eq!(
        store.ingest_inventory("d1", 1, &first, 10).await.unwrap(),
        1
    );
    assert_eq!(
        store.ingest_inventory("d2", 1, &first, 10).await.unwrap(),
        1
    );
    let second = Inventory {
        software: vec![package("curl", "8.0"), package("htop", "3.2")],
        ..Default::default()
    };
    assert_eq!(
        store.ingest_inventory("d1", 2, &second, 20).await.unwrap(),
        3
    );
    assert_eq!(store.inventory_hash("d1").await.unwrap(), Some(2));
    let (at, back) = store.inventory("d1").await.unwrap().unwrap();
    assert_eq!(at, 20);
    let mut names: Vec<_> = back.software.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["curl", "htop"]);
    let kinds: Vec<_> = store
        .history("d1", 0)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, c)| c.kind)
        .collect();
    assert_eq!(kinds[0], ChangeKind::FirstInventory);
    assert!(kinds.contains(&ChangeKind::SoftwareUpgraded));
    assert!(kinds.contains(&ChangeKind::SoftwareInstalled));
    assert!(kinds.contains(&ChangeKind::SoftwareRemoved));
    assert_eq!(store.history("d1", 15).await.unwrap().len(), 3);
    let vim: Vec<_> = store
        .software("vim")
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.hostname)
        .collect();
    assert_eq!(vim, ["ws2"]);
    assert_eq!(store.software("curl").await.unwrap().len(), 2);
    assert_eq!(store.inventory_summaries().await.unwrap().len(), 2);
}

/// An alert opens once per key and closes once; the open keys are what a restarted relay
/// rebuilds its alert state from.
async fn alerts_open_and_close_once_per_key(store: Store) {
    use tether_protocol::health::{AlertKey, AlertKind, Reading};
    store
        .enroll_device(&device("d1", "ws1"), "01")
        .await
        .unwrap();
    let key = AlertKey::new(AlertKind::Disk, "/var");
    let reading = Reading {
        value: 93,
        threshold: 90,
        detail: "/var: 93 % used".into(),
    };
    let id = store.open_alert("d1", &key, &reading, 5).await.unwrap();
    assert!(id.is_some());
    assert_eq!(
        store.open_alert("d1", &key, &reading, 6).await.unwrap(),
        None
    );
    assert_eq!(
        store.open_alert_keys().await.unwrap(),
        vec![("d1".to_string(), key.clone())]
    );
    assert_eq!(store.close_alert("d1", &key, "ok", 7).await.unwrap(), id);
    assert_eq!(store.close_alert("d1", &key, "ok", 8).await.unwrap(), None);
    assert!(store.open_alert_keys().await.unwrap().is_empty());
    let row = store.alert(id.unwrap()).await.unwrap().unwrap();
    assert_eq!(row.hostname, "ws1");
}

/// Group policy is off until turned on, per group.
async fn group_policy_defaults_off_and_is_per_group(store: Store) {
    use PolicyFlag::*;
    assert!(!store.policy_flag("lab", Unattended).await.unwrap());
    store
        .set_policy_flag("lab", Unattended, true, 3)
        .await
        .unwrap();
    store
        .set_policy_flag("lab", AllowRoot, true, 3)
        .await
        .unwrap();
    assert!(store.policy_flag("lab", Unattended).await.unwrap());
    assert!(store.policy_flag("lab", AllowRoot).await.unwrap());
    assert!(!store.policy_flag("lab", RecordShells).await.unwrap());
    assert!(!store.policy_flag("office", Unattended).await.unwrap());
    store
        .set_policy_flag("lab", Unattended, false, 4)
        .await
        .unwrap();
    assert!(!store.policy_flag("lab", Unattended).await.unwrap());
    assert!(store.policy_flag("lab", AllowRoot).await.unwrap());
    let lab = store
        .policies()
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.group == "lab")
        .unwrap();
    assert_eq!(lab.updated_at, Some(4));
}

/// Two uploads of the same device at once (two relays, or a reconnect racing an upload): both
/// are stored, one after the other, and the history is the chain of both replacements — the
/// second diffed against the first, nothing recorded twice or lost.
async fn concurrent_uploads_of_one_device_both_land_with_a_consistent_history(store: Store) {
    use tether_protocol::inventory::Inventory;
    for round in 0..4 {
        let id = format!("d{round}");
        store
            .enroll_device(&device(&id, &format!("ws{round}")), &format!("0{round}"))
            .await
            .unwrap();
        let base = Inventory {
            software: vec![package("curl", "7.88")],
            ..Default::default()
        };
        store.ingest_inventory(&id, 1, &base, 10).await.unwrap();
        // x: curl upgraded. y: curl upgraded and vim installed.
        let x = Inventory {
            software: vec![package("curl", "8.0")],
            ..Default::default()
        };
        let y = Inventory {
            software: vec![package("curl", "8.0"), package("vim", "9.0")],
            ..Default::default()
        };
        let (a, b) = tokio::join!(
            store.ingest_inventory(&id, 2, &x, 20),
            store.ingest_inventory(&id, 3, &y, 20)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let history = store.history(&id, 0).await.unwrap();
        let (_, last) = store.inventory(&id).await.unwrap().unwrap();
        let mut names: Vec<_> = last.software.iter().map(|p| p.name.clone()).collect();
        names.sort();
        match store.inventory_hash(&id).await.unwrap() {
            // x, then y over it: one change each.
            Some(3) => {
                assert_eq!((a, b), (1, 1), "round {round}");
                assert_eq!(names, ["curl", "vim"]);
            }
            // y, then x over it: two changes, then vim removed.
            Some(2) => {
                assert_eq!((a, b), (1, 2), "round {round}");
                assert_eq!(names, ["curl"]);
            }
            other => panic!("round {round}: stored hash {other:?}"),
        }
        assert_eq!(
            history.len() as u32,
            1 + a + b,
            "round {round}: {history:?}"
        );
        let vim = store.software("vim").await.unwrap();
        assert_eq!(
            vim.iter().any(|h| h.device_id == id),
            names.contains(&"vim".to_string())
        );
    }
}

/// `software` with a `*` matches like SQLite's GLOB: `*` any run, `?` one character, and
/// everything else literally (LIKE's `_` and `%` included), case-sensitive.
async fn software_globs_match_like_sqlite_glob(store: Store) {
    use tether_protocol::inventory::Inventory;
    store
        .enroll_device(&device("d1", "ws1"), "01")
        .await
        .unwrap();
    let inv = Inventory {
        software: ["lib_a", "libxa", "lib%b", "Libc", "python3.11", "python3.9"]
            .iter()
            .map(|n| package(n, "1"))
            .collect(),
        ..Default::default()
    };
    store.ingest_inventory("d1", 1, &inv, 1).await.unwrap();
    let names = async |q: &str| -> Vec<String> {
        let mut v: Vec<_> = store
            .software(q)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.name)
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("lib_*").await, ["lib_a"]);
    assert_eq!(names("lib%*").await, ["lib%b"]);
    assert_eq!(names("lib*").await, ["lib%b", "lib_a", "libxa"]);
    assert_eq!(names("python3.?*").await, ["python3.11", "python3.9"]);
    assert_eq!(names("python3.?").await, Vec::<String>::new());
    assert_eq!(names("*").await.len(), 6);
    assert_eq!(names("lib_a").await, ["lib_a"]);
}

/// Actions reported at once for one session each get their own number, in a session that ran
/// on that device only.
async fn session_actions_are_numbered_once_each(store: Store) {
    store
        .session_requested(&SessionRow {
            id: "s1".into(),
            technician: "ana".into(),
            device_id: "d1".into(),
            requested_unix_ms: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!store.session_action("s1", "d1", "early", 2).await.unwrap());
    store
        .session_decided(
            "s1",
            tether_protocol::decision::Decision::Approved,
            "",
            "view",
            Some(2),
        )
        .await
        .unwrap();
    let results = futures_join_all(
        (0..8)
            .map(|i| {
                let store = store.clone();
                async move { store.session_action("s1", "d1", &format!("a{i}"), 3).await }
            })
            .collect(),
    )
    .await;
    assert!(results.into_iter().all(|r| r.unwrap()));
    assert!(
        !store
            .session_action("s1", "d2", "other device", 4)
            .await
            .unwrap()
    );
    let rows = store.sessions(&SessionFilter::default()).await.unwrap();
    let mut actions = rows[0].actions.clone();
    actions.sort();
    assert_eq!(actions.len(), 8);
    actions.dedup();
    assert_eq!(actions.len(), 8);
}

/// Runs the futures at once (on tasks of their own) and gives back their outputs.
async fn futures_join_all<F>(fs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Two `--replace` enrollments of one name at once (two relays): both are issued, one after
/// the other, so the later revokes the earlier and exactly one certificate stays valid.
async fn racing_re_enrollments_leave_one_valid_certificate(store: Store) {
    store
        .enroll_technician("ana", Role::Admin, "01", false, 1)
        .await
        .unwrap()
        .unwrap();
    for round in 0..4 {
        let (x, y) = (format!("a{round}"), format!("b{round}"));
        let (a, b) = tokio::join!(
            store.enroll_technician("ana", Role::Admin, &x, true, 2),
            store.enroll_technician("ana", Role::Admin, &y, true, 2)
        );
        let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
        // One of them revoked the other's new certificate.
        assert!(
            a.contains(&y) || b.contains(&x),
            "round {round}: {a:?} {b:?}"
        );
        let valid: Vec<_> = store
            .certificates(None, Some("ana"))
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.revoked_at.is_none())
            .map(|c| c.serial)
            .collect();
        assert_eq!(valid.len(), 1, "round {round}: {valid:?}");
    }
}
