//! Feeds arbitrary bytes to every decoder of the protocol: the frame decoder, every message type,
//! the hello state machine and enrollment tokens. None may panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tether_protocol::fuzzing::decode_everything(data);
});
