//! Reply, hello and RESTCONF error parsing of arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rampart_fuzz::check_reply(data));
