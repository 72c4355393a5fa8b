//! The layer rule of `lib.rs`, checked over the source: every `crate::`
//! path of a top-level module names its own layer or one below, and the
//! modules' import graph has no cycle.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Bottom to top. A module may import from its own layer and the ones
/// below; within a layer the imports must not form a cycle.
const LAYERS: &[&[&str]] = &[
    &["wire", "model", "config", "observe"],
    &["tls", "auth", "store", "transport", "telemetry"],
    &["platforms"],
    &["compile", "txn"],
    &["fleet"],
    &["api", "daemon"],
];

/// Cycles that other work in flight removes. Listed edges are tolerated,
/// never required; nothing may be added here.
const PENDING: &[(&str, &str)] = &[];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("top-level module {module} has no layer in LAYERS"))
}

/// The top-level modules named by `crate::` paths in `text`, comments
/// excluded: `crate::a::...` and every first-level name of
/// `use crate::{a, b::{...}}`.
fn imports(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            out.extend(first_level(group));
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

/// The names at depth 0 of a `{...}` use group (text after its `{`).
fn first_level(group: &str) -> Vec<String> {
    let (mut depth, mut expect_name, mut out) = (0usize, true, Vec::new());
    let mut name = String::new();
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expect_name = true,
            c if depth == 0 && expect_name && (c.is_alphanumeric() || c == '_') => name.push(c),
            _ if !name.is_empty() => {
                out.push(std::mem::take(&mut name));
                expect_name = false;
            }
            _ => {}
        }
    }
    if !name.is_empty() {
        out.push(name);
    }
    out
}

/// Top-level module → the top-level modules it imports.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let first = rel.components().next().expect("a component");
            let top = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            // This file quotes import paths in its own tests.
            if top == "lib" || top == "bin" || top == "layers" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source is UTF-8");
            let deps = g.entry(top.clone()).or_default();
            deps.extend(imports(&text).into_iter().filter(|d| *d != top));
        }
    }
    g
}

/// A cycle through `start`, if any (depth-first over `g`).
fn cycle_from(g: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().expect("non-empty path");
        for next in g.get(last).into_iter().flatten() {
            if next == start {
                let mut c = path.clone();
                c.push(next.clone());
                return Some(c);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push(p);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_from_a_layer_above_and_there_are_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g = graph(&src);
    for (from, to) in PENDING {
        if let Some(deps) = g.get_mut(*from) {
            deps.remove(*to);
        }
    }
    let mut wrong = Vec::new();
    for (module, deps) in &g {
        for d in deps {
            if layer_of(d) > layer_of(module) {
                wrong.push(format!("{module} imports {d}, a layer above it"));
            }
        }
        if let Some(c) = cycle_from(&g, module) {
            wrong.push(format!("import cycle: {}", c.join(" → ")));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_paths_groups_and_skips_comments() {
    let text = "use crate::{a::X, b::{c, d}, e};\n// crate::f\nlet x = crate::g::h();\n";
    let got: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(got, ["a", "b", "e", "g"]);
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        cycle_from(&g, "a"),
        Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
    );
}
