//! Collection against fixture trees built in a temp dir.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use tether_agent::collect::{CollectOptions, collect};
use tether_protocol::inventory::{Inventory, PackageSource};

fn put(root: &Path, rel: &str, data: impl AsRef<[u8]>) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

fn run(root: &Path) -> Inventory {
    collect(&CollectOptions {
        root: root.to_path_buf(),
        collector_timeout: Duration::from_secs(5),
    })
}

fn garbage(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}

fn edid() -> Vec<u8> {
    let mut b = vec![0u8; 128];
    b[..8].copy_from_slice(&[0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0]);
    let m: u16 = (7 << 10) | (16 << 5) | 8; // G P H? -> "GPH"
    b[8..10].copy_from_slice(&m.to_be_bytes());
    b[10..12].copy_from_slice(&0x1234u16.to_le_bytes());
    b[12..16].copy_from_slice(&42u32.to_le_bytes());
    b[16] = 1;
    b[17] = 33; // 2023
    b[18] = 1;
    b[19] = 3;
    b[21] = 53;
    b[22] = 30;
    // DTD 1920x1080
    b[54..56].copy_from_slice(&14850u16.to_le_bytes());
    b[56] = (1920 & 0xFF) as u8;
    b[58] = ((1920 >> 8) as u8) << 4;
    b[59] = (1080 & 0xFF) as u8;
    b[61] = ((1080 >> 8) as u8) << 4;
    // Name descriptor
    b[75] = 0xFC;
    b[77..90].copy_from_slice(b"Test Mon\n    ");
    let sum = b[..127].iter().fold(0u8, |a, &x| a.wrapping_add(x));
    b[127] = 0u8.wrapping_sub(sum);
    b
}

const DPKG: &str = "Package: bash\nStatus: install ok installed\nPriority: required\nArchitecture: amd64\nVersion: 5.2.15-2+b2\nDescription: GNU Bourne Again SHell\n Bash is an sh-compatible command language interpreter.\n .\n more\n\n\
Package: old-thing\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\n\
Package: held\nStatus: hold ok installed\nArchitecture: all\nVersion: 2:1.0-1\n\n\
Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nVersion: 2.36-9\n";

