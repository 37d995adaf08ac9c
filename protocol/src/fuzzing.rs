//! The body of the `decode` fuzz target (`protocol/fuzz`), kept here so that ordinary tests run
//! the same code on many pseudo-random and mutated inputs in CI.

use crate::codec::from_payload;
use crate::conn::{RelayConn, Timeouts};
use crate::frame::FrameDecoder;
use crate::identity::{Identity, Role};
use crate::message::*;
use crate::token::EnrollToken;
use std::time::Instant;

/// Decodes `data` every way the protocol can. Must never panic.
pub fn decode_everything(data: &[u8]) {
    decode_everything_then(data, &mut |_| {});
}

/// [`decode_everything`], also handing every inventory upload, cleaned as the relay cleans it,
/// to `uploaded`: how the code that prints inventories (`tether-report`, in the fuzz target and
/// its tests) is shown the same hostile inputs. Must never panic either.
pub fn decode_everything_then(data: &[u8], uploaded: &mut dyn FnMut(&crate::inventory::Inventory)) {
    // As a stream of frames, fed in two pieces.
    let mut dec = FrameDecoder::new(crate::limits::CONTROL);
    let (a, b) = data.split_at(data.len() / 2);
    dec.push(a);
    dec.push(b);
    while let Ok(Some(frame)) = dec.next_frame() {
        decode_payload(&frame, uploaded);
    }
    // As one payload.
    decode_payload(data, uploaded);
    // As a token.
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = EnrollToken::decode(s);
        let _ = Identity::from_subject(s, s);
    }
}

fn decode_payload(p: &[u8], uploaded: &mut dyn FnMut(&crate::inventory::Inventory)) {
    let _ = from_payload::<Hello>(p);
    let _ = from_payload::<HelloReply>(p);
    let _ = from_payload::<EnrollRequest>(p);
    let _ = from_payload::<EnrollReply>(p);
    if let Ok(AgentToRelay::Health(mut report)) = from_payload::<AgentToRelay>(p) {
        // What the relay does with every health report.
        let _ = report.sanitize();
        let th = crate::health::Thresholds::default();
        let mut alerts = crate::health::DeviceAlerts::default();
        let _ = alerts.on_report(&th, &report, i64::MAX);
        let _ = alerts.on_tick(&th, i64::MIN, i64::MAX);
    }
    let _ = from_payload::<RelayToAgent>(p);
    let _ = from_payload::<TechRequest>(p);
    let _ = from_payload::<TechResponse>(p);
    let _ = from_payload::<crate::consent::LocalRequest>(p);
    let _ = from_payload::<crate::consent::LocalEvent>(p);
    let _ = from_payload::<UploadReply>(p);
    if let Ok(AgentStream::InventoryUpload { mut inventory, .. }) = from_payload::<AgentStream>(p) {
        // What the relay does with every upload: it must be total too.
        let _ = inventory.sanitize(&crate::inventory::Limits::default());
        let _ = crate::history::diff(&inventory, &crate::inventory::Inventory::default());
        uploaded(&inventory);
    }
    if let Ok(crate::session::ToViewer::Delta(d)) = from_payload(p) {
        // What a viewer does with a compact frame: expand it, decode its rectangles in order
        // (small ones here: the decoders' size bounds have tests of their own).
        let mut memory = crate::indexed::Memory::default();
        for r in &d.rects {
            if u64::from(r.rect.w) * u64::from(r.rect.h) <= 4096 {
                let _ = crate::indexed::decode(&r.data, r.rect.w, r.rect.h, &mut memory);
                let _ = crate::palette::decode(&r.data, r.rect.w, r.rect.h);
            }
            let _ = crate::planes::join(&r.data);
        }
        let _ = crate::session::Deltas::default().expand(d);
    }
    // The payload itself as rectangles' data, with and without a palette to name.
    let mut memory = crate::indexed::Memory::default();
    for _ in 0..2 {
        let _ = crate::indexed::decode(p, 7, 5, &mut memory);
        memory.learn(&[
            crate::indexed::SHARED_FOURTH,
            2,
            0,
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            9,
        ]);
    }
    let now = Instant::now();
    for id in [
        None,
        Some(Identity::Technician {
            name: "t".into(),
            role: Role::Admin,
        }),
    ] {
        let mut c = RelayConn::new(now, Timeouts::default(), id);
        let _ = c.handle_hello(now, p);
    }
}

