//! A policy bundle: a base (built in, or a directory) and layers of `.rego` and JSON data files
//! on top of it, their data checked against the schema and merged as OPA merges data files.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::schema::{Merge, Schema, EMBEDDED_SCHEMA};
use super::{PolicyError, DECISION_RULE};

/// The default limit on one policy evaluation: a policy that runs longer denies.
pub const DEFAULT_EVAL_TIME_LIMIT: Duration = Duration::from_millis(500);

/// The files of a bundle, read once: a base (the built-in bundle, or a directory that defines
/// `data.sqlguard.decision`, such as a fork written by `sqlguard policy export`) and the layers
/// added on top of it (directories of `.rego` and `.json` files, or data files alone).
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Policy modules: `(path, text)`, tests excluded; the base's first.
    pub modules: Vec<(PathBuf, String)>,
    /// How many of `modules` are the base's.
    pub base_modules: usize,
    /// Test modules (`*_test.rego`), loaded only by `policy test`; the base's first.
    pub tests: Vec<(PathBuf, String)>,
    /// How many of `tests` are the base's.
    pub base_tests: usize,
    /// The base's own data: its tests run against it, whatever the layers set.
    pub base_data: serde_json::Value,
    /// The merged data document: the layers' data (merged as OPA merges data files) over the
    /// base's.
    pub data: serde_json::Value,
    /// What the bundle was built from, base first (`built-in`, directories, data files).
    pub sources: Vec<String>,
    /// The revisions of the directories' OPA-style `.manifest` files (`{"revision": …}`),
    /// base first, joined by `+`; the built-in base's is `sqlguard-VERSION`.
    pub revision: Option<String>,
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

/// Merges the data file `over` (read from `file`) into `base` as OPA merges data files:
/// objects are merged key by key; a path both set to anything but two objects is a conflict,
/// unless both set the same value. `origins` remembers which file set each path.
pub fn merge_strict(
    base: &mut serde_json::Value,
    over: serde_json::Value,
    file: &str,
    origins: &mut Vec<(String, String)>,
) -> Result<(), PolicyError> {
    fn walk(
        base: &mut serde_json::Value,
        over: serde_json::Value,
        path: &mut String,
        file: &str,
        origins: &mut Vec<(String, String)>,
    ) -> Result<(), PolicyError> {
        let serde_json::Value::Object(b) = base else {
            return conflict(base, &over, path, file, origins);
        };
        let serde_json::Value::Object(o) = over else {
            return conflict(
                &serde_json::Value::Object(b.clone()),
                &over,
                path,
                file,
                origins,
            );
        };
        for (k, v) in o {
            let len = path.len();
            path.push('.');
            path.push_str(&k);
            match b.get_mut(&k) {
                Some(slot) => walk(slot, v, path, file, origins)?,
                None => {
                    origins.push((path.clone(), file.to_string()));
                    b.insert(k, v);
                }
            }
            path.truncate(len);
        }
        Ok(())
    }
    fn conflict(
        base: &serde_json::Value,
        over: &serde_json::Value,
        path: &str,
        file: &str,
        origins: &[(String, String)],
    ) -> Result<(), PolicyError> {
        if base == over {
            return Ok(());
        }
        let first = origins
            .iter()
            .rev()
            .find(|(p, _)| path == p || path.starts_with(&format!("{p}.")))
            .map(|(_, f)| f.clone())
            .unwrap_or_default();
        Err(PolicyError::Conflict {
            path: path.to_string(),
            first,
            second: file.to_string(),
        })
    }
    let mut path = String::from("data");
    walk(base, over, &mut path, file, origins)
}

