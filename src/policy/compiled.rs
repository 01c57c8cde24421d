//! The bundle compiled for regorus' RVM: the fast evaluator.
//!
//! regorus' interpreter costs ~5 µs per rule body it enters, whatever the query; its RVM runs
//! the same bundle compiled to instructions several times faster. As shipped (0.14.1) the RVM
//! fails open, so sqlguard evaluates with a patched copy (`vendor/regorus`, the patch and why
//! in `vendor/regorus/README.md`): an error inside a rule body ends the evaluation (the call is
//! denied) instead of making the body false, conflicting values of a complete rule are an
//! error, and `input`/`data` are loaded where every path of a body passes.
//!
//! The interpreter stays the reference. A bundle is evaluated here only when it compiles and
//! decides [`AGREEMENT_SQL`] exactly as the interpreter does, in several contexts, when it is
//! loaded; otherwise the interpreter decides every call and the log says why
//! ([`Compiled::new`]). The tests hold the two to the same decisions over the corpora and
//! over a table of failure cases, each of which must deny.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::{RegoVM, VmError};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::Value;

use super::{DatabaseContext, Identity, PolicyInput, DECISION_RULE, PLAN_DECISION_RULE};
use crate::analysis::plan::{plan_facts, MemorySettings, RelationInfo};

/// Which evaluator decides a bundle's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Evaluator {
    /// The compiled bundle (regorus' patched RVM) when it compiles and agrees with the
    /// interpreter at load; the interpreter otherwise.
    #[default]
    Compiled,
    /// regorus' interpreter for every call (the reference; ~3–5× slower).
    Interpreter,
}

impl std::str::FromStr for Evaluator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "compiled" => Ok(Evaluator::Compiled),
            "interpreter" => Ok(Evaluator::Interpreter),
            other => Err(format!(
                "unknown evaluator {other:?}: use \"compiled\" (the default) or \"interpreter\""
            )),
        }
    }
}

/// Idle VMs kept for reuse; more concurrent calls create their own.
const POOL: usize = 8;

/// No run executes more instructions (the time limit is the real bound).
const MAX_INSTRUCTIONS: usize = 50_000_000;

/// The bundle compiled for the RVM, with VMs ready to run it.
pub struct Compiled {
    decision: Arc<Program>,
    /// `data.sqlguard.plan_decision`, when the bundle has it.
    plan: Option<Arc<Program>>,
    data: Value,
    time_limit: Duration,
    /// Idle VMs, each with the program it holds.
    idle: Mutex<Vec<(RegoVM, Arc<Program>)>>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("decision_instructions", &self.decision.instructions.len())
            .field("plan", &self.plan.is_some())
            .finish()
    }
}

/// SQL texts on which a compiled bundle must decide exactly as the interpreter before it is
/// used: allowed reads, and a denial from each family of rules (writes, DDL, settings,
/// functions, side channels, catalogs, columns, limits, transactions, several statements).
pub const AGREEMENT_SQL: &[&str] = &[
    "SELECT 1",
    "SHOW work_mem",
    "SELECT t.a, lower(t.b) FROM public.t JOIN s USING (id) WHERE t.c = 'x' ORDER BY 1",
    "SELECT count(*), max(amount) FROM orders o WHERE o.created_at > now() - interval '1 day' GROUP BY o.region HAVING count(*) > 3",
    "WITH x AS (SELECT id FROM a UNION SELECT id FROM b) SELECT * FROM x LIMIT 10",
    "SELECT * FROM users",
    "SELECT email, password_hash FROM public.users",
    "SELECT * FROM pg_catalog.pg_authid",
    "SELECT * FROM pg_stat_activity",
    "SELECT current_setting('ssl_key_file')",
    "SELECT current_setting('search_path')",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_sleep(10)",
    "SELECT nextval('s')",
    "SELECT set_config('work_mem', '1GB', false)",
    "SELECT * FROM dblink('host=x', 'select 1') AS t(a int)",
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1",
    "DELETE FROM t",
    "DROP TABLE t",
    "CREATE TABLE t (a int)",
    "COPY t TO '/tmp/x'",
    "SET work_mem = '1GB'",
    "BEGIN",
    "SELECT 1; SELECT 2",
    "SELECT * FROM t FOR UPDATE",
    "LOCK TABLE t",
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "EXPLAIN ANALYZE DELETE FROM t",
    "SELECT lo_import('/etc/passwd')",
    "SELECT * FROM generate_series(1, 1000000000)",
    "SELECT xmin, ctid FROM t",
];

