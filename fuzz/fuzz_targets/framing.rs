//! Frame decoding: arbitrary bytes in arbitrary pieces, both framings.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rampart_fuzz::check_framing(data));