/// Puts the layers' merged data over the base's: objects merge key by key, lists the schema
/// marks `x-merge: union` gain the layers' entries, and every other value is replaced.
pub fn merge_over_defaults(base: &mut serde_json::Value, over: serde_json::Value, schema: &Schema) {
    fn walk(
        base: &mut serde_json::Value,
        over: serde_json::Value,
        path: &mut Vec<String>,
        schema: &Schema,
    ) {
        match (base, over) {
            (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
                for (k, v) in o {
                    match b.get_mut(&k) {
                        Some(slot) => {
                            path.push(k);
                            walk(slot, v, path, schema);
                            path.pop();
                        }
                        None => {
                            b.insert(k, v);
                        }
                    }
                }
            }
            (serde_json::Value::Array(b), serde_json::Value::Array(o))
                if schema.merge_mode(&path.iter().map(String::as_str).collect::<Vec<_>>())
                    == Merge::Union =>
            {
                for v in o {
                    if !b.contains(&v) {
                        b.push(v);
                    }
                }
            }
            (slot, v) => *slot = v,
        }
    }
    walk(base, over, &mut Vec::new(), schema)
}

fn parse_data(path: &Path, text: &str, schema: &Schema) -> Result<serde_json::Value, PolicyError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| PolicyError::Data {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    schema
        .validate(&value)
        .map_err(|message| PolicyError::Data {
            path: path.to_path_buf(),
            message,
        })?;
    Ok(value)
}

/// The default bundle (`policies/`), built into the binary so that `sqlguard serve` works
/// from any directory, and written out by `sqlguard policy export`.
pub const EMBEDDED: &[(&str, &str)] = &[
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
        "policies/masks.rego",
        include_str!("../../policies/masks.rego"),
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
/// The default bundle's tests, run by `policy test` against the default data.
pub const EMBEDDED_TESTS: &[(&str, &str)] = &[
    (
        "policies/policy_test.rego",
        include_str!("../../policies/policy_test.rego"),
    ),
    (
        "policies/plan_test.rego",
        include_str!("../../policies/plan_test.rego"),
    ),
];
pub const EMBEDDED_DATA: &str = include_str!("../../policies/data.json");
/// Where a bundle keeps its data schema; `*.schema.json` files are not data.
pub const SCHEMA_FILE: &str = "data.schema.json";

/// The files of one directory, sorted.
struct DirFiles {
    modules: Vec<(PathBuf, String)>,
    tests: Vec<(PathBuf, String)>,
    data: Vec<(PathBuf, String)>,
    schema: Option<String>,
    /// `.manifest`'s `revision`.
    revision: Option<String>,
}

fn read_dir(dir: &Path) -> Result<DirFiles, PolicyError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| PolicyError::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let mut files = DirFiles {
        modules: Vec::new(),
        tests: Vec::new(),
        data: Vec::new(),
        schema: None,
        revision: None,
    };
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with("_test.rego") {
            let text = read(&path)?;
            files.tests.push((path, text));
        } else if name.ends_with(".rego") {
            let text = read(&path)?;
            files.modules.push((path, text));
        } else if name == SCHEMA_FILE {
            files.schema = Some(read(&path)?);
        } else if name == ".manifest" {
            let text = read(&path)?;
            let manifest: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| PolicyError::Data {
                    path: path.clone(),
                    message: format!("not JSON: {e}"),
                })?;
            files.revision = manifest
                .get("revision")
                .and_then(|r| r.as_str())
                .map(str::to_string);
        } else if name.ends_with(".json") && !name.ends_with(".schema.json") {
            let text = read(&path)?;
            files.data.push((path, text));
        }
    }
    if files.modules.is_empty() && files.tests.is_empty() && files.data.is_empty() {
        return Err(PolicyError::Empty(dir.to_path_buf()));
    }
    Ok(files)
}

/// Whether a directory's modules define the decision: it is a whole bundle (a base), not a
/// layer.
fn defines_decision(files: &DirFiles) -> bool {
    files
        .modules
        .iter()
        .any(|(_, text)| text.lines().any(|l| l.starts_with("decision :=")))
}

