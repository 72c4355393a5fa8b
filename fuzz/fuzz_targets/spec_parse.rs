//! Spec parsing and validation (YAML/JSON text → validated service specs)
//! of arbitrary input: must answer with diagnostics, never panic, hang or
//! exhaust memory. The corpus in `fuzz/corpus/spec_parse/` is also replayed
//! on stable by `controller/tests/security_fuzz_corpus.rs`.
#![no_main]

use std::collections::BTreeMap;

use rampart_controller::model::{DocFormat, SourceDoc, Validator};

thread_local! {
    // libyang contexts are per thread; building one costs milliseconds.
    static VALIDATOR: Validator = Validator::new().expect("embedded YANG modules load");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    VALIDATOR.with(|v| {
        for format in [DocFormat::Auto, DocFormat::Yaml, DocFormat::Json] {
            let doc = SourceDoc {
                text,
                format,
                name: "fuzz",
            };
            let _ = v.validate(&doc, &BTreeMap::new());
        }
    });
});
