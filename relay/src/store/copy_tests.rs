//! `copy` between every pair of backends: the copier knows each backend's whole schema, a copy
//! holds the same rows (ids and times included) and goes on from them, and a store that is not
//! empty is refused untouched.

use super::copy::{self, CopyError, Kind, Row, TABLES, Value};
use super::tests::{fresh_postgres, fresh_sqlite};
use super::*;
use tether_protocol::decision::Decision;
use tether_protocol::health::{AlertKey, AlertKind, HealthReport, Reading};
use tether_protocol::identity::Role;
use tether_protocol::inventory::{Inventory, Package};

/// A migrated store's tables and columns are exactly those the copier copies, with the types it
/// reads them as: a table or column added to a migration and not to `copy::TABLES` fails here.
async fn the_copier_knows_every_table_and_column(store: Store) {
    let schema = store.schema().await.unwrap();
    assert_eq!(copy::schema_difference(&schema), None);
    for t in TABLES {
        for c in t.columns {
            let ty = &schema
                .iter()
                .find(|s| s.table == t.name && s.column == c.name)
                .unwrap()
                .ty;
            let fits = match c.kind {
                Kind::Int => ["integer", "bigint"].contains(&ty.as_str()),
                Kind::Text => ty == "text",
                Kind::Blob => ["blob", "bytea"].contains(&ty.as_str()),
                Kind::Bool => ["integer", "boolean"].contains(&ty.as_str()),
            };
            assert!(fits, "{}.{} is {ty}, read as {:?}", t.name, c.name, c.kind);
        }
    }
    store.close().await;
}

#[tokio::test]
async fn sqlite_schema_is_all_copied() {
    the_copier_knows_every_table_and_column(fresh_sqlite("copy-schema").await).await;
}

#[tokio::test]
async fn postgres_schema_is_all_copied() {
    the_copier_knows_every_table_and_column(fresh_postgres("copy-schema").await).await;
}

fn package(i: usize) -> Package {
    Package {
        name: format!("pkg{i:04}"),
        version: format!("1.{i}"),
        arch: "amd64".into(),
        source: tether_protocol::inventory::PackageSource::Dpkg,
    }
}

