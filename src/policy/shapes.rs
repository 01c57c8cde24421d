//! The shape cache: a text of a shape already decided gets the same facts and decision
//! without parsing, from the scanner's tokens alone ([`crate::analysis::shape`] says why the
//! facts are the same).
//!
//! A shape's entry is keyed on its tokens and everything else the facts and the decision
//! depend on: the tool, the database, the identity, the `search_path` and the catalog
//! snapshot the names were resolved against. Equality decides (the hash only picks the
//! bucket). Under an entry, answers are keyed on the texts of the constants the first
//! analysis read ([`Template`]); an analysis that read a constant the entry does not key on
//! is not kept. Like the decision cache it lives and dies with one loaded policy, exists
//! only for deterministic bundles, and keeps only the bundle's own answers. Its size is
//! bounded in shapes, in answers per shape, and in an estimate of the bytes it holds.

use std::hash::{BuildHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::analysis::shape::{Shape, Template};
use crate::analysis::snapshot::Snapshot;
use crate::analysis::{AnalysisOptions, Facts};

use super::{DatabaseContext, Decision, Identity};

/// Texts longer than this are not keyed by shape (their analysis is not the cost).
pub const MAX_SQL_BYTES: usize = 16 * 1024;
/// Answers kept per shape (distinct values of the constants it keys on).
const ANSWERS_PER_SHAPE: usize = 32;
/// About how many bytes the cache may hold.
const BUDGET_BYTES: usize = 64 << 20;

/// What a call's facts and decision depend on besides its text.
pub(super) struct Context<'a> {
    pub tool: &'a str,
    pub database: Option<&'a DatabaseContext>,
    pub identity: &'a Identity,
    pub opts: &'a AnalysisOptions,
}

struct OwnedContext {
    tool: String,
    database: Option<DatabaseContext>,
    identity: Identity,
    search_path: Vec<String>,
    /// Held, so that its address cannot be another snapshot's while the entry lives.
    snapshot: Option<Arc<Snapshot>>,
}

impl OwnedContext {
    fn of(c: &Context<'_>) -> OwnedContext {
        OwnedContext {
            tool: c.tool.to_string(),
            database: c.database.cloned(),
            identity: c.identity.clone(),
            search_path: c.opts.search_path().to_vec(),
            snapshot: c.opts.shared_snapshot().cloned(),
        }
    }

