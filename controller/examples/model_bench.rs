//! Validation throughput, as a benchmark command rather than a timed test:
//!
//! ```text
//! cargo run --release -p rampart-controller --example model_bench
//! ```
//!
//! For firewalls of growing size it compares the full pipeline (parse,
//! convert, libyang validation, typed model, shadow/overlap analysis)
//! against the baseline of only parsing the same YAML with `marked-yaml`,
//! measured in the same run. Results are recorded in `docs/model.md`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its table")]

use std::{collections::BTreeMap, fmt::Write as _, time::Instant};

use rampart_controller::model::{DocFormat, SourceDoc, Validator};

fn firewall(rules: usize) -> String {
    let mut s = String::from(
        "apiVersion: rampart.io/v1\nkind: Firewall\nmetadata: {name: bench, tenant: acme}\nspec:\n  rules:\n",
    );
    for i in 0..rules {
        // Disjoint /32 sources so every pair is analysed but none overlaps.
        let (a, b) = (i / 256, i % 256);
        writeln!(
            s,
            "    - {{sequence: {}, action: permit, protocol: tcp, sources: [10.{a}.{b}.1/32], destinationPorts: [80, \"8000-8080\"], log: true}}",
            i + 1
        )
        .unwrap();
    }
    s
}

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let v = Validator::new().unwrap();
    let inv = BTreeMap::new();
    println!("| rules | YAML bytes | parse only (marked-yaml) ms | full validation ms | ratio |");
    println!("|---:|---:|---:|---:|---:|");
    for n in [10, 100, 1_000, 5_000, 20_000] {
        let text = firewall(n);
        let runs = if n >= 5_000 { 3 } else { 7 };
        let parse = median_ms(runs, || {
            marked_yaml::parse_yaml(0, &text).unwrap();
        });
        let full = median_ms(runs, || {
            let out = v
                .validate(
                    &SourceDoc {
                        text: &text,
                        format: DocFormat::Yaml,
                        name: "bench",
                    },
                    &inv,
                )
                .unwrap();
            assert_eq!(out.len(), 1);
        });
        println!(
            "| {n} | {} | {parse:.2} | {full:.2} | {:.1}x |",
            text.len(),
            full / parse
        );
    }
}
