//! Replays the committed cargo-fuzz inputs (`fuzz/seeds/`, the minimised
//! `fuzz/corpus/` and the crash reproducers in `fuzz/regressions/`) through
//! the same checks the fuzz targets run, on stable and in every test run: the
//! NETCONF framing decoder and the reply/hello/RESTCONF-error parsers never
//! panic, and the decoder gives the same result however the bytes arrive.

#[allow(
    dead_code,
    reason = "the checks file also exports helpers for the targets"
)]
#[path = "../../../fuzz/src/checks.rs"]
mod fuzz;

use rampart_controller::transport::netconf::{framing, reply};

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz"));
    let mut out = Vec::new();
    for kind in ["seeds", "corpus", "regressions"] {
        let dir = fuzz.join(kind).join(target);
        // Seeds and the minimised corpus must be there; a target may have
        // no regressions yet.
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if kind == "regressions" && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        let before = out.len();
        for path in entries.map(|e| e.unwrap().path()) {
            let data = std::fs::read(&path).unwrap();
            out.push((path, data));
        }
        assert!(
            kind == "regressions" || out.len() > before,
            "{} is empty",
            dir.display()
        );
    }
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
