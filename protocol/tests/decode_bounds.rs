//! Decoding an upload allocates memory bounded by the relay's limits, not by what a hostile
//! agent packs into a 16 MiB frame.
//!
//! Reproduces the review's finding 3: 2.1 M empty `MemoryModule`s (8 bytes each on the wire,
//! 168 in memory) decoded to ~350 MB before `sanitize` could trim them to 256. The allocator of
//! this test binary counts live bytes and their peak, so the test measures what decoding
//! allocates. One test in the binary, so no other test's allocations are counted.
// A counting global allocator is the one way to measure what decoding allocates.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tether_protocol::codec::from_payload;
use tether_protocol::inventory::MAX_ITEMS;
use tether_protocol::limits;
use tether_protocol::message::AgentStream;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size > layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_frame_of_millions_of_empty_modules_decodes_in_bounded_memory() {
    // As many empty modules as fit the bulk limit: the reviewer's payload.
    let probe = tether_protocol::fuzzing::empty_modules_upload(1, 0).unwrap();
    let modules = (limits::BULK - probe.len() - 8) / 8;
    let payload = tether_protocol::fuzzing::empty_modules_upload(1, modules).unwrap();
    assert!(payload.len() <= limits::BULK, "{}", payload.len());
    assert!(modules > 2_000_000, "{modules}");

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let decoded = from_payload::<AgentStream>(&payload).unwrap();
    let took = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let AgentStream::InventoryUpload { inventory, .. } = decoded else {
        panic!("not an upload");
    };
    eprintln!(
        "{modules} modules in {} bytes: decoded in {took:?}, {peak} bytes at the peak, {} kept",
        payload.len(),
        inventory.hardware.memory.modules.len()
    );
    assert_eq!(inventory.hardware.memory.modules.len(), MAX_ITEMS);
    // 256 modules are 43 KB; the decoder's own state is small. Before the fix: ~350 MB.
    assert!(
        peak < 1 << 20,
        "decoding allocated {peak} bytes at the peak"
    );
    // Generous (2 s unoptimized on an idle core, 7.5 s under load); the point is that the work
    // is bounded too, not minutes.
    assert!(took < Duration::from_secs(60), "decoding took {took:?}");
}
