//! Memory totals from /proc/meminfo, DIMMs from the SMBIOS table when readable.

use super::util::read_limited;
use super::{CollectError, Ctx, Warnings, smbios};
use tether_protocol::inventory::Memory;

/// (MemTotal, SwapTotal) in bytes.
pub(crate) fn parse_meminfo(text: &str) -> (Option<u64>, Option<u64>) {
    let mut total = None;
    let mut swap = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let kb = || -> Option<u64> {
            let mut it = v.split_whitespace();
            let n: u64 = it.next()?.parse().ok()?;
            match it.next() {
                Some("kB") | None => n.checked_mul(1024),
                _ => None,
            }
        };
        match k.trim() {
            "MemTotal" => total = kb(),
            "SwapTotal" => swap = kb(),
            _ => {}
        }
    }
    (total, swap)
}

pub(crate) fn collect(ctx: &Ctx, _warn: &mut Warnings) -> Result<Memory, CollectError> {
    let p = ctx.path("proc/meminfo");
    let (b, _) = read_limited(&p, 1024 * 1024).map_err(|e| ctx.io_err(&p, e))?;
    let (total, swap) = parse_meminfo(&String::from_utf8_lossy(&b));
    let Some(total_bytes) = total else {
        return Err(CollectError::Invalid(format!(
            "{}: no valid MemTotal",
            ctx.display(&p)
        )));
    };
    // The raw SMBIOS table is root-only; not being able to read it is normal.
    let modules = match read_limited(&ctx.path("sys/firmware/dmi/tables/DMI"), 1024 * 1024) {
        Ok((t, _)) => smbios::memory_modules(&t),
        Err(e) => {
            tracing::debug!(error = %e, "SMBIOS table not readable");
            Vec::new()
        }
    };
    Ok(Memory {
        total_bytes,
        swap_total_bytes: swap.unwrap_or(0),
        modules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo() {
        let (t, s) = parse_meminfo("MemTotal:  1000 kB\nMemFree: 3 kB\nSwapTotal: 0 kB\n");
        assert_eq!(t, Some(1_024_000));
        assert_eq!(s, Some(0));
        assert_eq!(
            parse_meminfo("MemTotal: 99999999999999999999 kB"),
            (None, None)
        );
        assert_eq!(parse_meminfo("garbage\0\u{fffd}"), (None, None));
    }
}
