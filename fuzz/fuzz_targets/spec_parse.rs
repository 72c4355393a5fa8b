//! Spec parsing and validation (YAML/JSON text → validated service specs)
//! of arbitrary input: must answer with diagnostics, never panic, hang or
//! exhaust memory. The corpus (`fuzz/seeds/`, `fuzz/corpus/` and
//! `fuzz/regressions/`, all `spec_parse/`) is also replayed on stable by
//! `controller/tests/security_fuzz_corpus.rs`.
#![no_main]

use std::collections::BTreeMap;

use rampart_controller::model::{DocFormat, SourceDoc, Validator};

thread_local! {
    // libyang contexts are per thread; building one costs milliseconds.
    static VALIDATOR: Validator = Validator::new().expect("embedded YANG modules load");
}

/// The controller wraps the YAML parser in `catch_unwind` on purpose
/// (`model/source.rs`: its `unreachable!()`s become a parse error), but
/// libfuzzer-sys's panic hook aborts on every panic, caught or not. Panics
/// raised inside the YAML crates are left to unwind into that guard; any
/// other panic (or one the controller fails to catch, which reaches
/// libfuzzer-sys's own `catch_unwind`) still aborts as a crash.
fn let_the_yaml_guard_catch_yaml_panics() {
    let abort_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_yaml = info.location().is_some_and(|l| {
            let f = l.file();
            f.contains("/yaml-rust2-") || f.contains("/marked-yaml-")
        });
        if !in_yaml {
            abort_hook(info);
        }
    }));
}

libfuzzer_sys::fuzz_target!(init: let_the_yaml_guard_catch_yaml_panics(), |data: &[u8]| {
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