/// Takes the base out of `layers`: the one directory that defines the decision, or the
/// built-in bundle when none does. Two bases are refused.
fn take_base(layers: &mut Vec<(&PathBuf, DirFiles)>) -> Result<(String, DirFiles), PolicyError> {
    let mut bases = layers
        .iter()
        .enumerate()
        .filter(|(_, (_, f))| defines_decision(f))
        .map(|(i, (d, _))| (i, (*d).clone()));
    let first = bases.next();
    if let (Some((_, first)), Some((_, second))) = (&first, bases.next()) {
        return Err(PolicyError::TwoBases {
            first: first.clone(),
            second,
        });
    }
    Ok(match first {
        Some((i, dir)) => (dir.display().to_string(), layers.remove(i).1),
        None => (
            "built-in".into(),
            DirFiles {
                modules: EMBEDDED
                    .iter()
                    .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                    .collect(),
                tests: EMBEDDED_TESTS
                    .iter()
                    .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                    .collect(),
                data: vec![(PathBuf::from("policies/data.json"), EMBEDDED_DATA.into())],
                schema: None,
                revision: Some(concat!("sqlguard-", env!("CARGO_PKG_VERSION")).into()),
            },
        ),
    })
}

/// Data files checked against `schema` and merged as OPA merges them (hashed on the way).
fn merge_files(
    files: &[(PathBuf, String)],
    schema: &Schema,
    hash: &mut impl FnMut(&Path, &str),
) -> Result<serde_json::Value, PolicyError> {
    let mut merged = serde_json::Value::Object(Default::default());
    let mut origins = Vec::new();
    for (path, text) in files {
        hash(path, text);
        let value = parse_data(path, text, schema)?;
        merge_strict(
            &mut merged,
            value,
            &path.display().to_string(),
            &mut origins,
        )?;
    }
    Ok(merged)
}

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

    /// The built-in bundle with `data_files` as layers over its data.
    pub fn embedded(data_files: &[PathBuf]) -> Result<Bundle, PolicyError> {
        Self::load(&[], data_files)
    }

    /// The bundle of `dirs` and `data_files`. Its base is the one directory whose modules define
    /// `data.sqlguard.decision` (`policies/`, or a fork from `sqlguard policy export`), or the
    /// built-in bundle when none does; every other directory (its `.rego` and `.json` files;
    /// sub-directories such as `examples/` are separate) and every data file is a layer on
    /// top. The layers' data files are checked against the schema and merged with each other as
    /// OPA merges data files (a conflict is an error naming both files), then over the base's
    /// data ([`merge_over_defaults`]).
    pub fn load(dirs: &[PathBuf], data_files: &[PathBuf]) -> Result<Bundle, PolicyError> {
        let mut layers = Vec::with_capacity(dirs.len());
        for dir in dirs {
            layers.push((dir, read_dir(dir)?));
        }
        let (base_source, base) = take_base(&mut layers)?;
        let schema_text = base.schema.unwrap_or_else(|| EMBEDDED_SCHEMA.to_string());
        let schema = Schema::parse(&schema_text).map_err(|message| PolicyError::Data {
            path: PathBuf::from(SCHEMA_FILE),
            message,
        })?;
        let mut hasher = Sha256::new();
        let mut hash = |path: &Path, text: &str| {
            hasher.update(path.to_string_lossy().as_bytes());
            hasher.update(text.as_bytes());
        };
        hash(Path::new(SCHEMA_FILE), &schema_text);
        let mut sources = vec![base_source];
        let mut revisions: Vec<String> = base.revision.into_iter().collect();
        let (mut modules, mut tests) = (base.modules, base.tests);
        let (base_modules, base_tests) = (modules.len(), tests.len());
        // The base's own files are merged strictly too: two of them setting one path is as
        // much a mistake as two layers doing so.
        let base_data = merge_files(&base.data, &schema, &mut hash)?;
        let mut layer_data: Vec<(PathBuf, String)> = Vec::new();
        for (dir, files) in layers {
            sources.push(dir.display().to_string());
            revisions.extend(files.revision);
            modules.extend(files.modules);
            tests.extend(files.tests);
            layer_data.extend(files.data);
        }
        for path in data_files {
            sources.push(path.display().to_string());
            layer_data.push((path.clone(), read(path)?));
        }
        let layered = merge_files(&layer_data, &schema, &mut hash)?;
        for (path, text) in modules.iter().chain(&tests) {
            hash(path, text);
        }
        let mut data = base_data.clone();
        merge_over_defaults(&mut data, layered, &schema);
        let digest = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Bundle {
            modules,
            base_modules,
            tests,
            base_tests,
            base_data,
            data,
            sources,
            revision: (!revisions.is_empty()).then(|| revisions.join("+")),
            digest,
            eval_time_limit: DEFAULT_EVAL_TIME_LIMIT,
            evaluator: super::Evaluator::default(),
        })
    }

    /// The merged data document as a regorus value.
    pub fn data_value(&self) -> Result<regorus::Value, String> {
        regorus::Value::from_json_str(&self.data.to_string()).map_err(|e| format!("data: {e}"))
    }

    /// A prepared engine holding every module and the merged data.
    pub fn engine(&self) -> Result<regorus::Engine, PolicyError> {
        self.engine_of(self.modules.iter(), &self.data)
    }

    /// An engine for the base's own tests: the base's modules and tests over the base's data.
    pub fn base_test_engine(&self) -> Result<regorus::Engine, PolicyError> {
        self.engine_of(
            self.modules[..self.base_modules]
                .iter()
                .chain(&self.tests[..self.base_tests]),
            &self.base_data,
        )
    }

    /// An engine for the layers' tests: every module and every test module (layers' tests
    /// use the base's helpers, such as `data.sqlguard_test.one`) over the merged data.
    pub fn layer_test_engine(&self) -> Result<regorus::Engine, PolicyError> {
        self.engine_of(self.modules.iter().chain(&self.tests), &self.data)
    }

    fn engine_of<'a>(
        &self,
        files: impl Iterator<Item = &'a (PathBuf, String)> + Clone,
        data: &serde_json::Value,
    ) -> Result<regorus::Engine, PolicyError> {
        let mut engine = regorus::Engine::new();
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: self.eval_time_limit,
            check_interval: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
        });
        // regorus 0.14.1 evaluates `with input as …` (every policy test) as undefined when
        // another module of the decision's package was added before the one that defines the
        // decision: add that one first, so that a user's `access.rego` does not break the tests.
        let defines = |text: &String| text.lines().any(|l| l.starts_with("decision :="));
        let ordered = files
            .clone()
            .filter(|(_, text)| defines(text))
            .chain(files.filter(|(_, text)| !defines(text)));
        for (path, text) in ordered {
            engine
                .add_policy(path.display().to_string(), text.clone())
                .map_err(|e| PolicyError::Rego(e.to_string()))?;
        }
        let data = regorus::Value::from_json_str(&data.to_string())
            .map_err(|e| PolicyError::Rego(format!("data: {e}")))?;
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

    /// Writes the built-in bundle (modules, tests, data, schema) into `dir`, refusing to
    /// overwrite a file unless `force`.
    pub fn export(dir: &Path, force: bool) -> Result<Vec<PathBuf>, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let files = EMBEDDED.iter().chain(EMBEDDED_TESTS).copied().chain([
            ("policies/data.json", EMBEDDED_DATA),
            ("policies/data.schema.json", EMBEDDED_SCHEMA),
        ]);
        let mut written = Vec::new();
        for (path, text) in files {
            let name = Path::new(path).file_name().unwrap_or_default();
            let target = dir.join(name);
            if target.exists() && !force {
                return Err(format!(
                    "{} exists: export into an empty directory, or pass --force to overwrite",
                    target.display()
                ));
            }
            std::fs::write(&target, text)
                .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
            written.push(target);
        }
        Ok(written)
    }
}
