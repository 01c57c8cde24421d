//! Facts → [`Decision`]: every decision is made by the Rego bundle in `policies/`.
//!
//! The bundle is parsed and prepared once; each call builds the input value straight from
//! the facts ([`to_value`]) and evaluates a clone of the prepared engine. Anything but a
//! well-formed allowing decision — an evaluation error, a missing or malformed decision, a
//! policy past its time limit — is a denial.

mod bundle;
mod cache;
mod compiled;
mod decision;
mod error;
mod input;
pub mod lint;
pub mod schema;
mod shapes;
pub mod testing;
mod value;

use std::sync::Arc;
use std::time::Instant;

pub use bundle::Bundle;
pub use cache::{CacheStats, DEFAULT_ENTRIES as DEFAULT_CACHE_ENTRIES};
pub use compiled::{agreement_plans, Compiled, Evaluator, AGREEMENT_SQL};
pub use decision::{listed, Decision, Limits, MaskDecision, MaskSpec, Reason, DENIED_LIMITS};
pub use error::PolicyError;
pub use input::{DatabaseContext, Identity, IdentitySource, PolicyInput};
pub use value::{to_policy_value, to_value, POSITIONS};

use cache::{DecisionCache, Lookup, Rule};

use crate::analysis::{AnalysisError, AnalysisOptions, Facts};

/// The rule every call is decided by.
pub const DECISION_RULE: &str = "data.sqlguard.decision";
/// The plan rules alone (`plan.rego`).
pub const PLAN_DECISION_RULE: &str = "data.sqlguard.plan_decision";

/// `data.sqlguard.plan_decision`.
#[derive(serde::Deserialize)]
struct PlanVerdict {
    allow: bool,
    reasons: Vec<Reason>,
    #[serde(default)]
    ask: Vec<Reason>,
}

/// A loaded, prepared policy bundle.
#[derive(Clone)]
pub struct Policy {
    engine: regorus::Engine,
    /// The bundle compiled for regorus' RVM, which decides when present; the interpreter
    /// (`engine`) otherwise.
    compiled: Option<Arc<Compiled>>,
    /// Why the interpreter decides although the bundle asked for the compiled evaluator.
    interpreted_because: Option<String>,
    bundle: Arc<Bundle>,
    /// The second decision evaluates `data.sqlguard.plan_decision` alone.
    plan_rules_only: bool,
    /// Decisions already made for equal inputs; `None` when off or the bundle is not
    /// deterministic.
    cache: Option<Arc<DecisionCache>>,
    /// Facts and decisions of texts already checked, keyed by shape ([`shapes`]); present
    /// exactly when `cache` is.
    shapes: Option<Arc<shapes::ShapeCache>>,
}

/// The analysis and the decision for one SQL text.
#[derive(Debug, Clone)]
pub struct Checked {
    pub facts: Result<Facts, AnalysisError>,
    pub decision: Decision,
    /// Time spent in analysis and in the policy, in microseconds.
    pub analysis_us: u64,
    pub policy_us: u64,
    /// The decision came from a cache (the decision cache, or the shape cache).
    pub cached: bool,
    /// The facts and the decision came from the shape cache: the text was not parsed.
    pub shape_cached: bool,
}

impl Policy {
    /// Loads and prepares a bundle, with a decision cache of [`DEFAULT_CACHE_ENTRIES`].
    pub fn new(bundle: Bundle) -> Result<Policy, PolicyError> {
        Self::with_cache(bundle, DEFAULT_CACHE_ENTRIES)
    }

    /// Loads and prepares a bundle, keeping up to `cache_entries` decisions (0: none). A
    /// bundle that is not deterministic ([`Bundle::nondeterministic_builtin`]) gets no cache.
    pub fn with_cache(bundle: Bundle, cache_entries: usize) -> Result<Policy, PolicyError> {
        let engine = bundle.engine()?;
        let plan_rules_only = bundle.plan_rules_are_shipped();
        let (compiled, interpreted_because) = match bundle.evaluator {
            Evaluator::Interpreter => (None, None),
            Evaluator::Compiled => match bundle.data_value().and_then(|data| {
                Compiled::new(&engine, data, bundle.eval_time_limit, plan_rules_only)
            }) {
                Ok(c) => (Some(Arc::new(c)), None),
                Err(e) => {
                    // One line for every CLI run; the full comparison is for `doctor` and
                    // RUST_LOG=debug.
                    let first = e.split(" (interpreter:").next().unwrap_or(&e);
                    tracing::warn!(
                        "the policy is evaluated by regorus' interpreter (slower): {first}; \
                         `sqlguard doctor` shows both decisions, evaluator = \"interpreter\" \
                         silences this"
                    );
                    tracing::debug!("compiled evaluator refused: {e}");
                    (None, Some(e))
                }
            },
        };
        let cache = match bundle.nondeterministic_builtin() {
            Some(builtin) => {
                tracing::info!("the policy calls {builtin}: its decisions are not cached");
                None
            }
            None => DecisionCache::new(cache_entries).map(Arc::new),
        };
        let shapes = cache
            .as_ref()
            .and_then(|_| shapes::ShapeCache::new(cache_entries))
            .map(Arc::new);
        Ok(Policy {
            engine,
            compiled,
            interpreted_because,
            plan_rules_only,
            bundle: Arc::new(bundle),
            cache,
            shapes,
        })
    }

