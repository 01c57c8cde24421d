//! `sqlguard policy test`: runs every `test_*` rule of a bundle, like `opa test`.

use std::path::PathBuf;

use super::{Bundle, PolicyError};

/// The outcome of one test rule.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub package: String,
    pub name: String,
    pub passed: bool,
    /// Why it failed (undefined, false, or an evaluation error).
    pub detail: String,
}

/// Lines of a policy file no test evaluated.
#[derive(Debug, Clone)]
pub struct Uncovered {
    pub path: String,
    pub lines: Vec<u32>,
}

/// Runs every `test_*` rule of every test module in `bundle`.
pub fn run(
    bundle: &Bundle,
    coverage: bool,
) -> Result<(Vec<TestResult>, Vec<Uncovered>), PolicyError> {
    let mut engine = bundle.engine(true)?;
    if coverage {
        engine.set_enable_coverage(true);
    }
    let mut results = Vec::new();
    for (path, text) in &bundle.tests {
        let package = package_of(text).ok_or_else(|| {
            PolicyError::Rego(format!("{}: no package declaration", path.display()))
        })?;
        for name in test_rules(text) {
            let rule = format!("data.{package}.{name}");
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
                passed,
                detail,
            });
        }
    }
    let mut uncovered = Vec::new();
    if coverage {
        let report = engine
            .get_coverage_report()
            .map_err(|e| PolicyError::Rego(e.to_string()))?;
        for file in report.files {
            if file.path.ends_with("_test.rego") {
                continue;
            }
            let lines: Vec<u32> = file.not_covered.iter().copied().collect();
            uncovered.push(Uncovered {
                path: file.path,
                lines,
            });
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

/// The directories named, or `policies/` when none.
pub fn default_dirs(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    if dirs.is_empty() {
        vec![PathBuf::from("policies")]
    } else {
        dirs
    }
}
