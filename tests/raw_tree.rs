//! The analysis reads libpg_query's raw parse tree (src/analysis/raw_tree.c)
//! instead of its JSON text. The JSON path is the reference: the same tree, the same facts
//! and the same errors on every statement of the corpora, whole corpus files, deep nesting,
//! texts that are not UTF-8 after unescaping, and arbitrary bytes.

use proptest::prelude::*;
use sqlguard::analysis::{analyze_json_with, analyze_with, raw, AnalysisError, AnalysisOptions};

use crate::support::{corpus_dir, corpus_statements};

/// Both paths on `sql`: the same tree (or both errors), the same facts or error.
fn same(sql: &str, opts: &AnalysisOptions) -> Result<bool, String> {
    raw::compare(sql)?;
    match (analyze_with(sql, opts), analyze_json_with(sql, opts)) {
        (Ok(a), Ok(b)) if a == b => Ok(true),
        (Ok(_), Ok(_)) => Err(format!("the facts differ: {sql:?}")),
        (Err(a), Err(b)) if a == b => Ok(false),
        (a, b) => Err(format!("raw {a:?}, JSON {b:?}: {sql:?}")),
    }
}

#[test]
fn the_raw_tree_is_read_as_the_json_on_every_corpus_statement() {
    assert!(raw::trusted(), "the raw path disagrees on its own sample");
    let statements = corpus_statements();
    if statements.is_empty() {
        eprintln!("!!!!! ../shared/corpus is absent: the raw-tree differential is SKIPPED !!!!!");
        return;
    }
    let opts = AnalysisOptions::default();
    let (mut analyzed, mut refused, mut differences) = (0usize, 0usize, Vec::new());
    for sql in &statements {
        match same(sql, &opts) {
            Ok(true) => analyzed += 1,
            Ok(false) => refused += 1,
            Err(e) => differences.push(e),
        }
    }
    // Whole files: many statements in one tree, with their locations.
    let dir = corpus_dir().unwrap();
    let mut files = 0;
    for sub in ["tpch", "pg_regress"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let text = String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap())
                .into_owned();
            let mut big = opts.clone();
            big.max_sql_bytes = usize::MAX;
            if let Err(e) = same(&text, &big) {
                differences.push(e);
            }
            files += 1;
        }
    }
    eprintln!(
        "raw tree vs JSON: {} statements ({analyzed} analyzed, {refused} refused) and {files} \
         whole files, {} differences",
        statements.len(),
        differences.len()
    );
    assert!(analyzed > 30_000, "only {analyzed} statements analyzed");
    assert!(
        differences.is_empty(),
        "{} differences:\n{}",
        differences.len(),
        differences[..differences.len().min(10)].join("\n")
    );
}

#[test]
fn deep_nesting_ends_the_same_way_on_both_paths() {
    let opts = AnalysisOptions::default();
    for n in [50, 400, 2_000, 20_000] {
        let concat = format!("SELECT {}", vec!["a"; n].join(" || "));
        let parens = format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
        let subqueries = format!(
            "SELECT {}1{}",
            "(SELECT ".repeat(n.min(5_000)),
            ")".repeat(n.min(5_000))
        );
        let unions = format!("SELECT 1{}", " UNION SELECT 1".repeat(n));
        for sql in [concat, parens, subqueries, unions] {
            same(&sql, &opts).unwrap_or_else(|e| panic!("{}", &e[..e.len().min(300)]));
        }
    }
}

#[test]
fn text_that_is_not_utf8_after_unescaping_is_refused_on_both_paths() {
    let opts = AnalysisOptions::default();
    for sql in [
        r"SELECT E'\377'",
        r"SELECT E'a\xffb'",
        r#"SELECT U&"\d800""#,
    ] {
        let raw = analyze_with(sql, &opts);
        let json = analyze_json_with(sql, &opts);
        assert_eq!(raw, json, "{sql}");
        if let Err(e) = &raw {
            assert!(!matches!(e, AnalysisError::Internal(_)), "{sql}: {e}");
        }
    }
    // PostgreSQL's scanner refuses them itself, naming the byte (the analysis' NotUtf8 is
    // the fallback should a tree ever hold such text).
    let err = analyze_with(r"SELECT E'\377'", &opts).unwrap_err();
    assert!(
        matches!(&err, AnalysisError::Syntax { message, .. } if message.contains("0xff")),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_reads_the_same_on_both_paths(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        prop_assert!(same(&text, &AnalysisOptions::default()).is_ok());
    }

    #[test]
    fn sql_shaped_text_reads_the_same_on_both_paths(
        words in proptest::collection::vec(
            prop::sample::select(vec![
                "SELECT", "*", "FROM", "t", "WHERE", "a", "=", "1", "(", ")", ",", "'x'", "E'\\n'",
                "JOIN", "u", "ON", "AND", "OR", "NOT", "NULL", "::int", "[1]", "ARRAY[", "]", "$1",
                "UNION", "WITH", "AS", "count(*)", "OVER", "ORDER BY", "LIMIT", "INSERT INTO", "VALUES",
                ";", "-1.5e3", "B'1'", "true", "CASE", "WHEN", "THEN", "END", "IS", "DISTINCT",
            ]),
            0..40,
        )
    ) {
        let sql = words.join(" ");
        prop_assert!(same(&sql, &AnalysisOptions::default()).is_ok(), "{}", sql);
    }
}
