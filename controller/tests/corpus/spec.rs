//! Replays the kept cargo-fuzz inputs of the `spec_parse` target (`seeds/`,
//! the minimised `corpus/` and the crash reproducers in `regressions/`,
//! under `fuzz/`) on stable (cargo fuzz itself needs nightly flags): every
//! input, in every format, must be answered with a result or diagnostics,
//! without panicking, and quickly.

use std::{collections::BTreeMap, time::Instant};

use rampart_controller::model::{DocFormat, SourceDoc, Validator};

#[test]
fn spec_parse_corpus_never_panics() {
    let fuzz = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz"));
    let v = Validator::new().unwrap();
    let mut n = 0;
    let mut paths = Vec::new();
    for kind in ["seeds", "corpus", "regressions"] {
        let dir = fuzz.join(kind).join("spec_parse");
        // Seeds and the minimised corpus must be there; regressions may not.
        let before = paths.len();
        match std::fs::read_dir(&dir) {
            Ok(entries) => paths.extend(entries.map(|e| e.unwrap().path())),
            Err(e) if kind == "regressions" && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{}: {e}", dir.display()),
        }
        assert!(
            kind == "regressions" || paths.len() > before,
            "{} is empty",
            dir.display()
        );
    }
    paths.sort();
    for path in paths {
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