fn full_tree(root: &Path) {
    put(root, "proc/sys/kernel/hostname", "ws-042\n");
    put(root, "proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
    put(root, "proc/sys/kernel/arch", "x86_64\n");
    put(
        root,
        "etc/os-release",
        "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nVERSION_CODENAME=noble\n",
    );
    put(root, "etc/timezone", "Europe/Berlin\n");
    put(root, "proc/uptime", "3600.55 100.0\n");
    put(root, "proc/stat", "cpu 1 2 3\nbtime 1700000000\n");
    let mut cpuinfo = String::new();
    for i in 0..4 {
        cpuinfo += &format!(
            "processor\t: {i}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz\nphysical id\t: 0\ncore id\t: {}\ncpu cores\t: 2\n\n",
            i % 2
        );
    }
    put(root, "proc/cpuinfo", cpuinfo);
    for i in 0..4 {
        put(
            root,
            &format!("sys/devices/system/cpu/cpu{i}/topology/physical_package_id"),
            "0\n",
        );
        put(
            root,
            &format!("sys/devices/system/cpu/cpu{i}/topology/core_cpus_list"),
            if i % 2 == 0 { "0,2\n" } else { "1,3\n" },
        );
    }
    put(root, "sys/devices/system/cpu/online", "0-3\n");
    put(
        root,
        "proc/meminfo",
        "MemTotal:       16303412 kB\nMemFree: 1 kB\nSwapTotal:       2097148 kB\n",
    );
    put(
        root,
        "proc/self/mounts",
        "/dev/nvme0n1p2 / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/nvme0n1p1 /boot/efi vfat rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n",
    );
    put(
        root,
        "proc/net/if_inet6",
        "fe800000000000000000000000000001 02 40 20 80 eth0\n",
    );

    let dmi = "sys/class/dmi/id/";
    put(root, &format!("{dmi}sys_vendor"), "LENOVO\n");
    put(root, &format!("{dmi}product_name"), "20L8S2N800\n");
    put(root, &format!("{dmi}product_serial"), "PF1ABCDE\n");
    put(root, &format!("{dmi}bios_vendor"), "LENOVO\n");
    put(root, &format!("{dmi}bios_version"), "N22ET80W (1.57 )\n");
    put(
        root,
        &format!("{dmi}board_serial"),
        "To be filled by O.E.M.\n",
    );
    put(root, &format!("{dmi}chassis_type"), "10\n");

    put(root, "sys/block/sda/size", "1953525168\n");
    put(root, "sys/block/sda/device/model", "Samsung SSD 860\n");
    put(root, "sys/block/sda/device/serial", "S3Z9NB0K123456\n");
    put(root, "sys/block/sda/queue/rotational", "0\n");
    put(root, "sys/block/sda/removable", "0\n");
    put(root, "sys/block/loop0/size", "1000\n");
    put(root, "sys/block/zram0/size", "0\n");
    put(root, "sys/block/sr0/size", "0\n");
    put(root, "sys/block/sdb/size", "1000\n");
    put(
        root,
        "sys/block/sdb/device/vpd_pg80",
        b"\x00\x80\x00\x08USB12345",
    );
    put(root, "sys/block/sdb/removable", "1\n");

    let gpu = "sys/bus/pci/devices/0000:01:00.0/";
    put(root, &format!("{gpu}class"), "0x030000\n");
    put(root, &format!("{gpu}vendor"), "0x10de\n");
    put(root, &format!("{gpu}device"), "0x2204\n");
    link(
        root,
        &format!("{gpu}driver"),
        "../../../bus/pci/drivers/nvidia",
    );
    put(root, "sys/bus/pci/devices/0000:00:1f.0/class", "0x060100\n");

    put(root, "sys/class/drm/card0-HDMI-A-1/edid", edid());
    put(root, "sys/class/drm/card0-DP-1/edid", "");
    put(root, "sys/class/drm/card0/dev", "226:0\n");

    let eth = "sys/class/net/eth0/";
    put(root, &format!("{eth}address"), "aa:bb:cc:dd:ee:ff\n");
    put(root, &format!("{eth}mtu"), "1500\n");
    put(root, &format!("{eth}operstate"), "up\n");
    put(root, &format!("{eth}speed"), "1000\n");
    put(root, &format!("{eth}type"), "1\n");
    fs::create_dir_all(root.join(eth).join("device")).unwrap();
    put(root, "sys/class/net/lo/type", "772\n");
    put(root, "sys/class/net/br0/type", "1\n");
    put(root, "sys/class/net/br0/speed", "-1\n");
    put(root, "sys/class/net/br0/operstate", "down\n");
    put(root, "sys/class/net/bonding_masters", "\n");

    let bat = "sys/class/power_supply/BAT0/";
    put(root, &format!("{bat}type"), "Battery\n");
    put(root, &format!("{bat}manufacturer"), "SMP\n");
    put(root, &format!("{bat}model_name"), "01AV431\n");
    put(root, &format!("{bat}technology"), "Li-poly\n");
    put(root, &format!("{bat}charge_full"), "3000000\n");
    put(root, &format!("{bat}charge_full_design"), "4000000\n");
    put(root, &format!("{bat}voltage_min_design"), "11000000\n");
    put(root, &format!("{bat}capacity"), "87\n");
    put(root, &format!("{bat}status"), "Discharging\n");
    put(root, &format!("{bat}cycle_count"), "123\n");
    put(root, "sys/class/power_supply/AC/type", "Mains\n");

    put(root, "var/lib/dpkg/status", DPKG);

    let app = "var/lib/flatpak/app/org.mozilla.firefox/";
    link(root, &format!("{app}current"), "x86_64/stable");
    link(root, &format!("{app}x86_64/stable/active"), "abc123");
    put(
        root,
        &format!("{app}x86_64/stable/abc123/files/share/metainfo/org.mozilla.firefox.metainfo.xml"),
        "<component><releases><release version=\"125.0.1\" date=\"2024-04-16\"/></releases></component>",
    );
    link(root, "snap/core22/current", "1380");
    put(
        root,
        "snap/core22/1380/meta/snap.yaml",
        "name: core22\nversion: '20240408'\n",
    );
    put(root, "snap/README", "x");
}

#[test]
fn full_fixture_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    full_tree(root);
    let inv = run(root);

    assert_eq!(inv.schema, 1);
    assert!(inv.errors.is_empty(), "{:?}", inv.errors);
    let h = &inv.host;
    assert_eq!(h.hostname, "ws-042");
    assert_eq!(h.os_name, "Ubuntu");
    assert_eq!(h.os_version.as_deref(), Some("24.04"));
    assert_eq!(h.os_build.as_deref(), Some("noble"));
    assert_eq!(h.kernel, "6.1.0-18-amd64");
    assert_eq!(h.arch, "x86_64");
    assert_eq!(h.uptime_s, 3600);
    assert_eq!(h.boot_time_unix, 1_700_000_000);
    assert_eq!(h.timezone.as_deref(), Some("Europe/Berlin"));

    let hw = &inv.hardware;
    assert_eq!((hw.cpu.sockets, hw.cpu.cores, hw.cpu.threads), (1, 2, 4));
    assert_eq!(hw.cpu.base_mhz, Some(1600));
    assert_eq!(hw.cpu.vendor, "GenuineIntel");
    assert_eq!(hw.memory.total_bytes, 16_303_412 * 1024);
    assert_eq!(hw.memory.swap_total_bytes, 2_097_148 * 1024);

    assert_eq!(hw.system.sys_vendor.as_deref(), Some("LENOVO"));
    assert_eq!(hw.system.product_serial.as_deref(), Some("PF1ABCDE"));
    assert_eq!(hw.system.board_serial, None, "placeholder filtered");
    assert_eq!(hw.system.chassis_type.as_deref(), Some("Notebook"));

    let names: Vec<&str> = hw.block_devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, vec!["sda", "sdb"]);
    let sda = &hw.block_devices[0];
    assert_eq!(sda.model.as_deref(), Some("Samsung SSD 860"));
    assert_eq!(sda.serial.as_deref(), Some("S3Z9NB0K123456"));
    assert_eq!(sda.size_bytes, 1_953_525_168 * 512);
    assert!(!sda.rotational && !sda.removable);
    assert_eq!(hw.block_devices[1].serial.as_deref(), Some("USB12345"));
    assert!(hw.block_devices[1].removable);

    let mps: Vec<&str> = hw
        .filesystems
        .iter()
        .map(|f| f.mount_point.as_str())
        .collect();
    assert_eq!(mps, vec!["/", "/boot/efi"]);
    assert_eq!(
        hw.filesystems[0].size_bytes, 0,
        "no statvfs on fixture roots"
    );

    assert_eq!(hw.gpus.len(), 1);
    assert_eq!(hw.gpus[0].pci_slot, "0000:01:00.0");
    assert_eq!(
        (hw.gpus[0].vendor_id, hw.gpus[0].device_id),
        (0x10de, 0x2204)
    );
    assert_eq!(hw.gpus[0].vendor_name.as_deref(), Some("NVIDIA"));
    assert_eq!(hw.gpus[0].driver.as_deref(), Some("nvidia"));

    assert_eq!(hw.monitors.len(), 1);
    let m = &hw.monitors[0];
    assert_eq!(m.connector, "card0-HDMI-A-1");
    assert_eq!(m.manufacturer, "GPH");
    assert_eq!(m.product_code, 0x1234);
    assert_eq!(m.serial.as_deref(), Some("42"));
    assert_eq!(m.name.as_deref(), Some("Test Mon"));
    assert_eq!((m.width_mm, m.height_mm), (530, 300));
    assert_eq!((m.native_width, m.native_height), (1920, 1080));
    assert_eq!(m.year, 2023);

    let nics: Vec<&str> = hw.network.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nics, vec!["br0", "eth0"]);
    let eth = &hw.network[1];
    assert_eq!(eth.mac.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
    assert_eq!(
        (eth.mtu, eth.speed_mbps, eth.state.as_str()),
        (1500, Some(1000), "up")
    );
    assert_eq!(eth.ipv6, vec!["fe80::1/64"]);
    assert!(!eth.is_virtual);
    assert!(hw.network[0].is_virtual);
    assert_eq!(hw.network[0].speed_mbps, None);

    assert_eq!(hw.batteries.len(), 1);
    let b = &hw.batteries[0];
    assert_eq!(b.energy_full_uwh, Some(33_000_000));
    assert_eq!(b.energy_full_design_uwh, Some(44_000_000));
    assert_eq!((b.capacity_percent, b.cycle_count), (Some(87), Some(123)));

    let sw: Vec<(PackageSource, &str, &str)> = inv
        .software
        .iter()
        .map(|p| (p.source, p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        sw,
        vec![
            (PackageSource::Dpkg, "bash", "5.2.15-2+b2"),
            (PackageSource::Dpkg, "held", "2:1.0-1"),
            (PackageSource::Dpkg, "libc6", "2.36-9"),
            (PackageSource::Flatpak, "org.mozilla.firefox", "125.0.1"),
            (PackageSource::Snap, "core22", "20240408"),
        ]
    );
    assert_eq!(inv.software[3].arch, "x86_64");

    // JSON round trip.
    let j = serde_json::to_string(&inv).unwrap();
    let back: Inventory = serde_json::from_str(&j).unwrap();
    assert_eq!(back, inv);
}

#[test]
fn empty_root_gives_partial_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let inv = run(dir.path());
    assert_eq!(inv.schema, 1);
    assert!(inv.software.is_empty());
    let failed: Vec<&str> = inv.errors.iter().map(|e| e.collector.as_str()).collect();
    for c in ["cpu", "memory", "filesystems", "host"] {
        assert!(
            failed.contains(&c),
            "{c} should report an error: {:?}",
            inv.errors
        );
    }
    assert_eq!(inv.hardware.memory.total_bytes, 0);
}

