//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/`) through the
//! same checks the fuzz targets run, on stable and in every test run: the
//! NETCONF framing decoder and the reply/hello/RESTCONF-error parsers never
//! panic, and the decoder gives the same result however the bytes arrive.

#[allow(
    dead_code,
    reason = "the checks file also exports helpers for the targets"
)]
#[path = "../../fuzz/src/checks.rs"]
mod fuzz;

use rampart_controller::transport::netconf::{framing, reply};

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus")).join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 8, "corpus {target} is nearly empty");
    out
}

#[test]
fn framing_corpus_replays_cleanly() {
    for (path, data) in corpus("framing") {
        let r = std::panic::catch_unwind(|| fuzz::check_framing(&data));
        assert!(r.is_ok(), "framing check failed on {}", path.display());
    }
}

#[test]
fn reply_corpus_replays_cleanly() {
    for (path, data) in corpus("reply") {
        let r = std::panic::catch_unwind(|| fuzz::check_reply(&data));
        assert!(r.is_ok(), "reply check failed on {}", path.display());
    }
}
