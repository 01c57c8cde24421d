//! `sqlguard policy test`: runs every `test_*` rule of a bundle, like `opa test`.

use std::path::PathBuf;

use super::{Bundle, PolicyError};

/// The outcome of one test rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestResult {
    pub package: String,
    pub name: String,
    /// The test file (or the cases file).
    pub file: String,
    pub passed: bool,
    /// Why it failed (undefined, false, or an evaluation error).
    pub detail: String,
}

/// Lines of a policy file no test evaluated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Uncovered {
    pub path: String,
    pub lines: Vec<u32>,
}

/// Runs every `test_*` rule of `bundle` whose full name (`data.package.test_name`) `filter`
/// matches: the base's tests against the base's own modules and data (so that a team's layer
/// cannot make the built-in tests fail), the layers' tests against every module and the
/// merged data.
pub fn run(
    bundle: &Bundle,
    coverage: bool,
    filter: Option<&regex::Regex>,
) -> Result<(Vec<TestResult>, Vec<Uncovered>), PolicyError> {
    let mut results = Vec::new();
    let mut uncovered = Vec::new();
    let base_paths: Vec<String> = bundle.modules[..bundle.base_modules]
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    let parts: [(&[(PathBuf, String)], bool); 2] = [
        (&bundle.tests[..bundle.base_tests], true),
        (&bundle.tests[bundle.base_tests..], false),
    ];
    for (tests, base) in parts {
        // A part without tests still gets an engine when coverage is asked for, so that every
        // module is in the report.
        if tests.is_empty() && !(coverage && (base || bundle.modules.len() > bundle.base_modules)) {
            continue;
        }
        let mut engine = if base {
            bundle.base_test_engine()?
        } else {
            bundle.layer_test_engine()?
        };
        if coverage {
            engine.set_enable_coverage(true);
        }
        for (path, text) in tests {
            let package = package_of(text).ok_or_else(|| {
                PolicyError::Rego(format!("{}: no package declaration", path.display()))
            })?;
            for name in test_rules(text) {
                let rule = format!("data.{package}.{name}");
                if filter.is_some_and(|f| !f.is_match(&rule)) {
                    continue;
                }
                let (passed, detail) = match engine.eval_rule(rule) {
                    Ok(regorus::Value::Bool(true)) => (true, String::new()),
                    Ok(regorus::Value::Undefined) => {
                        (false, "undefined (a condition did not hold)".into())
                    }
                    Ok(v) => (false, format!("evaluated to {v}")),
                    Err(e) => (false, format!("error: {e}")),
                };
                results.push(TestResult {
                    package: package.clone(),
                    name,
                    file: path.display().to_string(),
                    passed,
                    detail,
                });
            }
        }
        if coverage {
            let report = engine
                .get_coverage_report()
                .map_err(|e| PolicyError::Rego(e.to_string()))?;
            for file in report.files {
                // Base modules are reported from the base's engine, layers' from theirs.
                if file.path.ends_with("_test.rego") || base_paths.contains(&file.path) != base {
                    continue;
                }
                let lines: Vec<u32> = file.not_covered.iter().copied().collect();
                uncovered.push(Uncovered {
                    path: file.path,
                    lines,
                });
            }
        }
    }
    Ok((results, uncovered))
}

fn package_of(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("package "))
        .map(|p| p.trim().to_string())
}

/// Names of the `test_*` rules defined at the start of a line.
fn test_rules(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("test_") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let full = format!("test_{name}");
            if !names.contains(&full) {
                names.push(full);
            }
        }
    }
    names
}

/// The package name results of SQL fixtures are reported under.
pub const CASES: &str = "cases";

/// One SQL fixture of `policy test --cases FILE` (a JSON line): the SQL, the catalog snapshot
/// to resolve its names against (a path relative to the cases file; none: PostgreSQL 15's
/// built-ins), who calls on which database, and what the decision must be.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// A name for the report (default: the line number).
    #[serde(default)]
    name: Option<String>,
    sql: String,
    #[serde(default)]
    catalog: Option<PathBuf>,
    #[serde(default)]
    search_path: Option<Vec<String>>,
    #[serde(default)]
    database: Option<super::DatabaseContext>,
    #[serde(default)]
    identity: Option<super::Identity>,
    #[serde(default)]
    tool: Option<String>,
    allow: bool,
    /// Rules that must be among the reasons of a denial.
    #[serde(default)]
    rules: Vec<String>,
}

/// Runs the SQL fixtures of `cases` (JSON lines) against `bundle`: each is analyzed (against
/// its catalog snapshot, if it names one) and decided as the server would.
pub fn run_cases(bundle: &Bundle, cases: &std::path::Path) -> Result<Vec<TestResult>, String> {
    use std::collections::HashMap;
    use std::sync::Arc;

    use crate::analysis::snapshot::Snapshot;
    use crate::analysis::AnalysisOptions;

    let text = std::fs::read_to_string(cases)
        .map_err(|e| format!("cannot read {}: {e}", cases.display()))?;
    let policy = super::Policy::with_cache(bundle.clone(), 0).map_err(|e| e.to_string())?;
    let base = cases.parent().unwrap_or(std::path::Path::new("."));
    let mut snapshots: HashMap<PathBuf, Arc<Snapshot>> = HashMap::new();
    let mut results = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with("//") {
            continue;
        }
        let at = format!("{}:{}", cases.display(), n + 1);
        let case: Case =
            serde_json::from_str(line).map_err(|e| format!("{at}: not a case: {e}"))?;
        let snapshot = match &case.catalog {
            None => None,
            Some(p) => {
                let path = base.join(p);
                if let Some(s) = snapshots.get(&path) {
                    Some(s.clone())
                } else {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("{at}: cannot read {}: {e}", path.display()))?;
                    let s = Arc::new(
                        Snapshot::from_json(&text)
                            .map_err(|e| format!("{at}: {}: {e}", path.display()))?,
                    );
                    snapshots.insert(path, s.clone());
                    Some(s)
                }
            }
        };
        let opts = match case.search_path {
            Some(p) => AnalysisOptions::new(p),
            None => AnalysisOptions::default(),
        }
        .with_snapshot(snapshot);
        let identity = case.identity.unwrap_or_default();
        let tool = case.tool.as_deref().unwrap_or("teleport_postgres_query");
        let d = policy
            .check(&case.sql, &opts, case.database.as_ref(), &identity, tool)
            .decision;
        let got: Vec<&str> = d.reasons.iter().map(|r| r.rule.as_str()).collect();
        let missing: Vec<&String> = case
            .rules
            .iter()
            .filter(|r| !got.contains(&r.as_str()))
            .collect();
        let passed = d.allow == case.allow && missing.is_empty();
        results.push(TestResult {
            package: CASES.into(),
            name: case.name.unwrap_or(at),
            file: cases.display().to_string(),
            passed,
            detail: if passed {
                String::new()
            } else {
                format!(
                    "{:?}: expected {}{}, got {} {}",
                    case.sql,
                    if case.allow { "allowed" } else { "denied" },
                    if missing.is_empty() {
                        String::new()
                    } else {
                        format!(" by {missing:?}")
                    },
                    if d.allow { "allowed" } else { "denied" },
                    d.message()
                )
            },
        });
    }
    Ok(results)
}
