//! Masked columns: the values of a result column PostgreSQL attributes to a masked table
//! column are replaced before they leave sqlguard (the policy's `decision.mask`).
//!
//! The attribution is PostgreSQL's own: a `RowDescription` names, for each result column that
//! is a plain reference to a table column (through subqueries and CTEs too), the table's OID
//! and the column's attribute number. The policy only lets a masked column be selected as it
//! is, so its values reach the result that way or not at all. A result column with no table
//! (an expression, a set operation's) is masked whole when the call selects a masked column,
//! and so is one of a table the catalog snapshot does not know: the analysis cannot tell
//! which it is.

use std::collections::HashMap;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::analysis::snapshot::Snapshot;
use crate::policy::{MaskDecision, MaskSpec};

/// The mask of an unattributed result column in a call that selects masked columns.
fn unattributed() -> MaskSpec {
    MaskSpec::Redact {
        text: "[masked]".into(),
    }
}

/// The masks of one call, by what a row description names.
#[derive(Debug, Clone, Default)]
pub struct MaskPlan {
    /// (table OID, attribute number) → the masked column (`schema.table.column`) and its mask.
    by_column: HashMap<(u32, i16), (Arc<str>, MaskSpec)>,
    /// Mask result columns of no known table column (the call selects a masked column).
    unattributed: bool,
    /// OIDs of the relations the snapshot knows.
    known: Option<Arc<Snapshot>>,
    /// `hash` masks' HMAC, keyed once.
    hmac: Option<Hmac<Sha256>>,
}

/// How one result column is returned.
#[derive(Debug, Clone)]
pub struct ColumnMask {
    /// The masked column it is (`schema.table.column`), or `None` for an unattributed one.
    pub source: Option<Arc<str>>,
    spec: MaskSpec,
    hmac: Option<Hmac<Sha256>>,
}

impl MaskPlan {
    /// No masks: every value is returned as it is.
    pub fn none() -> MaskPlan {
        MaskPlan::default()
    }