/// The payload of an `AgentStream::InventoryUpload` whose inventory holds `modules` empty
/// `MemoryModule`s (8 bytes each on the wire), encoded without ever holding them in memory:
/// the reviewer's "hostile agent stalls the relay" upload (2.1 M of them fill a 16 MiB frame).
/// For tests of the decode bounds, in this crate and end to end.
pub fn empty_modules_upload(
    hash: u64,
    modules: usize,
) -> Result<Vec<u8>, crate::codec::CodecError> {
    use crate::inventory::{Host, MemoryModule};
    use serde::{Serialize, Serializer};

    // Mirrors of `AgentStream`, `Inventory`, `Hardware` and `Memory` with the module list
    // produced lazily; bincode is not self-describing, so the bytes are those of the real types
    // (a unit test compares them).
    struct Lazy(usize);
    impl Serialize for Lazy {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(std::iter::repeat_n(MemoryModule::default(), self.0))
        }
    }
    #[derive(Serialize)]
    struct Memory {
        total_bytes: u64,
        swap_total_bytes: u64,
        modules: Lazy,
    }
    #[derive(Serialize)]
    struct Hw {
        cpu: crate::inventory::Cpu,
        memory: Memory,
        system: crate::inventory::SystemInfo,
        block_devices: Vec<()>,
        filesystems: Vec<()>,
        gpus: Vec<()>,
        monitors: Vec<()>,
        network: Vec<()>,
        batteries: Vec<()>,
    }
    #[derive(Serialize)]
    struct Inv {
        schema: u16,
        collected_at_unix_ms: u64,
        host: Host,
        hardware: Hw,
        software: Vec<()>,
        errors: Vec<()>,
    }
    #[derive(Serialize)]
    enum Stream {
        InventoryUpload { hash: u64, inventory: Inv },
    }
    crate::codec::to_bytes(&Stream::InventoryUpload {
        hash,
        inventory: Inv {
            schema: crate::inventory::SCHEMA_VERSION,
            collected_at_unix_ms: 0,
            host: Host::default(),
            hardware: Hw {
                cpu: Default::default(),
                memory: Memory {
                    total_bytes: 0,
                    swap_total_bytes: 0,
                    modules: Lazy(modules),
                },
                system: Default::default(),
                block_devices: vec![],
                filesystems: vec![],
                gpus: vec![],
                monitors: vec![],
                network: vec![],
                batteries: vec![],
            },
            software: vec![],
            errors: vec![],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::to_bytes;

    #[test]
    fn the_lazy_hostile_upload_encodes_like_the_real_types() {
        let mut inventory = crate::inventory::Inventory {
            schema: crate::inventory::SCHEMA_VERSION,
            ..Default::default()
        };
        inventory.hardware.memory.modules = vec![Default::default(); 300];
        let real = to_bytes(&AgentStream::InventoryUpload {
            hash: 9,
            inventory: Box::new(inventory),
        })
        .unwrap();
        assert_eq!(empty_modules_upload(9, 300).unwrap(), real);
        // And it decodes trimmed to the relay's limit, as sanitize would have kept it.
        match from_payload::<AgentStream>(&real).unwrap() {
            AgentStream::InventoryUpload { inventory, .. } => assert_eq!(
                inventory.hardware.memory.modules.len(),
                crate::inventory::MAX_ITEMS
            ),
            other => panic!("{other:?}"),
        }
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn random_and_mutated_inputs_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let seeds: Vec<Vec<u8>> = vec![
            to_bytes(&Hello::new(Intent::Agent, "agent")).unwrap(),
            to_bytes(&EnrollRequest {
                token_secret: [1; 32],
                csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".into(),
                hostname: "ws".into(),
            })
            .unwrap(),
            to_bytes(&TechResponse::Devices(vec![DeviceSummary {
                id: "d".into(),
                hostname: "h".into(),
                group: "g".into(),
                online: true,
                os: "o".into(),
                agent_version: "1".into(),
                first_seen_unix_ms: 1,
                last_seen_unix_ms: 2,
            }]))
            .unwrap(),
            to_bytes(&AgentToRelay::Heartbeat { seq: 7 }).unwrap(),
        ];
        for i in 0..20_000 {
            let mut input = if i % 2 == 0 {
                let len = (rng.next() % 64) as usize;
                (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>()
            } else {
                seeds[(rng.next() % seeds.len() as u64) as usize].clone()
            };
            // Flip, insert or truncate a few bytes.
            for _ in 0..(rng.next() % 4) {
                if input.is_empty() {
                    break;
                }
                let at = (rng.next() % input.len() as u64) as usize;
                match rng.next() % 3 {
                    0 => input[at] ^= 1 << (rng.next() % 8),
                    1 => input.insert(at, rng.next() as u8),
                    _ => input.truncate(at),
                }
            }
            let mut framed = (input.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&input);
            decode_everything(&input);
            decode_everything(&framed);
        }
    }
}