/// Something in every table, and more than one batch in some (packages, session actions).
async fn populate(store: &Store) {
    let now = 1_700_000_000_000;
    for (i, group) in [(1u8, "lab"), (2, "accounting")] {
        store
            .insert_token(&NewToken {
                secret_hash: [i; 32],
                kind: TokenKind::Agent {
                    group: group.into(),
                },
                created_at: now,
                expires_at: now + 1000,
            })
            .await
            .unwrap();
    }
    store
        .insert_token(&NewToken {
            secret_hash: [9; 32],
            kind: TokenKind::Technician {
                name: "val".into(),
                role: Role::Viewer,
                replace: true,
            },
            created_at: now,
            expires_at: now + 1000,
        })
        .await
        .unwrap();
    store
        .redeem_token(&[1; 32], now + 1, "d1")
        .await
        .unwrap()
        .unwrap();
    for (id, host, group) in [("d1", "ws1", "lab"), ("d2", "ws2", "accounting")] {
        store
            .enroll_device(
                &DeviceRow {
                    id: id.into(),
                    hostname: host.into(),
                    group: group.into(),
                    os: "Debian 12".into(),
                    agent_version: "0.1".into(),
                    first_seen: now,
                    last_seen: now + 5,
                },
                &format!("0{}", &id[1..]),
            )
            .await
            .unwrap();
    }
    store
        .enroll_technician("ana", Role::Support, "A1", false, now)
        .await
        .unwrap()
        .unwrap();
    store
        .enroll_technician("ana", Role::Support, "A2", true, now + 1)
        .await
        .unwrap()
        .unwrap();
    store.grant_group("ana", "lab", true, now).await.unwrap();
    store
        .grant_group("ana", ALL_GROUPS, true, now)
        .await
        .unwrap();

    let first = Inventory {
        software: (0..600).map(package).collect(),
        ..Default::default()
    };
    store.ingest_inventory("d1", 1, &first, now).await.unwrap();
    store.ingest_inventory("d2", 1, &first, now).await.unwrap();
    let second = Inventory {
        software: (3..610).map(package).collect(),
        ..Default::default()
    };
    store
        .ingest_inventory("d1", 2, &second, now + 10)
        .await
        .unwrap();

    store
        .session_requested(&SessionRow {
            id: "s1".into(),
            technician: "ana".into(),
            device_id: "d1".into(),
            reason: "printer".into(),
            ticket: "HD-1".into(),
            permissions_asked: "view".into(),
            requested_unix_ms: now,
            activity: "command: df -h".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .session_decided("s1", Decision::Approved, "", "view", Some(now + 1))
        .await
        .unwrap();
    for i in 0..520 {
        assert!(
            store
                .session_action("s1", "d1", &format!("exec: echo {i}"), now + 2)
                .await
                .unwrap()
        );
    }
    store
        .session_ended("s1", now + 3, "technician", 10, 20)
        .await
        .unwrap();
    assert!(store.rate_session("s1", "d1", 5, "quick").await.unwrap());
    assert!(store.add_notes("s1", "ana", "done").await.unwrap());
    store
        .set_policy_flag("lab", PolicyFlag::RecordShells, true, now)
        .await
        .unwrap();
    store
        .set_policy_flag("lab", PolicyFlag::AllowRoot, true, now)
        .await
        .unwrap();

    store
        .put_health_many(&[("d1".into(), HealthReport::default(), now)])
        .await
        .unwrap();
    let key = AlertKey::new(AlertKind::Disk, "/var");
    let reading = Reading {
        value: 93,
        threshold: 90,
        detail: "/var: 93 % used".into(),
    };
    store.open_alert("d1", &key, &reading, now).await.unwrap();
    store.close_alert("d1", &key, "ok", now + 1).await.unwrap();
    store
        .open_alert("d1", &key, &reading, now + 2)
        .await
        .unwrap();
    let mut policy = AlertPolicy::defaults("lab");
    policy.thresholds.disk_percent = 80;
    policy.webhook = Some("https://hooks.example.org/t".into());
    store.set_alert_policy(&policy, now).await.unwrap();
    store
        .revoke(RevokeTarget::Device("d2"), "stolen", now + 7)
        .await
        .unwrap();
}

/// Every row of every table, in key order.
async fn dump(store: &Store) -> Vec<(&'static str, Vec<Row>)> {
    let mut tx = store.begin_export().await.unwrap();
    let mut out = Vec::new();
    for t in TABLES {
        let rows = tx.rows(t, None, 1_000_000).await.unwrap();
        out.push((t.name, rows));
    }
    tx.end().await.unwrap();
    out
}

async fn copies_everything(from: Store, to: Store) {
    populate(&from).await;
    let mut seen = Vec::new();
    let counts = copy::copy(&from, &to, &mut |p| seen.push(p)).await.unwrap();
    let before = dump(&from).await;
    for (name, rows) in &before {
        assert!(!rows.is_empty(), "{name} was not populated");
        let c = counts.iter().find(|c| c.table == *name).unwrap();
        assert_eq!((c.source, c.copied), (rows.len() as u64, rows.len() as u64));
    }
    assert_eq!(counts.len(), TABLES.len());
    assert!(seen.contains(&copy::Progress::Rows {
        table: "session_actions",
        done: 520,
        rows: 520
    }));
    assert_eq!(dump(&to).await, before);

    // What the relay reads back is the same.
    assert_eq!(
        to.list_devices().await.unwrap(),
        from.list_devices().await.unwrap()
    );
    let all = SessionFilter::default();
    assert_eq!(
        to.sessions(&all).await.unwrap(),
        from.sessions(&all).await.unwrap()
    );
    assert_eq!(
        to.history("d1", 0).await.unwrap(),
        from.history("d1", 0).await.unwrap()
    );
    assert_eq!(
        to.inventory("d1").await.unwrap(),
        from.inventory("d1").await.unwrap()
    );
    assert_eq!(
        to.certificate_status("02").await.unwrap(),
        CertStatus::Revoked
    );

    // Ids the database generates go on after the copied ones.
    let key = AlertKey::new(AlertKind::Memory, "");
    let reading = Reading {
        value: 99,
        threshold: 95,
        detail: "memory".into(),
    };
    let id = to
        .open_alert("d1", &key, &reading, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, 3);
    let history = to.history("d2", 0).await.unwrap().len();
    to.ingest_inventory("d2", 2, &Inventory::default(), 5)
        .await
        .unwrap();
    assert!(to.history("d2", 0).await.unwrap().len() > history);

    // A second copy into the same store is refused, and changes nothing.
    let after = dump(&to).await;
    match copy::copy(&from, &to, &mut |_| {}).await {
        Err(e @ CopyError::NotEmpty { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("devices: 2 rows"), "{msg}");
            assert_eq!(msg.lines().count(), 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dump(&to).await, after);
    from.close().await;
    to.close().await;
}

#[tokio::test]
async fn sqlite_to_postgres() {
    copies_everything(
        fresh_sqlite("copy-s2p").await,
        fresh_postgres("copy-s2p").await,
    )
    .await;
}

#[tokio::test]
async fn postgres_to_sqlite() {
    copies_everything(
        fresh_postgres("copy-p2s").await,
        fresh_sqlite("copy-p2s").await,
    )
    .await;
}

#[tokio::test]
async fn sqlite_to_sqlite() {
    copies_everything(
        fresh_sqlite("copy-s2s-a").await,
        fresh_sqlite("copy-s2s-b").await,
    )
    .await;
}

/// Values survive as they are: NULLs of every type, empty and non-ASCII text, every byte.
#[tokio::test]
async fn odd_values_survive_both_ways() {
    let a = fresh_sqlite("copy-odd-a").await;
    let b = fresh_postgres("copy-odd").await;
    a.insert_token(&NewToken {
        secret_hash: [0xff; 32],
        kind: TokenKind::Technician {
            name: "zoë".into(),
            role: Role::Admin,
            replace: false,
        },
        created_at: i64::MIN + 1,
        expires_at: i64::MAX,
    })
    .await
    .unwrap();
    copy::copy(&a, &b, &mut |_| {}).await.unwrap();
    let c = fresh_sqlite("copy-odd-c").await;
    copy::copy(&b, &c, &mut |_| {}).await.unwrap();
    let rows = dump(&c).await;
    let tokens = &rows.iter().find(|(n, _)| *n == "tokens").unwrap().1;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0][0], Value::Blob(Some(vec![0xff; 32])));
    assert_eq!(tokens[0][2], Value::Text(None));
    assert_eq!(tokens[0][3], Value::Text(Some("zoë".into())));
    assert_eq!(tokens[0][6], Value::Int(Some(i64::MAX)));
    assert_eq!(tokens[0][7], Value::Int(None));
    assert_eq!(tokens[0][9], Value::Bool(Some(false)));
    assert_eq!(dump(&a).await, rows);
    for s in [a, b, c] {
        s.close().await;
    }
}
