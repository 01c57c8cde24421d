//! A policy bundle on disk: the `.rego` files and JSON data files of one or more directories,
//! plus data files merged over them (like `opa eval -d`).

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{PolicyError, DECISION_RULE};

/// The default limit on one policy evaluation: a policy that runs longer denies.
pub const DEFAULT_EVAL_TIME_LIMIT: Duration = Duration::from_millis(500);

/// The files of a bundle, read once.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Policy modules: `(path, text)`, tests excluded.
    pub modules: Vec<(PathBuf, String)>,
    /// Test modules (`*_test.rego`), loaded only by `policy test`.
    pub tests: Vec<(PathBuf, String)>,
    /// The merged data document.
    pub data: serde_json::Value,
    /// SHA-256 over every file's path and content, hex.
    pub digest: String,
    /// Limit on one evaluation.
    pub eval_time_limit: Duration,
    /// Which evaluator decides calls.
    pub evaluator: super::Evaluator,
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Merges `over` into `base`: objects merge key by key, anything else is replaced.
pub fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn parse_data(path: &Path, text: &str) -> Result<serde_json::Value, PolicyError> {
    serde_json::from_str(text).map_err(|e| PolicyError::Data {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The default bundle (`policies/`), built into the binary so that `sqlguard serve` works
/// from any directory.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "policies/decision.rego",
        include_str!("../../policies/decision.rego"),
    ),
    (
        "policies/statements.rego",
        include_str!("../../policies/statements.rego"),
    ),
    (
        "policies/tables.rego",
        include_str!("../../policies/tables.rego"),
    ),
    (
        "policies/side_channels.rego",
        include_str!("../../policies/side_channels.rego"),
    ),
    (
        "policies/functions.rego",
        include_str!("../../policies/functions.rego"),
    ),
    (
        "policies/settings.rego",
        include_str!("../../policies/settings.rego"),
    ),
    (
        "policies/tools.rego",
        include_str!("../../policies/tools.rego"),
    ),
    (
        "policies/limits.rego",
        include_str!("../../policies/limits.rego"),
    ),
    (
        "policies/plan.rego",
        include_str!("../../policies/plan.rego"),
    ),
];
const EMBEDDED_DATA: &str = include_str!("../../policies/data.json");

impl Bundle {
    /// Whether every module that mentions plans is one sqlguard ships, unchanged: then the
    /// plan rules are exactly `plan_deny`, and the decision with `input.plan` is the static
    /// decision plus `data.sqlguard.plan_decision`.
    pub fn plan_rules_are_shipped(&self) -> bool {
        self.modules
            .iter()
            .filter(|(_, text)| text.contains("plan"))
            .all(|(_, text)| EMBEDDED.iter().any(|(_, shipped)| shipped == text))
    }

    /// The first built-in the bundle's modules call whose result is not a function of the
    /// input and data (the clock, random numbers, UUIDs, the runtime, the network), if any:
    /// such a bundle's decisions must not be cached. Found in the text, so a mention in a
    /// comment counts too (the safe side).
    pub fn nondeterministic_builtin(&self) -> Option<&'static str> {
        const BUILTINS: [&str; 6] = [
            "time.now_ns",
            "rand.",
            "uuid.",
            "opa.runtime",
            "http.send",
            "net.lookup_ip_addr",
        ];
        self.modules.iter().find_map(|(_, text)| {
            BUILTINS.into_iter().find(|b| {
                text.match_indices(b).any(|(at, _)| {
                    // `operand.x` does not call `rand.`.
                    !text[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                })
            })
        })
    }

    /// The default bundle built into the binary, with `data_files` merged over its data.
    pub fn embedded(data_files: &[PathBuf]) -> Result<Bundle, PolicyError> {
        let mut hasher = Sha256::new();
        let mut modules = Vec::new();
        for (path, text) in EMBEDDED {
            hasher.update(path.as_bytes());
            hasher.update(text.as_bytes());
            modules.push((PathBuf::from(path), text.to_string()));
        }
        hasher.update(b"policies/data.json");
        hasher.update(EMBEDDED_DATA.as_bytes());
        let mut data = parse_data(Path::new("policies/data.json"), EMBEDDED_DATA)?;
        for path in data_files {
            let text = read(path)?;
            hasher.update(path.to_string_lossy().as_bytes());
            hasher.update(text.as_bytes());
            merge(&mut data, parse_data(path, &text)?);
        }
        Ok(Bundle {
            modules,
            tests: Vec::new(),
            data,
            digest: hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            eval_time_limit: DEFAULT_EVAL_TIME_LIMIT,
            evaluator: super::Evaluator::default(),
        })
    }

    /// The bundle in `dirs`, or the built-in default bundle when `dirs` is empty.
    pub fn load_or_embedded(
        dirs: &[PathBuf],
        data_files: &[PathBuf],
    ) -> Result<Bundle, PolicyError> {
        if dirs.is_empty() {
            Self::embedded(data_files)
        } else {
            Self::load(dirs, data_files)
        }
    }

    /// Reads every `.rego` and `.json` file directly inside each of `dirs` (sub-directories
    /// such as `examples/` are separate bundles), then merges `data_files` over the data.
    pub fn load(dirs: &[PathBuf], data_files: &[PathBuf]) -> Result<Bundle, PolicyError> {
        let mut hasher = Sha256::new();
        let mut modules = Vec::new();
        let mut tests = Vec::new();
        let mut data = serde_json::Value::Object(Default::default());
        for dir in dirs {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|source| PolicyError::ReadDir {
                    path: dir.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            let before = modules.len() + tests.len();
            for path in entries {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.ends_with(".rego") {
                    let text = read(&path)?;
                    hasher.update(path.to_string_lossy().as_bytes());
                    hasher.update(text.as_bytes());
                    if name.ends_with("_test.rego") {
                        tests.push((path, text));
                    } else {
                        modules.push((path, text));
                    }
                } else if name.ends_with(".json") {
                    let text = read(&path)?;
                    hasher.update(path.to_string_lossy().as_bytes());
                    hasher.update(text.as_bytes());
                    merge(&mut data, parse_data(&path, &text)?);
                }
            }
            if modules.len() + tests.len() == before {
                return Err(PolicyError::Empty(dir.clone()));
            }
        }
        for path in data_files {
            let text = read(path)?;
            hasher.update(path.to_string_lossy().as_bytes());
            hasher.update(text.as_bytes());
            merge(&mut data, parse_data(path, &text)?);
        }
        let digest = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Bundle {
            modules,
            tests,
            data,
            digest,
            eval_time_limit: DEFAULT_EVAL_TIME_LIMIT,
            evaluator: super::Evaluator::default(),
        })
    }

    /// The merged data document as a regorus value.
    pub fn data_value(&self) -> Result<regorus::Value, String> {
        regorus::Value::from_json_str(&self.data.to_string()).map_err(|e| format!("data: {e}"))
    }

    /// A prepared engine holding the bundle (and its tests when `with_tests`).
    pub fn engine(&self, with_tests: bool) -> Result<regorus::Engine, PolicyError> {
        let mut engine = regorus::Engine::new();
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: self.eval_time_limit,
            check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
        });
        // regorus 0.14.1 evaluates `with input as …` (every policy test) as undefined when
        // another module of the decision's package was added before the one that defines the
        // decision: add that one first, so that a user's `access.rego` does not break the tests.
        let defines_decision = |text: &String| text.lines().any(|l| l.starts_with("decision :="));
        let files = self
            .modules
            .iter()
            .filter(|(_, text)| defines_decision(text))
            .chain(
                self.modules
                    .iter()
                    .filter(|(_, text)| !defines_decision(text)),
            )
            .chain(self.tests.iter().filter(|_| with_tests));
        for (path, text) in files {
            engine
                .add_policy(path.display().to_string(), text.clone())
                .map_err(|e| PolicyError::Rego(e.to_string()))?;
        }
        let data = self.data_value().map_err(PolicyError::Rego)?;
        engine
            .add_data(data)
            .map_err(|e| PolicyError::Rego(format!("data: {e}")))?;
        // Prepare now (so every clone starts prepared) and prove the decision rule exists.
        engine.set_input(regorus::Value::new_object());
        match engine.eval_rule(DECISION_RULE.to_string()) {
            Ok(_) => Ok(engine),
            Err(e) => {
                let msg = e.to_string();
                if msg.contains("not a valid rule path")
                    || msg.contains("not found")
                    || msg.contains("no rule")
                {
                    Err(PolicyError::MissingDecision(msg))
                } else {
                    Err(PolicyError::Rego(msg))
                }
            }
        }
    }
}