    fn matches(&self, c: &Context<'_>) -> bool {
        self.tool == c.tool
            && self.database.as_ref() == c.database
            && self.identity == *c.identity
            && self.search_path == c.opts.search_path()
            && match (&self.snapshot, c.opts.shared_snapshot()) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

struct Entry {
    key: Box<[u8]>,
    context: OwnedContext,
    template: Template,
    answers: Vec<Answer>,
    bytes: usize,
}

struct Answer {
    values: Box<[u8]>,
    facts: Arc<Facts>,
    decision: Decision,
    bytes: usize,
}

struct Entries {
    map: lru::LruCache<u64, Vec<Entry>>,
    bytes: usize,
}

/// The shape cache of one loaded policy.
pub(super) struct ShapeCache {
    entries: Mutex<Entries>,
    hasher: foldhash::fast::RandomState,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A text's shape, keyed for one call.
pub(super) struct Keyed<'s> {
    pub shape: Shape<'s>,
    key: Vec<u8>,
    hash: u64,
}

impl ShapeCache {
    /// A cache of up to `shapes` shapes; `None` for 0.
    pub fn new(shapes: usize) -> Option<ShapeCache> {
        Some(ShapeCache {
            entries: Mutex::new(Entries {
                map: lru::LruCache::new(NonZeroUsize::new(shapes)?),
                bytes: 0,
            }),
            hasher: foldhash::fast::RandomState::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// `sql`'s shape and key for `context`; `None` when it is not keyed by shape (too long,
    /// or the scanner rejects it).
    pub fn key<'s>(&self, sql: &'s str, context: &Context<'_>) -> Option<Keyed<'s>> {
        if sql.len() > MAX_SQL_BYTES || sql.len() > context.opts.max_sql_bytes {
            return None;
        }
        let shape = Shape::scan(sql)?;
        let mut key = Vec::with_capacity(sql.len() * 2 + 16);
        shape.key(&mut key);
        let mut h = self.hasher.build_hasher();
        key.hash(&mut h);
        context.tool.hash(&mut h);
        context.database.hash(&mut h);
        context.identity.hash(&mut h);
        context.opts.search_path().hash(&mut h);
        context
            .opts
            .shared_snapshot()
            .map(|s| Arc::as_ptr(s) as usize)
            .hash(&mut h);
        Some(Keyed {
            shape,
            key,
            hash: h.finish(),
        })
    }

    /// The facts (with this text's positions) and decision of an earlier text of the shape
    /// with the same values in the constants that matter.
    pub fn get(&self, keyed: &Keyed<'_>, context: &Context<'_>) -> Option<(Facts, Decision)> {
        let found = self.find(keyed, context);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let (template, facts, decision) = found?;
        let mut facts = Facts::clone(&facts);
        keyed.shape.place(&template, &mut facts);
        Some((facts, decision))
    }

    fn find(
        &self,
        keyed: &Keyed<'_>,
        context: &Context<'_>,
    ) -> Option<(Template, Arc<Facts>, Decision)> {
        // A panic while holding the lock: behave as a miss, never as a hit.
        let mut entries = self.entries.lock().ok()?;
        let bucket = entries.map.get_mut(&keyed.hash)?;
        let entry = bucket
            .iter_mut()
            .find(|e| *e.key == *keyed.key && e.context.matches(context))?;
        let mut values = Vec::new();
        keyed.shape.values(&entry.template, &mut values);
        let answer = entry.answers.iter().find(|a| *a.values == *values)?;
        Some((
            entry.template.clone(),
            answer.facts.clone(),
            answer.decision.clone(),
        ))
    }

    /// Keeps the analysis of `keyed`'s text (`facts`, and `constants`: each `A_Const`'s
    /// location and whether it was read) and its `decision`, when the shape's entry keys on
    /// every constant this analysis read.
    pub fn put(
        &self,
        keyed: Keyed<'_>,
        context: &Context<'_>,
        facts: &Facts,
        constants: &[(i64, bool)],
        decision: &Decision,
    ) {
        let Some(template) = keyed.shape.template(facts, constants) else {
            return;
        };
        let Ok(mut guard) = self.entries.lock() else {
            return;
        };
        let entries = &mut *guard;
        let bucket = entries.map.get_or_insert_mut(keyed.hash, Vec::new);
        let at = match bucket
            .iter()
            .position(|e| *e.key == *keyed.key && e.context.matches(context))
        {
            Some(i) => i,
            None => {
                let bytes = keyed.key.len() + 256;
                bucket.push(Entry {
                    key: keyed.key.into_boxed_slice(),
                    context: OwnedContext::of(context),
                    template: template.clone(),
                    answers: Vec::new(),
                    bytes,
                });
                entries.bytes += bytes;
                bucket.len() - 1
            }
        };
        let entry = &mut bucket[at];
        // This analysis read a constant the entry does not key on: keeping it would answer
        // texts that differ there.
        if !entry.template.covers(&template) {
            return;
        }
        let mut values = Vec::new();
        keyed.shape.values(&entry.template, &mut values);
        if entry.answers.iter().any(|a| *a.values == *values) {
            return;
        }
        if entry.answers.len() >= ANSWERS_PER_SHAPE {
            let old = entry.answers.remove(0);
            entry.bytes -= old.bytes;
            entries.bytes -= old.bytes;
        }
        // Answers with equal facts share them.
        let shared = entry
            .answers
            .iter()
            .find(|a| *a.facts == *facts)
            .map(|a| a.facts.clone());
        let bytes = values.len()
            + 64
            + if shared.is_some() {
                0
            } else {
                facts_bytes(facts)
            };
        entry.answers.push(Answer {
            values: values.into_boxed_slice(),
            facts: shared.unwrap_or_else(|| Arc::new(facts.clone())),
            decision: decision.clone(),
            bytes,
        });
        entry.bytes += bytes;
        entries.bytes += bytes;
        while entries.bytes > BUDGET_BYTES {
            match entries.map.pop_lru() {
                Some((_, gone)) => {
                    entries.bytes -= gone.iter().map(|e| e.bytes).sum::<usize>();
                }
                None => break,
            }
        }
    }

    pub fn counts(&self) -> (u64, u64, usize) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
            self.entries
                .lock()
                .map(|e| e.map.iter().map(|(_, b)| b.len()).sum())
                .unwrap_or(0),
        )
    }
}

/// About how many bytes `facts` holds.
fn facts_bytes(facts: &Facts) -> usize {
    let strings: usize = facts.search_path.iter().map(|s| s.len() + 24).sum();
    let statements: usize = facts
        .statements
        .iter()
        .map(|s| {
            512 + 96
                * (s.nested_kinds.len()
                    + s.not_read_only.len()
                    + s.relations.len()
                    + s.functions.len()
                    + s.operators.len()
                    + s.columns.len()
                    + s.settings.len()
                    + s.locking.len()
                    + s.into.len()
                    + s.unclassified.len()
                    + s.parameters.len())
                + s.explain.as_ref().map_or(0, |_| 4096)
        })
        .sum();
    256 + strings + statements
}