/// The callers and databases the two evaluators are compared in: nobody on no database, and
/// a user with roles and traits on a labelled one.
fn agreement_contexts() -> ([Identity; 2], [DatabaseContext; 2]) {
    let people = [
        Identity::default(),
        Identity {
            user: "alice@example.com".into(),
            roles: vec!["analyst".into(), "access".into()],
            traits: [("team".to_string(), vec!["data".to_string()])].into(),
            ..Default::default()
        },
    ];
    let databases = [
        DatabaseContext::default(),
        DatabaseContext {
            uri: "teleport://clusters/c/databases/prod".into(),
            cluster: "c".into(),
            name: "prod".into(),
            db_name: "app".into(),
            db_user: "reader".into(),
            labels: [("env".to_string(), "prod".to_string())].into(),
        },
    ];
    (people, databases)
}

impl Compiled {
    /// Compiles `engine`'s bundle (prepared, holding `data`) and proves it decides as the
    /// interpreter on [`AGREEMENT_SQL`]. An error says why the interpreter must decide.
    pub fn new(
        engine: &regorus::Engine,
        data: Value,
        time_limit: Duration,
        with_plan: bool,
    ) -> Result<Compiled, String> {
        let program = |rule: &str| -> Result<Arc<Program>, String> {
            let mut engine = engine.clone();
            let policy = engine
                .compile_with_entrypoint(&rule.into())
                .map_err(|e| format!("{rule} does not compile: {e}"))?;
            Compiler::compile_from_policy(&policy, &[rule])
                .map_err(|e| format!("{rule} does not compile for the RVM: {e}"))
        };
        let compiled = Compiled {
            decision: program(DECISION_RULE)?,
            plan: if with_plan {
                Some(program(PLAN_DECISION_RULE)?)
            } else {
                None
            },
            data,
            time_limit,
            idle: Mutex::new(Vec::new()),
        };
        compiled.agrees_with(engine)?;
        Ok(compiled)
    }

    /// Evaluates `rule` (the decision or the plan decision) for `input`.
    pub fn eval(&self, rule: &str, input: Value) -> Result<Value, String> {
        self.run(rule, input).map_err(|(message, _)| message)
    }

    /// [`eval`](Self::eval); an error also says whether it is a resource limit (time,
    /// instructions, memory), which evaluating again would only repeat.
    pub(super) fn run(&self, rule: &str, input: Value) -> Result<Value, (String, bool)> {
        self.run_vm(rule, input).map_err(|e| {
            let limit = matches!(
                e,
                VmError::TimeLimitExceeded { .. }
                    | VmError::InstructionLimitExceeded { .. }
                    | VmError::MemoryLimitExceeded { .. }
                    | VmError::MemoryBudgetExceeded { .. }
            );
            (e.to_string(), limit)
        })
    }

