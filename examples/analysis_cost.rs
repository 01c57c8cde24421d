//! What the analysis costs: the bench's join (and TPC-H when `../shared` is present) analysed
//! many times, whole and by part (libpg_query's parse writing the walker's arena, the arena's
//! check, the walk and the facts), so that callgrind can count each part's
//! instructions without the bench harness around it.
//!
//!   cargo run --release --example analysis_cost -- [--repeat N]
//!   scripts/analysis-cost                      instructions (callgrind), not wall time

use std::time::{Duration, Instant};

use sqlguard::analysis::{analyze_with, raw, AnalysisOptions};

#[path = "../benches/workload/mod.rs"]
#[allow(dead_code)] // the benches' workload: this example reads the join and TPC-H
mod workload;

/// Runs `work` once and returns its time divided by `n`. Not inlined: callgrind collects only
/// inside it and dumps its counters when it returns.
#[inline(never)]
fn timed(n: usize, work: &mut dyn FnMut()) -> Duration {
    let start = Instant::now();
    work();
    std::hint::black_box(start.elapsed() / n.max(1) as u32)
}

fn main() -> Result<(), String> {
    let mut repeat = 200;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--repeat needs a number")?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let opts = AnalysisOptions::default();
    let mut rows: Vec<(String, usize, Duration)> = Vec::new();
    let join = workload::JOIN;
    // Warm: the raw path's trust check and the catalog run once, outside the counts.
    analyze_with(join, &opts).map_err(|e| e.to_string())?;
    let d = timed(repeat, &mut || {
        for _ in 0..repeat {
            std::hint::black_box(raw::parse(std::hint::black_box(join)).unwrap());
        }
    });
    rows.push(("join: parse + writing the arena".into(), repeat, d));
    let events = raw::parse(join).map_err(|e| e.to_string())?;
    let d = timed(repeat, &mut || {
        for _ in 0..repeat {
            std::hint::black_box(raw::tree(&events).unwrap().members(0).len());
        }
    });
    rows.push(("join: the arena checked".into(), repeat, d));
    let d = timed(repeat, &mut || {
        for _ in 0..repeat {
            std::hint::black_box(analyze_with(std::hint::black_box(join), &opts).unwrap());
        }
    });
    rows.push(("join: whole analysis".into(), repeat, d));
    let tpch = workload::tpch();
    if !tpch.is_empty() {
        let n = tpch.len() * (repeat / 10).max(1);
        let d = timed(n, &mut || {
            for _ in 0..(repeat / 10).max(1) {
                for (_, sql) in &tpch {
                    std::hint::black_box(analyze_with(sql, &opts).unwrap());
                }
            }
        });
        rows.push(("TPC-H (22): whole analysis, mean".into(), n, d));
    }
    for (name, n, d) in rows {
        println!("{name}\t{n}\t{:.2}", d.as_secs_f64() * 1e6);
    }
    Ok(())
}
