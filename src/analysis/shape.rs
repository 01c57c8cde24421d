//! The shape of a SQL text: its tokens, with the constants the analysis never read left
//! out. Texts of one shape have the same facts but for byte positions, so the decision cache
//! can answer them from the scanner's tokens alone, without parsing.
//!
//! Why the facts are the same:
//! - PostgreSQL's grammar reads tokens: a kind, and a value taken from the token's text. Two
//!   texts whose tokens have the same kinds, and the same text but for some string, integer,
//!   decimal and bit-string constants, are parsed by the same steps; their trees differ only
//!   in byte positions and in the nodes those constants became. No grammar action of
//!   PostgreSQL 18 tests the value of a literal it turns into an `A_Const` (its value checks,
//!   such as `float(p)`'s precision, are on literals that do not become one).
//! - The analysis reads no byte position but each statement's, and sees a constant's value
//!   only by reading its `A_Const` node in the tree, where [`super::analyze_traced`] records it.
//! - So a constant may be left out when it became `A_Const` nodes none of whose values the
//!   analysis read: on another text of the shape the walk reads the same nodes with the same
//!   values (it reads the constants it did read: those are in the key) and writes the same
//!   facts. Which constants those are is learnt from the first text analyzed
//!   ([`Template`]); a later text is keyed on the same ones, and its own analysis is kept
//!   only when it read no other.
//! - Statement positions are token positions (a statement runs from its first token to its
//!   `;`, or to the end of the text): they are recomputed from the new text's tokens.
//!
//! `tests/shape.rs` holds this against the analysis over the corpora with fresh constants.

use super::raw::{self, Kinds, Token, Tokens};
use super::Facts;

/// A text's tokens, as the shape key reads them.
pub struct Shape<'s> {
    sql: &'s str,
    tokens: Tokens,
}

/// What one analysis of a shape says about all its texts: which constants are part of the
/// key, and where each statement begins and ends, in tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Indices of the constant tokens whose text is part of the key, ascending.
    kept: Box<[u32]>,
    /// Per statement: its first token, and the token it ends at (`None`: the text's end).
    statements: Box<[(u32, Option<u32>)]>,
}

impl Template {
    /// Whether every constant `other` keeps, this one keeps too.
    pub fn covers(&self, other: &Template) -> bool {
        other
            .kept
            .iter()
            .all(|k| self.kept.binary_search(k).is_ok())
            && self.statements == other.statements
    }
}

/// Marks a constant left out of the key (a kind's own bytes follow every kept token).
const ELIDED: u32 = u32::MAX;

impl<'s> Shape<'s> {
    /// The shape of `sql`; `None` when the scanner rejects it (the parse says why).
    pub fn scan(sql: &'s str) -> Option<Shape<'s>> {
        Some(Shape {
            sql,
            tokens: raw::scan(sql)?,
        })
    }

    pub fn tokens(&self) -> &[Token] {
        self.tokens.tokens()
    }

    fn text(&self, t: &Token) -> &[u8] {
        &self.sql.as_bytes()[t.start as usize..t.end as usize]
    }

    /// Appends the shape key: every token's kind, and every token's text but the constants'.
    pub fn key(&self, out: &mut Vec<u8>) {
        let kinds = raw::kinds();
        for t in self.tokens() {
            out.extend_from_slice(&t.kind.to_le_bytes());
            if elidable(kinds, t.kind) {
                out.extend_from_slice(&ELIDED.to_le_bytes());
            } else {
                let text = self.text(t);
                out.extend_from_slice(&(text.len() as u32).to_le_bytes());
                out.extend_from_slice(text);
            }
        }
    }

    /// Appends the texts of the constants `template` keeps.
    pub fn values(&self, template: &Template, out: &mut Vec<u8>) {
        let tokens = self.tokens();
        for &k in template.kept.iter() {
            let text = tokens.get(k as usize).map_or(&[][..], |t| self.text(t));
            out.extend_from_slice(&(text.len() as u32).to_le_bytes());
            out.extend_from_slice(text);
        }
    }

    /// The template of this text's analysis: `facts`, and `constants` (each `A_Const`'s
    /// location and whether its value was read, from [`super::analyze_traced`]). `None` when
    /// a statement's position is not at a token (then the shape is not cached).
    pub fn template(&self, facts: &Facts, constants: &[(i64, bool)]) -> Option<Template> {
        let kinds = raw::kinds();
        let tokens = self.tokens();
        let mut consts: Vec<(i64, bool)> = constants.to_vec();
        consts.sort_unstable();
        let mut kept = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            if !elidable(kinds, t.kind) {
                continue;
            }
            let at = i64::from(t.start);
            let first = consts.partition_point(|(l, _)| *l < at);
            let here = consts[first..].iter().take_while(|(l, _)| *l == at);
            let (mut any, mut read) = (false, false);
            for (_, r) in here {
                any = true;
                read |= *r;
            }
            // Left out only when it became constants nobody read.
            if !any || read {
                kept.push(i as u32);
            }
        }
        let at_token = |pos: usize| {
            tokens
                .binary_search_by_key(&pos, |t| t.start as usize)
                .ok()
                .map(|i| i as u32)
        };
        let mut statements = Vec::with_capacity(facts.statements.len());
        for s in &facts.statements {
            let first = at_token(s.location)?;
            let end = s.location + s.length;
            let last = if end == self.sql.len() {
                None
            } else {
                Some(at_token(end)?)
            };
            statements.push((first, last));
        }
        let template = Template {
            kept: kept.into(),
            statements: statements.into(),
        };
        // The positions this template gives must be the analysis' own.
        let placed = facts.statements.len() == template.statements.len()
            && facts.sql_bytes == self.sql.len()
            && facts
                .statements
                .iter()
                .zip(template.statements.iter())
                .all(|(s, t)| self.position(t) == (s.location, s.length));
        placed.then_some(template)
    }

