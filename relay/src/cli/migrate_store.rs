//! `tether-relay migrate-store`: copy every table of one store into another, empty one (from
//! SQLite to PostgreSQL, say) and check that each table holds as many rows as the source.

use super::Ctx;
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};
use tether_relay::store::copy::{self, Progress, TableCount};
use tether_relay::store::{Store, StoreUrl};

/// Copy a store into another, empty one (e.g. SQLite to PostgreSQL) and compare row counts.
///
/// Every table is copied: devices, technicians, certificates and revocations, tokens, grants,
/// inventories and their history, health, sessions and their actions, alerts, policies. The CA,
/// keys and settings are files in the data directory: only the store moves. Stop the relay for
/// the copy you switch to (what it writes after the copy's snapshot is not in it).
#[derive(clap::Args)]
pub struct MigrateStoreArgs {
    /// The store to copy, e.g. sqlite:///var/lib/tether-relay/tether.db.
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// The empty store to fill, e.g. postgres://tether:PASSWORD@db.example.org/tether.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Print the row counts as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Tables with at least this many rows get progress lines on stderr while they are copied.
const PROGRESS_ROWS: u64 = 5000;

pub async fn run(_: &Ctx, a: MigrateStoreArgs) -> Result<()> {
    let from: StoreUrl = a.from.parse().context("--from")?;
    let to: StoreUrl = a.to.parse().context("--to")?;
    if from == to {
        bail!("--from and --to are the same store ({from})");
    }
    // Opening a SQLite file that is not there would create an empty store and copy nothing.
    if let StoreUrl::Sqlite(path) = &from
        && !path.is_file()
    {
        bail!(
            "--from: there is no store at {} (a relay's is DATA/tether.db)",
            path.display()
        );
    }
    let source = Store::open(&from)
        .await
        .with_context(|| format!("opening {from}"))?;
    let dest = match Store::open(&to).await {
        Ok(s) => s,
        Err(e) => {
            source.close().await;
            return Err(e).context(format!("opening {to}"));
        }
    };
    let mut last = Instant::now();
    let mut progress = |p: Progress| match p {
        Progress::Table { table, rows } if rows >= PROGRESS_ROWS => {
            eprintln!("copying {table}: {rows} rows");
            last = Instant::now();
        }
        Progress::Rows { table, done, rows }
            if rows >= PROGRESS_ROWS && last.elapsed() >= Duration::from_secs(2) =>
        {
            eprintln!("copying {table}: {done}/{rows} rows");
            last = Instant::now();
        }
        _ => {}
    };
    let copied = copy::copy(&source, &dest, &mut progress).await;
    source.close().await;
    dest.close().await;
    let counts = copied.with_context(|| format!("copying {from} to {to}"))?;
    if a.json {
        let v = serde_json::json!({
            "from": from.to_string(),
            "to": to.to_string(),
            "tables": counts.iter().map(|c| serde_json::json!({
                "table": c.table,
                "source_rows": c.source,
                "copied_rows": c.copied,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", table(&counts));
        println!(
            "copied {} tables from {from} to {to}; every count matches",
            counts.len()
        );
    }
    Ok(())
}

fn table(counts: &[TableCount]) -> String {
    let mut out = format!(
        "{:<20} {:>12} {:>12}\n",
        "TABLE", "SOURCE ROWS", "COPIED ROWS"
    );
    for c in counts {
        out.push_str(&format!(
            "{:<20} {:>12} {:>12}\n",
            c.table, c.source, c.copied
        ));
    }
    out
}