    /// The plan of `decision` over the served database's catalog. Fails (and the call must be
    /// refused) when masks apply but the catalog cannot name result columns, or a `hash`
    /// mask has no key.
    pub fn new(
        decision: &MaskDecision,
        snapshot: Option<&Arc<Snapshot>>,
        key: Option<Arc<[u8]>>,
    ) -> Result<MaskPlan, String> {
        if decision.columns.is_empty() {
            return Ok(MaskPlan::none());
        }
        let Some(snap) = snapshot else {
            return Err("masked columns are found in results through the database's catalog, which this server could not read (or does not read: catalog = false): try again once the database answers, or turn the catalog on".into());
        };
        // Without a key a hashed value is returned as `[masked]`; a call that selects one is
        // refused instead, so that the missing key is seen.
        if let (None, Some(column)) = (
            &key,
            decision
                .projected
                .iter()
                .find(|c| matches!(decision.columns.get(*c), Some(MaskSpec::Hash))),
        ) {
            return Err(format!("{column} is masked with hash, and this server has no mask key: ask the operator to set mask_key_file or mask_key_env in its configuration"));
        }
        let mut by_column = HashMap::new();
        for (entry, spec) in &decision.columns {
            let Some((table, column)) = entry.rsplit_once('.') else {
                continue;
            };
            let Some((schema, name)) = table.split_once('.') else {
                continue;
            };
            // The table itself, the partitions and children whose rows it holds, and the
            // parents that read its rows.
            let mut tables: Vec<String> = vec![table.to_string()];
            if let Some(l) = snap.lineage(schema, name) {
                tables.extend(l.ancestors.iter().cloned());
                tables.extend(l.descendants.iter().cloned());
            }
            let source: Arc<str> = Arc::from(entry.as_str());
            for t in &tables {
                let Some((s, n)) = t.split_once('.') else {
                    continue;
                };
                let Some(r) = snap.relation(s, n) else {
                    continue;
                };
                let (Some(oid), Some(cols), Some(nums)) = (r.oid, &r.columns, &r.attnums) else {
                    return Err(format!("the catalog snapshot has no column numbers for {t}, which masks need: read the catalog again"));
                };
                if let Some(i) = cols.iter().position(|(c, _)| c == column) {
                    if let Some(&attnum) = nums.get(i) {
                        // The strictest wins where two masks meet (a parent's and a child's).
                        by_column
                            .entry((oid, attnum))
                            .and_modify(|e: &mut (Arc<str>, MaskSpec)| {
                                if strictness(spec) > strictness(&e.1) {
                                    *e = (source.clone(), spec.clone());
                                }
                            })
                            .or_insert_with(|| (source.clone(), spec.clone()));
                    }
                }
            }
        }
        Ok(MaskPlan {
            by_column,
            unattributed: !decision.projected.is_empty(),
            known: Some(snap.clone()),
            hmac: key.map(|k| {
                <Hmac<Sha256> as Mac>::new_from_slice(&k).expect("HMAC takes any key length")
            }),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_column.is_empty() && !self.unattributed
    }

    /// The mask of the result column a row description names (`table_oid` 0: none).
    pub fn column(&self, table_oid: u32, attnum: i16) -> Option<ColumnMask> {
        if let Some((source, spec)) = self.by_column.get(&(table_oid, attnum)) {
            return Some(ColumnMask {
                source: Some(source.clone()),
                spec: spec.clone(),
                hmac: self.hmac.clone(),
            });
        }
        let known = table_oid != 0
            && self
                .known
                .as_ref()
                .is_some_and(|s| s.relation_by_oid(table_oid).is_some());
        (self.unattributed && !known).then(|| ColumnMask {
            source: None,
            spec: unattributed(),
            hmac: None,
        })
    }
}

/// Which of two masks on one column shows less.
fn strictness(m: &MaskSpec) -> u8 {
    match m {
        MaskSpec::Null => 4,
        MaskSpec::Redact { .. } => 3,
        MaskSpec::Hash => 2,
        MaskSpec::Partial { .. } => 1,
        MaskSpec::Email => 0,
    }
}

impl ColumnMask {
    /// The masked form of a value in PostgreSQL's text format (`None`: SQL NULL, which stays
    /// null: whether a value is there is its shape).
    pub fn apply(&self, text: Option<&str>) -> Value {
        let Some(t) = text else { return Value::Null };
        match &self.spec {
            MaskSpec::Null => Value::Null,
            MaskSpec::Redact { text } => Value::String(text.clone()),
            MaskSpec::Hash => Value::String(match &self.hmac {
                Some(h) => hash(h, t),
                None => String::from("[masked]"),
            }),
            MaskSpec::Email => Value::String(email(t)),
            MaskSpec::Partial {
                keep_first,
                keep_last,
                fill,
            } => Value::String(partial(t, *keep_first as usize, *keep_last as usize, fill)),
        }
    }
}

/// HMAC-SHA-256 of `value` under the keyed `hmac`, its first 16 bytes in hex.
fn hash(hmac: &Hmac<Sha256>, value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut mac = hmac.clone();
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// `jane@example.com` → `j***@example.com`; a value without one `@` is masked whole.
fn email(t: &str) -> String {
    let b = t.as_bytes();
    match b.iter().position(|&c| c == b'@') {
        Some(at) if at > 0 && !b[at + 1..].contains(&b'@') => {
            let first = t.chars().next().map_or(1, char::len_utf8);
            let mut out = String::with_capacity(first + 3 + b.len() - at);
            out.push_str(&t[..first]);
            out.push_str("***");
            out.push_str(&t[at..]);
            out
        }
        _ => "***".to_string(),
    }
}

/// Keeps `first` and `last` characters, fills the rest; a value no longer than what would be
/// kept is filled whole (keeping it would show it).
fn partial(t: &str, first: usize, last: usize, fill: &str) -> String {
    // Byte offsets of the kept prefix's end and the kept suffix's start (ASCII: the counts).
    let (n, head, tail) = if t.is_ascii() {
        let n = t.len();
        (n, first.min(n), n.saturating_sub(last))
    } else {
        let n = t.chars().count();
        let at = |k: usize| t.char_indices().nth(k).map_or(t.len(), |(i, _)| i);
        (n, at(first.min(n)), at(n.saturating_sub(last)))
    };
    if n <= first + last {
        return fill.repeat(n.max(1));
    }
    let hidden = n - first - last;
    let mut out = String::with_capacity(head + hidden * fill.len() + (t.len() - tail));
    out.push_str(&t[..head]);
    match fill.chars().next() {
        Some(c) if fill.len() == c.len_utf8() => out.extend(std::iter::repeat_n(c, hidden)),
        _ => (0..hidden).for_each(|_| out.push_str(fill)),
    }
    out.push_str(&t[tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(spec: MaskSpec, key: Option<&[u8]>) -> ColumnMask {
        ColumnMask {
            source: None,
            spec,
            hmac: key.map(|k| <Hmac<Sha256> as Mac>::new_from_slice(k).unwrap()),
        }
    }

    #[test]
    fn formats() {
        let e = mask(MaskSpec::Email, None);
        assert_eq!(e.apply(Some("jane@example.com")), "j***@example.com");
        assert_eq!(e.apply(Some("no-at-sign")), "***");
        assert_eq!(e.apply(Some("@x")), "***");
        assert_eq!(e.apply(None), Value::Null);
        let last4 = mask(
            MaskSpec::Partial {
                keep_first: 0,
                keep_last: 4,
                fill: "*".into(),
            },
            None,
        );
        assert_eq!(last4.apply(Some("123-45-6789")), "*******6789");
        assert_eq!(last4.apply(Some("1234")), "****");
        assert_eq!(last4.apply(Some("ü1234")), "*1234");
        let r = mask(MaskSpec::Redact { text: "[x]".into() }, None);
        assert_eq!(r.apply(Some("secret")), "[x]");
        assert_eq!(
            mask(MaskSpec::Null, None).apply(Some("secret")),
            Value::Null
        );
    }

    #[test]
    fn hashes_are_keyed() {
        let a = mask(MaskSpec::Hash, Some(b"key one"));
        let b = mask(MaskSpec::Hash, Some(b"key two"));
        assert_eq!(a.apply(Some("1234")), a.apply(Some("1234")));
        assert_ne!(a.apply(Some("1234")), a.apply(Some("1235")));
        assert_ne!(a.apply(Some("1234")), b.apply(Some("1234")));
        assert_eq!(a.apply(Some("x")).as_str().unwrap().len(), 32);
    }
}