    fn run_vm(&self, rule: &str, input: Value) -> Result<Value, VmError> {
        let program = match rule {
            DECISION_RULE => &self.decision,
            PLAN_DECISION_RULE => self.plan.as_ref().ok_or_else(|| not_compiled(rule))?,
            other => return Err(not_compiled(other)),
        };
        let (mut vm, mut loaded) = self.vm()?;
        // A run starts from a clean state (rule cache, registers, stacks) whatever ran before;
        // loading the program again is needed only when the VM last ran the other one.
        if !Arc::ptr_eq(&loaded, program) {
            vm.load_program(program.clone());
            loaded = program.clone();
        }
        vm.set_input(input);
        let result = vm.execute_entry_point_by_name(rule);
        // Drop what the run holds (input, registers) before the VM waits for the next call.
        vm.set_input(Value::Undefined);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < POOL {
                idle.push((vm, loaded));
            }
        }
        result
    }

    /// An idle VM and the program it holds, or a new one holding the decision.
    fn vm(&self) -> Result<(RegoVM, Arc<Program>), VmError> {
        if let Some(idle) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(idle);
        }
        let mut vm = RegoVM::new();
        vm.load_program(self.decision.clone());
        vm.set_data(self.data.clone())?;
        // Every builtin error is an error, and with the patch every error ends the run.
        vm.set_strict_builtin_errors(true);
        vm.set_max_instructions(MAX_INSTRUCTIONS);
        vm.set_execution_timer_config(Some(ExecutionTimerConfig {
            limit: self.time_limit,
            check_interval: std::num::NonZeroU32::new(64).unwrap_or(std::num::NonZeroU32::MIN),
        }));
        Ok((vm, self.decision.clone()))
    }

    /// One rule for one input, by both evaluators: equal results (or both errors) agree.
    fn compare(
        &self,
        engine: &regorus::Engine,
        rule: &str,
        input: &PolicyInput<'_>,
        what: &str,
    ) -> Result<(), String> {
        let value = super::to_policy_value(input).map_err(|e| e.to_string())?;
        let mut reference = engine.clone();
        reference.set_input(value.clone());
        let expected = reference
            .eval_rule(rule.to_string())
            .map_err(|e| e.to_string());
        let got = self.eval(rule, value);
        let same = match (&expected, &got) {
            (Ok(a), Ok(b)) => a == b,
            (Err(_), Err(_)) => true,
            _ => false,
        };
        if same {
            Ok(())
        } else {
            Err(format!(
                "the compiled bundle decides {what} differently from the interpreter \
                 (interpreter: {}, compiled: {})",
                shown(&expected),
                shown(&got)
            ))
        }
    }

    /// Both evaluators on [`AGREEMENT_SQL`] in four contexts (and the plan decision on a few
    /// plans): the first difference is the error.
    fn agrees_with(&self, engine: &regorus::Engine) -> Result<(), String> {
        let (people, databases) = agreement_contexts();
        let plans = if self.plan.is_some() {
            agreement_plans()
        } else {
            Vec::new()
        };
        let compare = |rule: &str, input: &PolicyInput<'_>, what: &str| {
            self.compare(engine, rule, input, what)
        };
        // Each text is analyzed once; the four contexts are judged on as many threads as the
        // machine has cores (the interpreter's ~300 µs per call is most of a CLI start-up).
        let facts: Vec<(&str, crate::analysis::Facts)> = AGREEMENT_SQL
            .iter()
            .filter_map(|sql| Some((*sql, crate::analysis::analyze(sql).ok()?)))
            .collect();
        let contexts: Vec<(&Identity, &DatabaseContext)> = people
            .iter()
            .flat_map(|identity| databases.iter().map(move |database| (identity, database)))
            .collect();
        let judge = |identity: &Identity, database: &DatabaseContext| -> Result<(), String> {
            let base = PolicyInput {
                query: None,
                database: Some(database),
                identity,
                tool: "teleport_postgres_query",
                plan: None,
            };
            compare(DECISION_RULE, &base, "a call without SQL")?;
            for (sql, facts) in &facts {
                let input = PolicyInput {
                    query: Some(facts),
                    ..base.clone()
                };
                compare(DECISION_RULE, &input, &format!("{sql:?}"))?;
            }
            for (name, plan) in &plans {
                let input = PolicyInput {
                    plan: Some(plan),
                    ..base.clone()
                };
                compare(PLAN_DECISION_RULE, &input, name)?;
            }
            Ok(())
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, contexts.len());
        if threads == 1 {
            return contexts.iter().try_for_each(|(i, d)| judge(i, d));
        }
        let per_thread = contexts.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let running: Vec<_> = contexts
                .chunks(per_thread)
                .map(|chunk| scope.spawn(|| chunk.iter().try_for_each(|(i, d)| judge(i, d))))
                .collect();
            running.into_iter().try_for_each(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err("the agreement check panicked".to_string()))
            })
        })
    }
}

