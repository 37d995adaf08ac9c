//! CPU from /proc/cpuinfo and /sys/devices/system/cpu topology.

use std::collections::BTreeSet;

use super::util::{list_dir, read_attr, read_limited, read_u64};
use super::{CollectError, Ctx, Warnings};
use tether_protocol::inventory::Cpu;

#[derive(Debug, Default, PartialEq)]
pub(crate) struct CpuInfo {
    pub processors: u32,
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub physical_ids: BTreeSet<String>,
    pub cores: BTreeSet<(String, String)>,
    pub cpu_cores: Option<u32>,
    pub mhz: Option<f64>,
}

pub(crate) fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut ci = CpuInfo::default();
    let mut phys = String::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "processor" => {
                ci.processors = ci.processors.saturating_add(1);
                phys.clear();
            }
            "model name" | "Model" | "cpu model" | "Processor" | "cpu" | "Hardware"
                if ci.model.is_none() && !v.is_empty() =>
            {
                ci.model = Some(v.to_string());
            }
            "vendor_id" | "vendor" | "CPU implementer" if ci.vendor.is_none() && !v.is_empty() => {
                ci.vendor = Some(v.to_string());
            }
            "physical id" => {
                phys = v.to_string();
                ci.physical_ids.insert(phys.clone());
            }
            "core id" => {
                ci.cores.insert((phys.clone(), v.to_string()));
            }
            "cpu cores" if ci.cpu_cores.is_none() => ci.cpu_cores = v.parse().ok(),
            "cpu MHz" if ci.mhz.is_none() => {
                ci.mhz = v.parse().ok().filter(|m: &f64| m.is_finite())
            }
            _ => {}
        }
    }
    ci
}

/// "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz" -> 1900.
fn mhz_from_model(model: &str) -> Option<u32> {
    let at = model.rfind('@')?;
    let rest = model[at + 1..].trim();
    let num = rest.strip_suffix("GHz")?.trim();
    let ghz: f64 = num.parse().ok()?;
    (ghz.is_finite() && ghz > 0.0 && ghz < 100.0).then(|| (ghz * 1000.0).round() as u32)
}

pub(crate) fn collect(ctx: &Ctx, warn: &mut Warnings) -> Result<Cpu, CollectError> {
    let cp = ctx.path("proc/cpuinfo");
    let ci = match read_limited(&cp, 16 * 1024 * 1024) {
        Ok((b, _)) => {
            let ci = parse_cpuinfo(&String::from_utf8_lossy(&b));
            if ci.processors == 0 {
                warn.push(format!("{}: no processor entries", ctx.display(&cp)));
            }
            ci
        }
        Err(e) => {
            warn.push(ctx.io_err(&cp, e).to_string());
            CpuInfo::default()
        }
    };

    // sysfs topology: one dir per logical CPU.
    let sys = ctx.path("sys/devices/system/cpu");
    let mut sys_threads = 0u32;
    let mut packages = BTreeSet::new();
    let mut cores = BTreeSet::new();
    for (name, path) in list_dir(&sys) {
        let Some(n) = name.strip_prefix("cpu") else {
            continue;
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        sys_threads += 1;
        let topo = path.join("topology");
        let pkg = read_attr(&topo.join("physical_package_id"));
        if let Some(p) = &pkg {
            packages.insert(p.clone());
        }
        let siblings = read_attr(&topo.join("core_cpus_list"))
            .or_else(|| read_attr(&topo.join("thread_siblings_list")));
        if let Some(s) = siblings {
            cores.insert((pkg.unwrap_or_default(), s));
        }
    }

    if ci.processors == 0 && sys_threads == 0 {
        return Err(CollectError::Invalid(
            "no CPU found in /proc/cpuinfo or /sys/devices/system/cpu".to_string(),
        ));
    }

    let threads = if ci.processors > 0 {
        ci.processors
    } else {
        sys_threads
    };
    let sockets = if !packages.is_empty() {
        packages.len()
    } else {
        ci.physical_ids.len().max(1)
    } as u32;
    let core_count = if !cores.is_empty() {
        cores.len() as u32
    } else if !ci.cores.is_empty() {
        ci.cores.len() as u32
    } else if let Some(c) = ci.cpu_cores {
        c.saturating_mul(sockets)
    } else {
        threads
    };

    let model = ci.model.unwrap_or_default();
    let base_mhz = read_u64(&ctx.path("sys/devices/system/cpu/cpu0/cpufreq/base_frequency"))
        .map(|khz| u32::try_from(khz / 1000).unwrap_or(u32::MAX))
        .or_else(|| mhz_from_model(&model))
        .or_else(|| {
            ci.mhz
                .map(|m| m.round().clamp(0.0, f64::from(u32::MAX)) as u32)
        });

    Ok(Cpu {
        model,
        vendor: ci.vendor.unwrap_or_default(),
        sockets,
        cores: core_count,
        threads,
        base_mhz,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_x86() {
        let t = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7 CPU @ 2.40GHz\nphysical id\t: 0\ncore id\t: 0\ncpu cores\t: 2\ncpu MHz\t\t: 800.123\n\nprocessor\t: 1\nphysical id\t: 0\ncore id\t: 1\n\nprocessor\t: 2\nphysical id\t: 0\ncore id\t: 0\n";
        let ci = parse_cpuinfo(t);
        assert_eq!(ci.processors, 3);
        assert_eq!(ci.vendor.as_deref(), Some("GenuineIntel"));
        assert_eq!(ci.cores.len(), 2);
        assert_eq!(ci.physical_ids.len(), 1);
        assert_eq!(
            mhz_from_model(ci.model.as_deref().unwrap_or("")),
            Some(2400)
        );
        assert_eq!(
            parse_cpuinfo("\u{fffd}garbage\n::::\ncpu MHz: NaN").processors,
            0
        );
    }
}
