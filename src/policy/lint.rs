//! Entries of the policy data that name nothing in a served database's catalog: a
//! `columns.deny` entry `public.customers.emial` protects nothing while the real `email` column
//! is readable, so each is warned (at the first catalog read after start and after every
//! reload, and by `doctor`) with the nearest real name.

use crate::analysis::snapshot::Snapshot;

use super::schema::{nearest, CatalogName, Schema};

/// Schemas whose objects a snapshot need not list: entries there are not judged.
const SYSTEM_SCHEMAS: [&str; 3] = ["pg_catalog", "information_schema", "pg_toast"];

/// `*` matches any characters, dots included (as `name_matches` in decision.rego).
fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// An entry of the data that names nothing in one database's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    /// The list (`data.sqlguard.columns.deny`).
    pub list: String,
    pub entry: String,
    /// `relation`, `column` or `function`.
    pub noun: &'static str,
    /// The database's name (`current_database()` when the snapshot was read).
    pub database: String,
    /// The real name nearest to the entry, when one is near.
    pub nearest: Option<String>,
}

impl std::fmt::Display for Unmatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entry {:?} matches no {} of database {}",
            self.list, self.entry, self.noun, self.database
        )?;
        if let Some(n) = &self.nearest {
            write!(f, " (did you mean {n}?)")?;
        }
        write!(f, ": it protects or allows nothing there; fix the name")
    }
}

/// Every entry of `data` (a whole data document) that matches nothing in `snapshot`.
pub fn unmatched(data: &serde_json::Value, snapshot: &Snapshot) -> Vec<Unmatched> {
    // Most policies name no object of their own (`tables.allow: ["*"]`): nothing to compare.
    let judged = |e: &serde_json::Value| {
        e.as_str()
            .and_then(|e| e.split_once('.'))
            .is_some_and(|(schema, _)| !schema.contains('*') && !SYSTEM_SCHEMAS.contains(&schema))
    };
    // A list's entries, or an object's keys (`columns.mask`).
    let entries_at = |path: &[&str]| -> Option<Vec<serde_json::Value>> {
        let v = path.iter().try_fold(data, |v, k| v.get(k))?;
        match v {
            serde_json::Value::Array(a) => Some(a.clone()),
            serde_json::Value::Object(o) => Some(o.keys().cloned().map(Into::into).collect()),
            _ => None,
        }
    };
    let any = Schema::catalog_lists()
        .iter()
        .any(|(path, _)| entries_at(path).is_some_and(|entries| entries.iter().any(judged)));
    if !any {
        return Vec::new();
    }
    let relations: Vec<String> = snapshot
        .relations
        .iter()
        .filter(|r| r.kind != "index")
        .map(|r| format!("{}.{}", r.schema, r.name))
        .collect();
    let columns: Vec<String> = snapshot
        .relations
        .iter()
        .filter(|r| r.kind != "index")
        .flat_map(|r| {
            r.columns
                .iter()
                .flatten()
                .map(move |(c, _)| format!("{}.{}.{c}", r.schema, r.name))
        })
        .collect();
    let functions: Vec<String> = snapshot
        .functions
        .iter()
        .map(|f| format!("{}.{}", f.schema, f.name))
        .collect();
    let has_columns = snapshot.relations.iter().any(|r| r.columns.is_some());
    let mut warnings = Vec::new();
    for (path, what) in Schema::catalog_lists() {
        let Some(entries) = entries_at(path) else {
            continue;
        };
        let (names, noun) = match what {
            CatalogName::Relation => (&relations, "relation"),
            CatalogName::Column if has_columns => (&columns, "column"),
            CatalogName::Column => continue,
            CatalogName::Function => (&functions, "function"),
        };
        for entry in entries.iter().filter_map(|e| e.as_str()) {
            let Some((schema, _)) = entry.split_once('.') else {
                // An unqualified function name may be any schema's (built-ins among them).
                continue;
            };
            if entry == "*" || schema.contains('*') || SYSTEM_SCHEMAS.contains(&schema) {
                continue;
            }
            if names.iter().any(|n| glob(entry, n)) {
                continue;
            }
            warnings.push(Unmatched {
                list: format!("data.{}", path.join(".")),
                entry: entry.to_string(),
                noun,
                database: snapshot.server.database.clone(),
                nearest: nearest(entry, names.iter().map(String::as_str)).map(str::to_string),
            });
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_as_the_policy_does() {
        assert!(glob("public.*", "public.users"));
        assert!(glob("*.secret", "hr.secret"));
        assert!(glob("public.users", "public.users"));
        assert!(!glob("public.users", "public.users2"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(!glob("ab*ba", "aba"));
    }
}
