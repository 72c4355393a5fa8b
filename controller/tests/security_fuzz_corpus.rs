//! Replays the kept cargo-fuzz corpus of the `spec_parse` target on stable
//! (cargo fuzz itself needs nightly): every input, in every format, must be
//! answered with a result or diagnostics, without panicking, and quickly.

use std::{collections::BTreeMap, time::Instant};

use rampart_controller::model::{DocFormat, SourceDoc, Validator};

#[test]
fn spec_parse_corpus_never_panics() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/spec_parse");
    let v = Validator::new().unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        for format in [DocFormat::Auto, DocFormat::Yaml, DocFormat::Json] {
            let started = Instant::now();
            let doc = SourceDoc {
                text,
                format,
                name: "corpus",
            };
            let _ = v.validate(&doc, &BTreeMap::new());
            assert!(
                started.elapsed().as_secs() < 5,
                "{} took {:?}",
                path.display(),
                started.elapsed()
            );
        }
        n += 1;
    }
    assert!(n >= 40, "corpus has only {n} inputs");
}
