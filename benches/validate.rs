//! Validation throughput: 1,000 plan variants through the library, against a YAML-parse-only baseline.
//!
//! The ratio to the baseline is the number to compare across machines; plans/s is for this one.
//! Run with `cargo bench --bench validate`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use replay::plan::source::Source;
use replay::plan::{validate, yaml};

const PLANS: usize = 1_000;
const ROUNDS: usize = 5;
const TARGET: Duration = Duration::from_secs(2);

/// The shipped plans, renamed and given 0–3 extra steps each, so no two texts are equal.
fn variants() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut shipped: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("plans/ exists")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("a readable plan");
            (p.display().to_string(), text)
        })
        .collect();
    shipped.sort();
    (0..PLANS)
        .map(|i| {
            let (path, text) = &shipped[i % shipped.len()];
            let mut out = String::with_capacity(text.len() + 256);
            for line in text.lines() {
                if let Some(name) = line.strip_prefix("name: ") {
                    out.push_str(&format!("name: {name}-v{i}\n"));
                } else if line == "steps:" {
                    out.push_str("steps:\n");
                    for j in 0..i % 4 {
                        out.push_str(&format!(
                            "  - id: extra-{i}-{j}\n    kind: wait\n    queue_empty: worker-{j}\n    timeout: {}m\n",
                            j + 1
                        ));
                    }
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            (format!("{path}#{i}"), out)
        })
        .collect()
}

fn parse_only(plans: &[(String, String)]) -> Duration {
    let start = Instant::now();
    for (_, text) in plans {
        black_box(yaml::parse(black_box(text)).expect("the variant parses"));
    }
    start.elapsed()
}

fn validate_all(plans: &[(String, String)]) -> Duration {
    let start = Instant::now();
    for (path, text) in plans {
        let source = Source::from_text(path.clone(), text.clone()).expect("the variant loads");
        let validated = validate(source);
        assert!(
            !validated.has_errors(),
            "{path} is invalid: {:?}",
            validated.diagnostics
        );
        black_box(validated);
    }
    start.elapsed()
}

/// The fastest of a few rounds: the least disturbed by the rest of the machine.
fn best(rounds: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..rounds).map(|_| f()).min().unwrap_or_default()
}

fn per_second(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let plans = variants();
    let bytes: usize = plans.iter().map(|(_, t)| t.len()).sum();
    // Warm up: compiles the schema validator once, as the first file of a `replay validate` does.
    let first = validate_all(&plans);
    let validate_time = best(ROUNDS, || validate_all(&plans));
    let parse_time = best(ROUNDS, || parse_only(&plans));
    println!(
        "corpus: {} plan variants, {} KiB of YAML; best of {ROUNDS} rounds",
        plans.len(),
        bytes / 1024
    );
    println!(
        "validate (first round, schema compiled): {:>9.1} ms",
        first.as_secs_f64() * 1e3
    );
    println!(
        "validate:   {:>9.1} ms total, {:>9.0} plans/s",
        validate_time.as_secs_f64() * 1e3,
        per_second(plans.len(), validate_time)
    );
    println!(
        "parse only: {:>9.1} ms total, {:>9.0} plans/s",
        parse_time.as_secs_f64() * 1e3,
        per_second(plans.len(), parse_time)
    );
    println!(
        "ratio: validate takes {:.1}x the time of parsing the YAML",
        validate_time.as_secs_f64() / parse_time.as_secs_f64()
    );
    println!(
        "target: {} plans in under {} s: {}",
        plans.len(),
        TARGET.as_secs(),
        if validate_time < TARGET {
            "met"
        } else {
            "MISSED"
        }
    );
}