#[test]
fn missing_sys_keeps_proc_data() {
    let dir = tempfile::tempdir().unwrap();
    full_tree(dir.path());
    fs::remove_dir_all(dir.path().join("sys")).unwrap();
    let inv = run(dir.path());
    assert_eq!(inv.host.hostname, "ws-042");
    assert_eq!(inv.hardware.cpu.threads, 4);
    assert_eq!(inv.hardware.cpu.cores, 2, "falls back to cpuinfo core ids");
    assert!(inv.hardware.block_devices.is_empty());
    assert!(inv.hardware.network.is_empty());
    assert!(inv.hardware.monitors.is_empty());
    assert_eq!(inv.software.len(), 5);
}

#[test]
fn garbage_everywhere_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    full_tree(root);
    let mut seed = 1;
    let mut junk = |len: usize| {
        seed += 1;
        let mut g = garbage(len, seed);
        g.extend_from_slice(b"\xff\xfe\xc3\x28\x00\x1b[31m\n");
        g
    };
    for rel in [
        "proc/sys/kernel/hostname",
        "proc/sys/kernel/osrelease",
        "etc/os-release",
        "proc/uptime",
        "proc/stat",
        "proc/cpuinfo",
        "proc/meminfo",
        "proc/self/mounts",
        "proc/net/if_inet6",
        "sys/class/dmi/id/sys_vendor",
        "sys/class/dmi/id/chassis_type",
        "sys/block/sda/size",
        "sys/block/sda/device/model",
        "sys/block/sdb/device/vpd_pg80",
        "sys/bus/pci/devices/0000:01:00.0/class",
        "sys/bus/pci/devices/0000:01:00.0/vendor",
        "sys/class/net/eth0/mtu",
        "sys/class/net/eth0/speed",
        "sys/class/net/eth0/address",
        "sys/class/power_supply/BAT0/capacity",
        "sys/class/power_supply/BAT0/charge_full",
        "sys/devices/system/cpu/cpu0/topology/core_cpus_list",
        "snap/core22/1380/meta/snap.yaml",
        "run/utmp",
        "sys/firmware/dmi/tables/DMI",
    ] {
        put(root, rel, junk(3000));
    }
    put(root, "sys/class/drm/card0-HDMI-A-1/edid", junk(300));
    // A 5 MB garbage dpkg status file.
    put(root, "var/lib/dpkg/status", garbage(5 * 1024 * 1024, 99));
    // A directory where a file is expected, and a dangling symlink.
    fs::remove_file(root.join("sys/class/dmi/id/product_name")).unwrap();
    fs::create_dir_all(root.join("sys/class/dmi/id/product_name")).unwrap();
    fs::remove_file(root.join("sys/class/dmi/id/bios_vendor")).unwrap();
    link(root, "sys/class/dmi/id/bios_vendor", "/nonexistent/target");
    // A FIFO must not block any reader.
    let _ = std::process::Command::new("mkfifo")
        .arg(root.join("sys/class/dmi/id/board_name"))
        .status();

    let t = Instant::now();
    let inv = run(root);
    eprintln!("{:#?}", inv.errors);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "no collector may hang"
    );
    assert!(
        inv.errors
            .iter()
            .any(|e| e.collector == "dpkg" && e.message.contains("malformed")),
        "{:?}",
        inv.errors
    );
    assert!(inv.errors.iter().any(|e| e.collector == "monitors"));
    assert!(
        !inv.errors.iter().any(|e| e.message.contains("panicked")),
        "{:?}",
        inv.errors
    );
    // Whatever came out is clean and serialisable.
    let j = serde_json::to_string(&inv).unwrap();
    assert!(!j.contains('\u{1b}'));
    let mut again = inv.clone();
    assert!(
        again.sanitize(&Default::default()).is_empty(),
        "collect() output is already sanitized"
    );
}

#[test]
fn slow_collector_times_out_but_inventory_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    full_tree(root);
    // ~40 MB of valid stanzas: takes far longer than 1 ms to parse.
    let mut big = String::with_capacity(40 << 20);
    let mut i = 0;
    while big.len() < 40 << 20 {
        big += &format!(
            "Package: p{i}\nStatus: install ok installed\nVersion: 1.{i}\nArchitecture: amd64\nDescription: {}\n\n",
            "x".repeat(300)
        );
        i += 1;
    }
    put(root, "var/lib/dpkg/status", big);
    let t = Instant::now();
    let inv = collect(&CollectOptions {
        root: root.to_path_buf(),
        collector_timeout: Duration::from_millis(1),
    });
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(
        inv.errors
            .iter()
            .any(|e| e.collector == "dpkg" && e.message.contains("timed out")),
        "{:?}",
        inv.errors
    );
    assert!(inv.software.iter().all(|p| p.source != PackageSource::Dpkg));
}
