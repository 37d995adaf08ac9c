//! Feeds arbitrary bytes to every decoder of the protocol: the frame decoder, every message type,
//! the hello state machine and enrollment tokens, and prints every inventory upload as
//! `tether-report` does. None may panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tether_protocol::fuzzing::decode_everything_then(data, &mut |inventory| {
        let _ = tether_report::inventory::text(inventory, true);
    });
});
