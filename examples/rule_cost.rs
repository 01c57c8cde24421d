//! What a bundle's rules cost a decision: never-seen shapes of PostgreSQL's regression SQL
//! decided by the compiled bundle, then again with one `deny` definition at a time switched
//! off (renamed, so that nothing calls it): the difference is what that definition costs,
//! the messages and the sorting of the reasons it adds included.
//!
//!   cargo run --release --example rule_cost -- [--whole] [--inputs N] [POLICY_DIR]
//!   scripts/rule-cost [--whole] [POLICY_DIR]      instructions (callgrind), not wall time
//!
//! `--whole` measures only the whole bundle, and then `Policy::check` (analysis, input, cache,
//! evaluation) over the same texts. Wall time on a shared machine drifts by tens of percent;
//! instruction counts do not, which is what `scripts/rule-cost` reads: callgrind collects only
//! inside `timed`, and dumps its counters after each call.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlguard::analysis::AnalysisOptions;
use sqlguard::policy::{Bundle, Identity, Policy, PolicyInput, DECISION_RULE};

#[path = "../benches/workload/mod.rs"]
#[allow(dead_code)] // the benches' workload: this example reads only its never-seen stream
mod workload;
use workload::{never_seen_shapes, query_input};

/// Runs `work` once and returns its time divided by `n`. Not inlined: callgrind collects only
/// inside it and dumps its counters when it returns.
#[inline(never)]
fn timed(n: usize, work: &mut dyn FnMut()) -> Duration {
    let start = Instant::now();
    work();
    // Through black_box: a tail call here would hide the function's end from callgrind.
    std::hint::black_box(start.elapsed() / n.max(1) as u32)
}

/// One pass of the compiled bundle over `inputs`, the input value built each time as a call
/// does.
fn timed_decisions(policy: &Policy, inputs: &[PolicyInput<'_>]) -> Duration {
    timed(inputs.len(), &mut || {
        for input in inputs {
            std::hint::black_box(policy.compiled(DECISION_RULE, input));
        }
    })
}

/// `Policy::check` on each text, as the never-seen stream makes it.
fn timed_checks(policy: &Policy, texts: &[&str]) -> Duration {
    let opts = AnalysisOptions::default();
    let identity = Identity::default();
    timed(texts.len(), &mut || {
        for sql in texts {
            std::hint::black_box(policy.check(
                sql,
                &opts,
                None,
                &identity,
                "teleport_postgres_query",
            ));
        }
    })
}

fn compiled(bundle: Bundle) -> Result<Policy, String> {
    let policy = Policy::with_cache(bundle, 0).map_err(|e| e.to_string())?;
    match policy.interpreted_because() {
        Some(why) => Err(format!("the bundle is not compiled: {why}")),
        None => Ok(policy),
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() -> Result<(), String> {
    let mut whole = false;
    let mut n = 2000;
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--whole" => whole = true,
            "--inputs" => {
                n = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--inputs needs a number")?
            }
            other => dir = PathBuf::from(other),
        }
    }
    let mut bundle = Bundle::load(&[dir], &[]).map_err(|e| e.to_string())?;
    // Under valgrind the load-time agreement check runs ~50× slower than its limit expects.
    bundle.eval_time_limit = Duration::from_secs(120);
    let identity = Identity::default();
    let stream = never_seen_shapes(n);
    if stream.is_empty() {
        return Err("no never-seen statements: ../shared/corpus/pg_regress is needed".into());
    }
    let inputs: Vec<PolicyInput<'_>> = stream
        .iter()
        .map(|(_, f)| query_input(f, &identity))
        .collect();
    let base = compiled(bundle.clone())?;
    let all = timed_decisions(&base, &inputs);
    println!("whole\t{}\t{:.1}", inputs.len(), us(all));
    if whole {
        let policy = Policy::with_cache(bundle, 1).map_err(|e| e.to_string())?;
        let texts: Vec<&str> = stream.iter().map(|(sql, _)| sql.as_str()).collect();
        println!(
            "check\t{}\t{:.1}",
            texts.len(),
            us(timed_checks(&policy, &texts))
        );
        return Ok(());
    }
    for (m, (path, text)) in bundle.modules.iter().enumerate() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(rest) = line.strip_prefix("deny contains ") else {
                continue;
            };
            let off = format!("deny_switched_off contains {rest}");
            let mut changed = lines.clone();
            changed[i] = &off;
            let mut variant = bundle.clone();
            variant.modules[m].1 = changed.join("\n");
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let what = format!("{name}:{}\t{}", i + 1, rest.trim_end_matches(" if {"));
            match compiled(variant) {
                Ok(policy) => println!(
                    "{what}\t{:.1}",
                    us(all) - us(timed_decisions(&policy, &inputs))
                ),
                Err(e) => println!("{what}\tnot measured: {e}"),
            }
        }
    }
    Ok(())
}
