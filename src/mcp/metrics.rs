//! Prometheus metrics for a team server (`/metrics` with `serve --listen`): calls by tool and
//! verdict, refusals by rule, decision and execution latency, calls running, pool use.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::audit::{CallRecord, OutcomeRecord, Timings};

/// Latency buckets, in seconds: 50 µs to 30 s.
const BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    calls: IntCounterVec,
    refusals: IntCounterVec,
    decision: HistogramVec,
    execution: HistogramVec,
    running: IntGauge,
    pool: IntGaugeVec,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // The names and labels below are fixed and valid: registration cannot fail.
    r.unwrap_or_else(|e| panic!("metric definition: {e}"))
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let calls = must(IntCounterVec::new(
            Opts::new("sqlguard_calls_total", "Calls by tool and final verdict"),
            &["tool", "verdict"],
        ));
        let refusals = must(IntCounterVec::new(
            Opts::new(
                "sqlguard_refusals_total",
                "Refused calls by the rule that refused",
            ),
            &["rule"],
        ));
        let decision = must(HistogramVec::new(
            HistogramOpts::new(
                "sqlguard_decision_seconds",
                "Analysis and policy time of a call",
            )
            .buckets(BUCKETS.to_vec()),
            &["cached"],
        ));
        let execution = must(HistogramVec::new(
            HistogramOpts::new(
                "sqlguard_execution_seconds",
                "Time of an allowed call's guarded execution",
            )
            .buckets(BUCKETS.to_vec()),
            &["verdict"],
        ));
        let running = must(IntGauge::new(
            "sqlguard_calls_running",
            "Queries running now",
        ));
        let pool = must(IntGaugeVec::new(
            Opts::new(
                "sqlguard_pool_connections",
                "Database connections by database and state (open, idle)",
            ),
            &["database", "state"],
        ));
        for c in [
            Box::new(calls.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(refusals.clone()),
            Box::new(decision.clone()),
            Box::new(execution.clone()),
            Box::new(running.clone()),
            Box::new(pool.clone()),
        ] {
            must(registry.register(c));
        }
        Metrics {
            registry,
            calls,
            refusals,
            decision,
            execution,
            running,
            pool,
        }
    }

    fn decided(&self, t: &Timings) {
        if let (Some(a), Some(p)) = (t.analysis_us, t.policy_us) {
            let cached = if t.cached || t.shape_cached {
                "yes"
            } else {
                "no"
            };
            self.decision
                .with_label_values(&[cached])
                .observe((a + p) as f64 / 1e6);
        }
    }

    /// A call refused or failed before it ran (final), or the intent of an allowed one.
    pub fn call(&self, r: &CallRecord) {
        self.decided(&r.timings);
        if r.verdict == crate::audit::verdict::PENDING {
            return;
        }
        self.calls.with_label_values(&[r.tool, r.verdict]).inc();
        for rule in &r.rules {
            self.refusals.with_label_values(&[rule]).inc();
        }
    }

    /// What became of an allowed query.
    pub fn outcome(&self, r: &OutcomeRecord) {
        self.calls
            .with_label_values(&[crate::mcp::TOOL_QUERY, r.verdict])
            .inc();
        for rule in &r.rules {
            self.refusals.with_label_values(&[rule]).inc();
        }
        if let Some(us) = r.timings.execution_us {
            self.execution
                .with_label_values(&[r.verdict])
                .observe(us as f64 / 1e6);
        }
    }

    /// An HTTP request refused before MCP (no or a bad token).
    pub fn refused_request(&self, rule: &str) {
        self.calls.with_label_values(&["http", "denied"]).inc();
        self.refusals.with_label_values(&[rule]).inc();
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, state: &super::State) -> String {
        self.running.set(state.limiter.running() as i64);
        for d in &state.databases {
            if let Ok(db) = d.backend.ready() {
                let (size, idle) = db.status();
                let uri = d.context.uri.as_str();
                self.pool.with_label_values(&[uri, "open"]).set(size as i64);
                self.pool.with_label_values(&[uri, "idle"]).set(idle as i64);
            }
        }
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A record that counts in the metrics when it is audited.
pub trait Observed {
    fn observe(&self, metrics: &Metrics);
}

impl Observed for CallRecord {
    fn observe(&self, metrics: &Metrics) {
        metrics.call(self);
    }
}

impl Observed for OutcomeRecord {
    fn observe(&self, metrics: &Metrics) {
        metrics.outcome(self);
    }
}
