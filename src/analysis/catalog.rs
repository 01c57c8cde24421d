//! PostgreSQL's built-in relations, functions and operators, generated from a real server's
//! `pg_class`, `pg_proc` and `pg_operator` by `scripts/gen-catalog` (never typed by hand).
//! Names new in servers newer than the generating one are simply not built-in here: the
//! default policy then denies them unless allowed (fail closed).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use super::facts::Volatility;

const FUNCTIONS: &str = include_str!("../../data/catalog/functions.tsv");
const RELATIONS: &str = include_str!("../../data/catalog/relations.tsv");
const OPERATORS: &str = include_str!("../../data/catalog/operators.tsv");

/// The schemas whose objects ship with PostgreSQL.
pub const SYSTEM_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

pub fn is_system_schema(schema: &str) -> bool {
    SYSTEM_SCHEMAS.contains(&schema)
}

#[derive(Debug, Clone, Copy)]
pub struct BuiltinFunction {
    /// The most volatile of the name's overloads.
    pub volatility: Volatility,
}

pub struct Catalog {
    functions: HashMap<(&'static str, &'static str), BuiltinFunction>,
    relations: HashSet<(&'static str, &'static str)>,
    operators: HashSet<&'static str>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(Catalog::load);

pub fn catalog() -> &'static Catalog {
    &CATALOG
}

fn rows(text: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('\t').collect())
}

fn rank(v: Volatility) -> u8 {
    match v {
        Volatility::Immutable => 0,
        Volatility::Stable => 1,
        Volatility::Volatile => 2,
        Volatility::Unknown => 3,
    }
}

impl Catalog {
    fn load() -> Catalog {
        let mut functions: HashMap<(&str, &str), BuiltinFunction> = HashMap::new();
        for row in rows(FUNCTIONS) {
            let [schema, name, vol, ..] = row[..] else {
                continue;
            };
            let volatility = match vol {
                "i" => Volatility::Immutable,
                "s" => Volatility::Stable,
                _ => Volatility::Volatile,
            };
            let entry = functions
                .entry((schema, name))
                .or_insert(BuiltinFunction { volatility });
            if rank(volatility) > rank(entry.volatility) {
                entry.volatility = volatility;
            }
        }
        let relations = rows(RELATIONS)
            .filter_map(|r| match r[..] {
                [schema, name, ..] => Some((schema, name)),
                _ => None,
            })
            .collect();
        let operators = rows(OPERATORS).filter_map(|r| r.get(1).copied()).collect();
        Catalog {
            functions,
            relations,
            operators,
        }
    }

    pub fn function(&self, schema: &str, name: &str) -> Option<BuiltinFunction> {
        self.functions.get(&(schema, name)).copied()
    }

    pub fn has_relation(&self, schema: &str, name: &str) -> bool {
        self.relations.contains(&(schema, name))
    }

    pub fn has_operator(&self, name: &str) -> bool {
        self.operators.contains(name)
    }

    pub fn function_count(&self) -> usize {
        self.functions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_built_ins() {
        let c = catalog();
        assert!(c.function_count() > 2000);
        assert_eq!(
            c.function("pg_catalog", "pg_sleep").map(|f| f.volatility),
            Some(Volatility::Volatile)
        );
        assert_eq!(
            c.function("pg_catalog", "lower").map(|f| f.volatility),
            Some(Volatility::Immutable)
        );
        assert!(c.has_relation("pg_catalog", "pg_authid"));
        assert!(c.has_relation("information_schema", "tables"));
        assert!(c.has_operator("||"));
        assert!(!c.has_relation("public", "users"));
    }
}