    /// The decision cache's counters; `None` when there is no cache.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        let mut stats = self.cache.as_ref().map(|c| c.stats())?;
        if let Some(shapes) = &self.shapes {
            (stats.shape_hits, stats.shape_misses, stats.shapes) = shapes.counts();
        }
        Some(stats)
    }

    /// Which evaluator decides: `compiled` or `interpreter`.
    pub fn evaluator(&self) -> Evaluator {
        if self.compiled.is_some() {
            Evaluator::Compiled
        } else {
            Evaluator::Interpreter
        }
    }

    /// Why the interpreter decides although the compiled evaluator was asked for.
    pub fn interpreted_because(&self) -> Option<&str> {
        self.interpreted_because.as_deref()
    }

    /// The bundle's SHA-256 digest over every file, for audit logs.
    pub fn digest(&self) -> &str {
        &self.bundle.digest
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Evaluates `data.sqlguard.decision` for `input`. Never fails: errors deny.
    pub fn decide(&self, input: &PolicyInput<'_>) -> Decision {
        self.decide_cached(input).0
    }

    /// [`decide`](Self::decide), and whether the decision came from the cache.
    pub fn decide_cached(&self, input: &PolicyInput<'_>) -> (Decision, bool) {
        self.through_cache(Rule::Decision, input, |v| self.decide_value(v))
    }

    /// `evaluate`'s answer for `input`, or the one kept for an equal input under `rule`. A
    /// fresh answer is kept unless it is a failure's denial ([`cacheable`]).
    fn through_cache(
        &self,
        rule: Rule,
        input: &PolicyInput<'_>,
        evaluate: impl FnOnce(regorus::Value) -> Decision,
    ) -> (Decision, bool) {
        let value = match to_policy_value(input) {
            Ok(v) => v,
            Err(e) => {
                return (
                    Decision::deny(
                        "policy_input",
                        format!("the policy input could not be built: {e}"),
                    ),
                    false,
                )
            }
        };
        let slot = match self.cache.as_deref().map(|c| c.lookup(rule, &value)) {
            Some(Lookup::Hit(d)) => return (d, true),
            Some(Lookup::Miss(slot)) => Some(slot),
            None => None,
        };
        let decision = evaluate(value);
        if let (Some(cache), Some(slot)) = (self.cache.as_deref(), slot) {
            if cacheable(&decision) {
                cache.store(slot, &decision);
            }
        }
        (decision, false)
    }

    fn decide_value(&self, value: regorus::Value) -> Decision {
        match self.evaluate(value) {
            Ok(d) => d,
            Err(e) => {
                // The details (Rego file, line, source) are for the operator, not the agent.
                tracing::error!("POLICY EVALUATION FAILED, the call is denied: {e}");
                Decision::deny(
                    "policy_error",
                    "the policy failed to evaluate, so the call is denied: this is a fault in the policy bundle, not in the query; ask the operator to check sqlguard's log".to_string(),
                )
            }
        }
    }

    /// The decision with PostgreSQL's plan, for a call `allowed` allowed without it. When
    /// the bundle's plan rules are the shipped ones, only they are evaluated (the rest of the
    /// decision does not read `input.plan`, so it stands); otherwise the whole decision is
    /// made again. Never fails: errors deny.
    pub fn decide_with_plan(&self, input: &PolicyInput<'_>, allowed: &Decision) -> Decision {
        if !self.plan_rules_only {
            return self.decide(input);
        }
        // The plan rules read the plan and the database; the facts were judged already.
        let narrow = PolicyInput {
            query: None,
            ..input.clone()
        };
        let (verdict, _) = self.through_cache(Rule::Plan, &narrow, |v| self.plan_verdict(v));
        if !cacheable(&verdict) {
            // The plan rules failed: their denial stands as it is.
            return verdict;
        }
        with_plan_verdict(allowed, verdict)
    }

    /// `data.sqlguard.plan_decision` for `value`, as a decision without limits (the static
    /// decision's limits apply); a failure denies.
    fn plan_verdict(&self, value: regorus::Value) -> Decision {
        let started = Instant::now();
        let verdict = self
            .eval_rule(PLAN_DECISION_RULE, value)
            .and_then(|v| v.to_json_str().map_err(|e| e.to_string()))
            .and_then(|t| serde_json::from_str::<PlanVerdict>(&t).map_err(|e| e.to_string()));
        tracing::trace!(us = started.elapsed().as_micros() as u64, "plan decision");
        match verdict {
            Ok(v) => Decision {
                allow: v.allow,
                reasons: v.reasons,
                ask: v.ask,
                limits: DENIED_LIMITS,
                explain: false,
                mask: Default::default(),
            },
            Err(e) => {
                tracing::error!(
                    "POLICY EVALUATION FAILED (plan decision), the call is denied: {e}"
                );
                Decision::deny(
                    "policy_error",
                    "the policy failed to evaluate the query's plan, so the call is denied: this is a fault in the policy bundle, not in the query; ask the operator to check sqlguard's log".to_string(),
                )
            }
        }
    }

    fn evaluate(&self, input: regorus::Value) -> Result<Decision, String> {
        self.eval_rule(DECISION_RULE, input).map(|v| from_value(&v))
    }

    /// `rule`'s value for `input`, by the compiled bundle when there is one.
    fn eval_rule(&self, rule: &str, input: regorus::Value) -> Result<regorus::Value, String> {
        let Some(compiled) = &self.compiled else {
            return self.interpret(rule, input);
        };
        compiled.run(rule, input.clone()).map_err(|(e, limit)| {
            if limit {
                // Past its limit: the interpreter would only take as long again.
                return e;
            }
            // The RVM's errors name no Rego file or line: the interpreter's do, for the log.
            // The call is denied either way.
            match self.interpret(rule, input) {
                Err(reference) => reference,
                Ok(v) => {
                    tracing::error!(
                        "EVALUATORS DISAGREE: the compiled policy failed ({e}) where the interpreter gives {}; the call is denied. Set evaluator = \"interpreter\" and report this",
                        v.to_json_str().unwrap_or_default()
                    );
                    e
                }
            }
        })
    }

    /// `rule`'s value for `input` by regorus' interpreter.
    fn interpret(&self, rule: &str, input: regorus::Value) -> Result<regorus::Value, String> {
        let mut engine = self.engine.clone();
        engine.set_input(input);
        engine
            .eval_rule(rule.to_string())
            .map_err(|e| e.to_string())
    }

    /// The interpreter's value of `rule` for `input`, whatever evaluator decides calls: the
    /// reference the compiled bundle is tested against.
    pub fn interpreted(
        &self,
        rule: &str,
        input: &PolicyInput<'_>,
    ) -> Result<regorus::Value, String> {
        self.interpret(rule, to_policy_value(input).map_err(|e| e.to_string())?)
    }

    /// The compiled bundle's value of `rule` for `input`; `None` when the interpreter decides.
    pub fn compiled(
        &self,
        rule: &str,
        input: &PolicyInput<'_>,
    ) -> Option<Result<regorus::Value, String>> {
        let compiled = self.compiled.as_ref()?;
        Some(
            to_policy_value(input)
                .map_err(|e| e.to_string())
                .and_then(|v| compiled.eval(rule, v)),
        )
    }

    /// Evaluates the bundle on a few ordinary calls (tables, columns, functions, settings): a
    /// bundle that cannot decide those would deny every call with `policy_error`, so a reload
    /// refuses it.
    pub fn smoke_test(&self) -> Result<(), String> {
        const SMOKE: [&str; 3] = [
            "SELECT 1",
            "SELECT t.a, lower(t.b) FROM public.t JOIN s USING (id) WHERE t.c = 'x' ORDER BY 1",
            "SHOW work_mem",
        ];
        let identity = Identity::default();
        let database = DatabaseContext::default();
        for sql in SMOKE {
            let facts = crate::analysis::analyze(sql).map_err(|e| e.to_string())?;
            let input = PolicyInput {
                query: Some(&facts),
                database: Some(&database),
                identity: &identity,
                tool: "teleport_postgres_query",
                plan: None,
            };
            let value = to_policy_value(&input).map_err(|e| e.to_string())?;
            self.evaluate(value)
                .map_err(|e| format!("on {sql:?}: {e}"))?;
        }
        Ok(())
    }

    /// Analyzes `sql` and decides on it: the whole guard for one query. A text of a shape
    /// already checked, with the same values in the constants that matter, is answered from
    /// the shape cache without parsing.
    pub fn check(
        &self,
        sql: &str,
        opts: &AnalysisOptions,
        database: Option<&DatabaseContext>,
        identity: &Identity,
        tool: &str,
    ) -> Checked {
        let start = Instant::now();
        let context = shapes::Context {
            tool,
            database,
            identity,
            opts,
        };
        let shapes = self.shapes.as_deref();
        let keyed = shapes.and_then(|c| c.key(sql, &context));
        if let (Some(c), Some(k)) = (shapes, &keyed) {
            if let Some((facts, decision)) = c.get(k, &context) {
                return Checked {
                    facts: Ok(facts),
                    decision,
                    analysis_us: start.elapsed().as_micros() as u64,
                    policy_us: 0,
                    cached: true,
                    shape_cached: true,
                };
            }
        }
        let (facts, constants) = match keyed {
            Some(_) => match crate::analysis::analyze_traced(sql, opts) {
                Ok((f, c)) => (Ok(f), Some(c)),
                Err(e) => (Err(e), None),
            },
            None => (crate::analysis::analyze_with(sql, opts), None),
        };
        let analysis_us = start.elapsed().as_micros() as u64;
        let start = Instant::now();
        let (decision, cached) = match &facts {
            // Fail closed: a text the analysis cannot read is never allowed, whatever
            // the policy says.
            Err(e) => (Decision::deny(e.code(), e.to_string()), false),
            Ok(f) => self.decide_cached(&PolicyInput {
                query: Some(f),
                database,
                identity,
                tool,
                plan: None,
            }),
        };
        if let (Some(c), Some(k), Ok(f), Some(consts)) = (shapes, keyed, &facts, &constants) {
            if cacheable(&decision) {
                c.put(k, &context, f, consts, &decision);
            }
        }
        Checked {
            facts,
            decision,
            analysis_us,
            policy_us: start.elapsed().as_micros() as u64,
            cached,
            shape_cached: false,
        }
    }

    /// Whether `tool` may be listed and called by `identity` at all.
    pub fn tool_allowed(&self, tool: &str, identity: &Identity) -> Decision {
        self.decide(&PolicyInput {
            query: None,
            database: None,
            identity,
            tool,
            plan: None,
        })
    }
}

