//! Minimal SMBIOS structure-table walker (the raw table Linux exposes as
//! /sys/firmware/dmi/tables/DMI), used for memory devices (type 17).
//! Pure and bounds-checked: garbage input yields fewer results, never a panic.

use tether_protocol::inventory::MemoryModule;

use super::util::is_placeholder;
use crate::platform::firmware::memory_type_name;

/// One SMBIOS structure: formatted area (including the 4-byte header) and
/// its string set.
struct Structure<'a> {
    ty: u8,
    data: &'a [u8],
    strings: Vec<&'a [u8]>,
}

impl Structure<'_> {
    fn u8(&self, off: usize) -> Option<u8> {
        self.data.get(off).copied()
    }
    fn u16(&self, off: usize) -> Option<u16> {
        let b = self.data.get(off..off + 2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, off: usize) -> Option<u32> {
        let b = self.data.get(off..off + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// String referenced by the index byte at `off` (1-based; 0 = none).
    fn string(&self, off: usize) -> Option<String> {
        let idx = usize::from(self.u8(off)?);
        let raw = self.strings.get(idx.checked_sub(1)?)?;
        let s = String::from_utf8_lossy(raw).trim().to_string();
        (!is_placeholder(&s) && !s.eq_ignore_ascii_case("unknown")).then_some(s)
    }
}

fn structures(table: &[u8]) -> Vec<Structure<'_>> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while out.len() < 4096 {
        let Some(hdr) = table.get(i..i + 4) else {
            break;
        };
        let (ty, len) = (hdr[0], usize::from(hdr[1]));
        if len < 4 {
            break;
        }
        let Some(data) = table.get(i..i + len) else {
            break;
        };
        // String set: NUL-terminated strings, ended by an extra NUL.
        let mut j = i + len;
        let mut strings = Vec::new();
        loop {
            let Some(rest) = table.get(j..) else {
                return out;
            };
            let Some(end) = rest.iter().position(|&b| b == 0) else {
                return out;
            };
            if end == 0 {
                // Empty string: terminator (or the double NUL of an empty set).
                if strings.is_empty() {
                    j += 1; // skip the second NUL of "\0\0"
                }
                j += 1;
                break;
            }
            strings.push(&rest[..end]);
            j += end + 1;
        }
        out.push(Structure { ty, data, strings });
        if ty == 127 {
            break;
        }
        i = j;
    }
    out
}

/// Installed memory devices (SMBIOS type 17) in a raw structure table.
pub fn memory_modules(table: &[u8]) -> Vec<MemoryModule> {
    let mut out = Vec::new();
    for s in structures(table).iter().filter(|s| s.ty == 17) {
        let Some(size) = s.u16(0x0C) else { continue };
        let size_bytes: u64 = match size {
            0 => continue, // empty slot
            0xFFFF => 0,   // unknown
            0x7FFF => s
                .u32(0x1C)
                .map(|mb| u64::from(mb & 0x7FFF_FFFF) * 1024 * 1024)
                .unwrap_or(0),
            sz if sz & 0x8000 != 0 => u64::from(sz & 0x7FFF) * 1024,
            sz => u64::from(sz) * 1024 * 1024,
        };
        let speed = match s.u16(0x15) {
            Some(0xFFFF) => s.u32(0x54),
            Some(0) | None => None,
            Some(v) => Some(u32::from(v)),
        };
        out.push(MemoryModule {
            locator: s.string(0x10),
            bank: s.string(0x11),
            size_bytes,
            memory_type: s.u8(0x12).and_then(memory_type_name).map(str::to_string),
            speed_mts: speed,
            manufacturer: s.string(0x17),
            serial: s.string(0x18),
            part_number: s.string(0x1A),
        });
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a type-17 structure (SMBIOS 2.8 layout, 0x28 bytes).
    pub(crate) fn type17(size: u16, ext_mb: u32, strings: &[&str]) -> Vec<u8> {
        let mut d = vec![0u8; 0x28];
        d[0] = 17;
        d[1] = 0x28;
        d[0x0C..0x0E].copy_from_slice(&size.to_le_bytes());
        d[0x10] = 1; // locator
        d[0x11] = 2; // bank
        d[0x12] = 0x1A; // DDR4
        d[0x15..0x17].copy_from_slice(&3200u16.to_le_bytes());
        d[0x17] = 3; // manufacturer
        d[0x18] = 4; // serial
        d[0x1A] = 5; // part
        d[0x1C..0x20].copy_from_slice(&ext_mb.to_le_bytes());
        for s in strings {
            d.extend_from_slice(s.as_bytes());
            d.push(0);
        }
        if strings.is_empty() {
            d.push(0);
        }
        d.push(0);
        d
    }

    #[test]
    fn parses_type17() {
        let mut t = vec![0u8, 4, 0, 0, 0, 0]; // type 0 with empty string set
        t.extend(type17(
            8192,
            0,
            &["DIMM A1", "BANK 0", "Samsung", "1234ABCD", "M378A1K43"],
        ));
        t.extend(type17(0, 0, &[])); // empty slot
        t.extend(type17(
            0x7FFF,
            65536,
            &["DIMM B1", "BANK 1", "Unknown", "Not Specified", "X"],
        ));
        t.extend([127, 4, 0, 0, 0, 0]);
        let m = memory_modules(&t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].size_bytes, 8 << 30);
        assert_eq!(m[0].locator.as_deref(), Some("DIMM A1"));
        assert_eq!(m[0].memory_type.as_deref(), Some("DDR4"));
        assert_eq!(m[0].speed_mts, Some(3200));
        assert_eq!(m[0].manufacturer.as_deref(), Some("Samsung"));
        assert_eq!(m[0].serial.as_deref(), Some("1234ABCD"));
        assert_eq!(m[0].part_number.as_deref(), Some("M378A1K43"));
        assert_eq!(m[1].size_bytes, 64 << 30);
        assert_eq!(m[1].manufacturer, None);
        assert_eq!(m[1].serial, None);
        assert_eq!(m[1].part_number.as_deref(), Some("X"));
    }

    #[test]
    fn garbage_is_total() {
        let mut x: u32 = 12345;
        for len in 0..600 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = memory_modules(&v);
        }
        let _ = memory_modules(&[17, 0x28, 0, 0]);
        let _ = memory_modules(&[17, 5, 0, 0, 0]);
    }
}
