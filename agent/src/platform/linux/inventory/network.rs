//! Network interfaces from /sys/class/net; addresses from getifaddrs
//! (sysinfo) on the live system, else IPv6 from /proc/net/if_inet6.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use super::util::{list_dir, read_attr, read_i64, read_limited, read_u64};
use super::{CollectError, Ctx, Warnings};
use tether_protocol::inventory::NetworkInterface;

const ARPHRD_LOOPBACK: u64 = 772;

type Addrs = BTreeMap<String, (Vec<String>, Vec<String>)>;

/// Parse /proc/net/if_inet6 into interface -> ["addr/prefix", ...].
pub(crate) fn parse_if_inet6(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [addr, _idx, plen, _scope, _flags, name] = f[..] else {
            continue;
        };
        if addr.len() != 32 {
            continue;
        }
        let (Ok(a), Ok(p)) = (u128::from_str_radix(addr, 16), u8::from_str_radix(plen, 16)) else {
            continue;
        };
        if p > 128 {
            continue;
        }
        m.entry(name.to_string())
            .or_default()
            .push(format!("{}/{p}", Ipv6Addr::from(a)));
    }
    m
}

fn live_addrs(warn: &mut Warnings) -> Addrs {
    let mut m = Addrs::new();
    match sysinfo::Networks::new_with_refreshed_list() {
        Ok(nets) => {
            for (name, data) in nets.iter() {
                let e = m.entry(name.to_string_lossy().into_owned()).or_default();
                for ip in data.ip_networks() {
                    let s = format!("{}/{}", ip.addr, ip.prefix);
                    if ip.addr.is_ipv4() {
                        e.0.push(s)
                    } else {
                        e.1.push(s)
                    }
                }
                e.0.sort();
                e.1.sort();
            }
        }
        Err(e) => warn.push(format!("interface addresses unavailable: {e}")),
    }
    m
}

fn fixture_addrs(ctx: &Ctx) -> Addrs {
    let mut m = Addrs::new();
    if let Ok((b, _)) = read_limited(&ctx.path("proc/net/if_inet6"), 1024 * 1024) {
        for (name, v6) in parse_if_inet6(&String::from_utf8_lossy(&b)) {
            m.entry(name).or_default().1 = v6;
        }
    }
    m
}

pub(crate) fn collect(
    ctx: &Ctx,
    warn: &mut Warnings,
) -> Result<Vec<NetworkInterface>, CollectError> {
    let mut addrs = if ctx.live {
        live_addrs(warn)
    } else {
        fixture_addrs(ctx)
    };
    let mut out = Vec::new();
    for (name, dir) in list_dir(&ctx.path("sys/class/net")) {
        if !dir.is_dir() {
            continue; // e.g. bonding_masters
        }
        if read_u64(&dir.join("type")) == Some(ARPHRD_LOOPBACK) {
            continue;
        }
        let mac =
            read_attr(&dir.join("address")).filter(|m| !m.bytes().all(|b| b == b'0' || b == b':'));
        let (ipv4, ipv6) = addrs.remove(&name).unwrap_or_default();
        out.push(NetworkInterface {
            mac,
            ipv4,
            ipv6,
            mtu: read_u64(&dir.join("mtu"))
                .and_then(|m| u32::try_from(m).ok())
                .unwrap_or(0),
            // Reading speed fails (EINVAL) or gives -1 for virtual/down links.
            speed_mbps: read_i64(&dir.join("speed"))
                .filter(|s| *s > 0)
                .and_then(|s| u32::try_from(s).ok()),
            state: read_attr(&dir.join("operstate")).unwrap_or_else(|| "unknown".to_string()),
            is_virtual: !dir.join("device").exists(),
            name,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_inet6() {
        let m = parse_if_inet6(
            "fd000000000000000000000000000002 04 40 00 82     eth0\n\
             fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n\
             zz 01 80 10 80 lo\n\
             00000000000000000000000000000001 01 ff 10 80       lo\n",
        );
        assert_eq!(m["eth0"], vec!["fd00::2/64", "fe80::fc:ff:fe00:1/64"]);
        assert!(!m.contains_key("lo"));
    }
}
