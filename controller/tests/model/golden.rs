//! Golden tests of spec validation: every file under
//! `tests/fixtures/specs/{valid,invalid}/` is validated against a fixed
//! inventory and the result compared with the `.expected` file next to it.
//!
//! Invalid fixtures expect one diagnostic per line (`file:line:col: field:
//! message (path)`); valid fixtures expect their warnings and the normalised
//! spec (`spec_to_json`). Run with `UPDATE_GOLDEN=1` to rewrite the expected
//! files after an intended change, then review the diff.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use rampart_controller::model::{
    DocFormat, ModelError, SourceDoc, Validator,
    device::{Device, Platform},
    spec_to_json,
};

/// The inventory every fixture is checked against.
fn inventory() -> BTreeMap<String, Device> {
    ["csr1", "csr2", "edge1"]
        .into_iter()
        .map(|n| {
            let d = Device {
                name: n.to_owned(),
                platform: if n.starts_with("edge") {
                    Platform::SdWan
                } else {
                    Platform::IosXe
                },
                address: "192.0.2.100".to_owned(),
                credentials_ref: "env:RAMPART_LAB".to_owned(),
                labels: BTreeMap::new(),
                created_unix: 0,
            };
            (n.to_owned(), d)
        })
        .collect()
}

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/specs")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "json")
            )
        })
        .collect();
    files.sort();
    files
}

/// Renders what validating `path` produced.
fn render(v: &Validator, path: &Path) -> (bool, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let format = if name.ends_with(".json") {
        DocFormat::Json
    } else {
        DocFormat::Yaml
    };
    let mut out = String::new();
    match v.validate(
        &SourceDoc {
            text: &text,
            format,
            name,
        },
        &inventory(),
    ) {
        Ok(docs) => {
            for doc in docs {
                for w in &doc.warnings {
                    writeln!(out, "{w}").unwrap();
                }
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&spec_to_json(&doc.spec)).unwrap()
                )
                .unwrap();
            }
            (true, out)
        }
        Err(ModelError::Invalid { diagnostics, .. }) => {
            for d in &diagnostics {
                writeln!(out, "{d}").unwrap();
            }
            (false, out)
        }
        Err(e) => panic!("{name}: unexpected error {e}"),
    }
}

fn check_dir(dir: &str, expect_valid: bool) -> usize {
    let v = Validator::new().unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    let files = fixtures(dir);
    for path in &files {
        let (valid, got) = render(&v, path);
        let expected_path = path.with_extension("expected");
        if valid != expect_valid {
            failures.push(format!(
                "{}: expected {}, got:\n{got}",
                path.display(),
                if expect_valid { "valid" } else { "invalid" }
            ));
            continue;
        }
        if update {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            format!(
                "<missing {}; run with UPDATE_GOLDEN=1>",
                expected_path.display()
            )
        });
        if expected != got {
            failures.push(format!(
                "{}:\n--- expected\n{expected}\n--- got\n{got}",
                path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    files.len()
}

#[test]
fn invalid_specs_match_golden_errors() {
    let n = check_dir("invalid", false);
    assert!(n >= 15, "only {n} invalid fixtures");
}

#[test]
fn valid_specs_match_golden_output() {
    check_dir("valid", true);
}

/// Every invalid fixture's errors point at a real line of the file and name
/// a field, so no golden file can quietly accept "line 0" diagnostics.
#[test]
fn every_invalid_fixture_points_into_the_file() {
    let v = Validator::new().unwrap();
    for path in fixtures("invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = u32::try_from(text.lines().count()).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let err = v
            .validate(
                &SourceDoc {
                    text: &text,
                    format: DocFormat::Auto,
                    name,
                },
                &inventory(),
            )
            .unwrap_err();
        let ModelError::Invalid { diagnostics, .. } = err else {
            panic!("{name}: {err}")
        };
        assert!(!diagnostics.is_empty(), "{name}: no diagnostics");
        for d in &diagnostics {
            assert!(
                d.line >= 1 && d.line <= lines,
                "{name}: line {} outside 1..={lines}: {d}",
                d.line
            );
            assert!(d.column >= 1, "{name}: no column: {d}");
            let syntax = name.contains("syntax");
            assert!(syntax || d.field.is_some(), "{name}: no field: {d}");
        }
    }
}
