//! `tether-relay check`: the store's consistency.

use super::Ctx;
use anyhow::{Result, bail};

/// Check the store's consistency (safe while the relay runs); exit 1 if damaged.
#[derive(clap::Args)]
pub struct CheckArgs {}

pub async fn run(ctx: &Ctx, _: CheckArgs) -> Result<()> {
    let problems = ctx
        .with_store(async |store, _| Ok(store.integrity_problems().await?))
        .await?;
    if !problems.is_empty() {
        bail!("store damaged: {}", problems.join("; "));
    }
    println!("store intact: {}", ctx.store_url(&ctx.initialized()?)?);
    Ok(())
}