fn not_compiled(rule: &str) -> VmError {
    VmError::Internal {
        message: format!("{rule} was not compiled"),
        pc: 0,
    }
}

fn shown(r: &Result<Value, String>) -> String {
    match r {
        Ok(v) => v.to_json_str().unwrap_or_else(|e| e.to_string()),
        Err(e) => format!("error: {}", e.lines().last().unwrap_or(e)),
    }
}

/// A few plans for the plan decision's agreement check: a small index scan, a sequential
/// scan of a large table, a cartesian join and a sort that spills.
pub fn agreement_plans() -> Vec<(&'static str, crate::analysis::plan::PlanFacts)> {
    let explains = [
        (
            "an index scan",
            r#"[{"Plan": {"Node Type": "Index Scan", "Relation Name": "events", "Schema": "public", "Index Name": "events_pkey", "Startup Cost": 0.29, "Total Cost": 8.31, "Plan Rows": 1, "Plan Width": 40}}]"#,
        ),
        (
            "a large sequential scan",
            r#"[{"Plan": {"Node Type": "Seq Scan", "Relation Name": "events", "Schema": "public", "Startup Cost": 0.0, "Total Cost": 1834000.0, "Plan Rows": 100000000, "Plan Width": 40}}]"#,
        ),
        (
            "a cartesian join",
            r#"[{"Plan": {"Node Type": "Nested Loop", "Startup Cost": 0.0, "Total Cost": 150000000.0, "Plan Rows": 10000000000, "Plan Width": 80, "Plans": [
            {"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Relation Name": "a", "Schema": "public", "Startup Cost": 0.0, "Total Cost": 1500.0, "Plan Rows": 100000, "Plan Width": 40},
            {"Node Type": "Materialize", "Parent Relationship": "Inner", "Startup Cost": 0.0, "Total Cost": 2000.0, "Plan Rows": 100000, "Plan Width": 40, "Plans": [
              {"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Relation Name": "b", "Schema": "public", "Startup Cost": 0.0, "Total Cost": 1500.0, "Plan Rows": 100000, "Plan Width": 40}]}]}}]"#,
        ),
        (
            "a spilling sort",
            r#"[{"Plan": {"Node Type": "Sort", "Startup Cost": 900000.0, "Total Cost": 950000.0, "Plan Rows": 20000000, "Plan Width": 200, "Sort Key": ["a"], "Plans": [
            {"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Relation Name": "events", "Schema": "public", "Startup Cost": 0.0, "Total Cost": 400000.0, "Plan Rows": 20000000, "Plan Width": 200}]}}]"#,
        ),
    ];
    explains
        .iter()
        .filter_map(|(name, text)| {
            let json: serde_json::Value = serde_json::from_str(text).ok()?;
            let mut facts = plan_facts(&json, MemorySettings::default()).ok()?;
            facts.describe_relations(
                facts
                    .scanned_relations()
                    .into_iter()
                    .map(|(s, n)| {
                        let info = RelationInfo {
                            rows_estimate: 1e8,
                            kind: "r".into(),
                            indexed_columns: vec!["id".into()],
                        };
                        (format!("{s}.{n}"), info)
                    })
                    .collect(),
            );
            Some((*name, facts))
        })
        .collect()
}