    /// A statement's location and length in this text.
    fn position(&self, &(first, last): &(u32, Option<u32>)) -> (usize, usize) {
        let tokens = self.tokens();
        let start = |i: u32| tokens.get(i as usize).map_or(0, |t| t.start as usize);
        let location = start(first);
        let end = last.map_or(self.sql.len(), start);
        (location, end.saturating_sub(location))
    }

    /// Sets the byte positions in `facts` (analyzed from another text of this shape) to
    /// this text's.
    pub fn place(&self, template: &Template, facts: &mut Facts) {
        facts.sql_bytes = self.sql.len();
        for (s, t) in facts.statements.iter_mut().zip(template.statements.iter()) {
            (s.location, s.length) = self.position(t);
        }
    }
}

/// String, integer, decimal and bit-string constants: the tokens a shape may leave out.
/// (`U&'…'` strings are not: their escapes are decoded, and checked, by the parser.)
fn elidable(k: &Kinds, kind: i32) -> bool {
    kind == k.sconst || kind == k.iconst || kind == k.fconst || kind == k.bconst || kind == k.xconst
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{analyze_traced, AnalysisOptions};

    fn shaped(sql: &str) -> (Vec<u8>, Template, Facts) {
        let (facts, consts) = analyze_traced(sql, &AnalysisOptions::default()).unwrap();
        let shape = Shape::scan(sql).unwrap();
        let mut key = Vec::new();
        shape.key(&mut key);
        let template = shape.template(&facts, &consts).unwrap();
        (key, template, facts)
    }

    #[test]
    fn constants_nobody_reads_are_left_out_and_read_ones_kept() {
        let (k1, t1, _) = shaped("SELECT a FROM t WHERE b = 'x' AND c > 10");
        let (k2, t2, _) = shaped("select a from t where b = 'yy' and c > 7");
        // Keywords keep their text: the two differ in case.
        assert_ne!(k1, k2);
        let (k3, t3, _) = shaped("SELECT a FROM t WHERE b = 'zzz' AND c > 123456");
        assert_eq!(k1, k3);
        assert!(t1.kept.is_empty(), "{t1:?}");
        assert_eq!(t1, t3);
        assert!(t2.kept.is_empty());
        // A setting's name is read: its token stays in the key.
        let (_, t, _) = shaped("SELECT current_setting('work_mem'), 1");
        assert_eq!(t.kept.len(), 1, "{t:?}");
        // A catalog view pinned to one row by a constant.
        let (_, t, _) = shaped("SELECT setting FROM pg_settings WHERE name = 'work_mem'");
        assert_eq!(t.kept.len(), 1, "{t:?}");
        // A regclass cast's text is not read: the facts say "a regclass cast", whatever it names.
        let (_, t, _) = shaped("SELECT 'users'::regclass");
        assert!(t.kept.is_empty(), "{t:?}");
        // `float(p)` picks the type by the value: not an A_Const, so kept.
        let (_, t, _) = shaped("SELECT x::float(10) FROM t");
        assert_eq!(t.kept.len(), 1, "{t:?}");
    }

    #[test]
    fn positions_follow_the_new_text() {
        let (_, template, facts) = shaped("SELECT 1; SELECT 'a' FROM t;");
        let other = "  SELECT 12345 ;\n\n SELECT 'abcdef' FROM t ; -- end";
        let shape = Shape::scan(other).unwrap();
        let mut placed = facts.clone();
        shape.place(&template, &mut placed);
        let fresh = crate::analysis::analyze(other).unwrap();
        assert_eq!(placed, fresh);
    }
}
