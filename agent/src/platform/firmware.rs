//! What firmware tables and vendors say, whatever operating system reads them (Linux from
//! `/sys` and the SMBIOS table, Windows through WMI): the names of SMBIOS codes, and the filler
//! values vendors leave where they have nothing.

/// Values that vendors put in DMI/serial fields instead of real data.
pub fn is_placeholder(s: &str) -> bool {
    const P: &[&str] = &[
        "to be filled by o.e.m.",
        "to be filled by oem",
        "default string",
        "system serial number",
        "system product name",
        "system manufacturer",
        "base board serial number",
        "not specified",
        "not applicable",
        "none",
        "n/a",
        "0",
        "00000000",
        "0123456789",
        "123456789",
        "03000200-0400-0500-0006-000700080009",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "00000000-0000-0000-0000-000000000000",
    ];
    let l = s.trim().to_ascii_lowercase();
    l.is_empty() || P.contains(&l.as_str())
}

/// SMBIOS chassis types (type 3, byte 0x05; `Win32_SystemEnclosure.ChassisTypes`).
pub fn chassis_name(n: u32) -> Option<&'static str> {
    Some(match n {
        1 => "Other",
        2 => "Unknown",
        3 => "Desktop",
        4 => "Low Profile Desktop",
        5 => "Pizza Box",
        6 => "Mini Tower",
        7 => "Tower",
        8 => "Portable",
        9 => "Laptop",
        10 => "Notebook",
        11 => "Hand Held",
        12 => "Docking Station",
        13 => "All in One",
        14 => "Sub Notebook",
        15 => "Space-saving",
        16 => "Lunch Box",
        17 => "Main Server Chassis",
        23 => "Rack Mount Chassis",
        24 => "Sealed-case PC",
        30 => "Tablet",
        31 => "Convertible",
        32 => "Detachable",
        33 => "IoT Gateway",
        34 => "Embedded PC",
        35 => "Mini PC",
        36 => "Stick PC",
        _ => return None,
    })
}

/// SMBIOS memory device types (type 17, byte 0x12; `Win32_PhysicalMemory.SMBIOSMemoryType`).
pub fn memory_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        0x03 => "DRAM",
        0x07 => "RAM",
        0x0F => "SDRAM",
        0x12 => "DDR",
        0x13 => "DDR2",
        0x14 => "DDR2 FB-DIMM",
        0x18 => "DDR3",
        0x1A => "DDR4",
        0x1B => "LPDDR",
        0x1C => "LPDDR2",
        0x1D => "LPDDR3",
        0x1E => "LPDDR4",
        0x1F => "Logical non-volatile device",
        0x20 => "HBM",
        0x21 => "HBM2",
        0x22 => "DDR5",
        0x23 => "LPDDR5",
        0x24 => "HBM3",
        _ => return None,
    })
}