/// The static decision `allowed` with the plan rules' verdict: the plan's denials replace the
/// allowance, its asks join the static ones.
fn with_plan_verdict(allowed: &Decision, verdict: Decision) -> Decision {
    if verdict.allow && verdict.reasons.is_empty() {
        let mut d = allowed.clone();
        for a in verdict.ask {
            if !d.ask.contains(&a) {
                d.ask.push(a);
            }
        }
        d
    } else {
        Decision {
            allow: false,
            reasons: verdict.reasons,
            ask: Vec::new(),
            ..allowed.clone()
        }
    }
}

/// Whether a decision may be kept: the bundle's own answers, not the denials sqlguard
/// substitutes when the bundle fails (`policy_error`, `policy_input`, …).
fn cacheable(d: &Decision) -> bool {
    !d.reasons.iter().any(|r| r.rule.starts_with("policy_"))
}

/// Reads the decision out of the policy's value; anything malformed denies.
fn from_value(v: &regorus::Value) -> Decision {
    if *v == regorus::Value::Undefined {
        return Decision::deny(
            "policy_missing_decision",
            "the policy produced no decision (data.sqlguard.decision is undefined), so the call is denied",
        );
    }
    let text = match v.to_json_str() {
        Ok(t) => t,
        Err(e) => {
            return Decision::deny(
                "policy_malformed",
                format!("the policy's decision is unreadable: {e}"),
            )
        }
    };
    match serde_json::from_str::<Decision>(&text) {
        Ok(d) if d.allow && !d.reasons.is_empty() => Decision {
            allow: false,
            ask: Vec::new(),
            ..d
        },
        Ok(d) if !d.allow && !d.ask.is_empty() => Decision {
            ask: Vec::new(),
            ..d
        },
        Ok(d) if d.allow && (d.limits.max_rows == 0 || d.limits.statement_timeout_ms == 0 || d.limits.max_result_bytes == 0) => {
            Decision::deny("policy_malformed", "the policy allowed the call with a zero limit, so it is denied: set max_rows, max_result_bytes and statement_timeout_ms above 0")
        }
        Ok(d) => d,
        Err(e) => Decision::deny(
            "policy_malformed",
            format!("the policy's decision does not have the shape {{allow, reasons, limits}} ({e}), so the call is denied"),
        ),
    }
}
