//! The exact decision cache: the same policy input gets the same decision without evaluating
//! the bundle again.
//!
//! Exact because the key *is* the input: the regorus value the policy would have evaluated
//! (the facts without byte positions, the database, the identity, the tool, the plan),
//! compared by full equality; the hash only picks the bucket. A decision depends on nothing
//! else when the bundle is deterministic — [`Bundle::is_deterministic`] turns the cache off
//! for bundles calling the clock, random numbers, UUIDs or the runtime — and the cache lives
//! and dies with one loaded [`Policy`](super::Policy): a reload starts empty. Only decisions
//! the bundle produced are kept; evaluation errors and time-limit denials are not.
//!
//! [`Bundle::is_deterministic`]: super::Bundle::is_deterministic

use std::hash::{BuildHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use regorus::Value;

use super::Decision;

/// Decisions kept per loaded policy unless configured otherwise.
pub const DEFAULT_ENTRIES: usize = 4096;

/// Which rule a cached decision is the value of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Rule {
    Decision,
    Plan,
}

/// A policy input, hashed once.
#[derive(Debug)]
struct Key {
    rule: Rule,
    hash: u64,
    input: Value,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash && self.rule == other.rule && self.input == other.input
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hits and misses since the policy was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub capacity: usize,
    /// The shape cache's: calls answered without parsing, calls it could not answer, and
    /// the shapes it holds.
    pub shape_hits: u64,
    pub shape_misses: u64,
    pub shapes: usize,
}

/// A bounded (least recently used out first) map from policy input to decision.
pub(super) struct DecisionCache {
    entries: Mutex<lru::LruCache<Key, Decision>>,
    /// Seeded per cache (foldhash: fast, and keyed so that an agent cannot aim inputs at
    /// one bucket); the hash only picks the bucket, equality decides.
    hasher: foldhash::fast::RandomState,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A looked-up input: the decision when it was cached, else the key to store one under.
pub(super) enum Lookup {
    Hit(Decision),
    Miss(CacheSlot),
}

/// Where a decision for a missed input goes.
pub(super) struct CacheSlot {
    key: Key,
}

impl DecisionCache {
    /// A cache of `capacity` decisions; `None` for 0 (the cache is off).
    pub fn new(capacity: usize) -> Option<DecisionCache> {
        let cap = NonZeroUsize::new(capacity)?;
        Some(DecisionCache {
            entries: Mutex::new(lru::LruCache::new(cap)),
            hasher: foldhash::fast::RandomState::default(),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    pub fn lookup(&self, rule: Rule, input: &Value) -> Lookup {
        let key = Key {
            rule,
            hash: hash_value(&self.hasher, input),
            input: input.clone(),
        };
        let found = match self.entries.lock() {
            Ok(mut map) => map.get(&key).cloned(),
            // A panic while holding the lock: behave as a miss, never as a hit.
            Err(_) => None,
        };
        match found {
            Some(d) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Lookup::Hit(d)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Lookup::Miss(CacheSlot { key })
            }
        }
    }

    /// Keeps `decision` for the slot's input.
    pub fn store(&self, slot: CacheSlot, decision: &Decision) {
        if let Ok(mut map) = self.entries.lock() {
            map.put(slot.key, decision.clone());
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.entries.lock().map(|m| m.len()).unwrap_or(0),
            capacity: self.capacity,
            ..CacheStats::default()
        }
    }
}

/// A hash of `v` consistent with its equality: numbers hash by their `f64` value (equal
/// numbers have equal `f64`s; unequal ones that collide are told apart by equality), objects
/// and sets by their entries in sorted order, the order in which regorus compares them
/// element by element (`Object`'s and `Set`'s equality), whatever their storage.
fn hash_value<S: BuildHasher>(state: &S, v: &Value) -> u64 {
    let mut h = state.build_hasher();
    feed(v, &mut h);
    h.finish()
}

fn feed<H: Hasher>(v: &Value, h: &mut H) {
    match v {
        Value::Null => h.write_u8(0),
        Value::Bool(b) => {
            h.write_u8(1);
            h.write_u8(u8::from(*b));
        }
        Value::Number(n) => {
            h.write_u8(2);
            let f = n.as_f64().unwrap_or(f64::NAN);
            // 0.0 and -0.0 are equal numbers.
            h.write_u64(if f == 0.0 { 0 } else { f.to_bits() });
        }
        Value::String(s) => {
            h.write_u8(3);
            h.write(s.as_bytes());
            h.write_u8(0xff);
        }
        Value::Array(a) => {
            h.write_u8(4);
            h.write_usize(a.len());
            for item in a.iter() {
                feed(item, h);
            }
        }
        Value::Set(s) => {
            h.write_u8(5);
            h.write_usize(s.len());
            for item in s.iter_sorted() {
                feed(item, h);
            }
        }
        Value::Object(o) => {
            h.write_u8(6);
            h.write_usize(o.len());
            for (k, v) in o.iter_sorted() {
                feed(k, h);
                feed(v, h);
            }
        }
        Value::Undefined => h.write_u8(7),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static S: std::sync::LazyLock<foldhash::fast::RandomState> =
        std::sync::LazyLock::new(foldhash::fast::RandomState::default);

    fn v(json: &str) -> Value {
        Value::from_json_str(json).unwrap()
    }

    #[test]
    fn equal_values_hash_equal() {
        for (a, b) in [
            (r#"{"a": 1, "b": [1, 2]}"#, r#"{"b": [1, 2], "a": 1}"#),
            ("1", "1.0"),
            ("0", "-0.0"),
            (r#"{"x": {"y": null}}"#, r#"{"x": {"y": null}}"#),
        ] {
            assert_eq!(v(a), v(b), "{a} {b}");
            assert_eq!(hash_value(&*S, &v(a)), hash_value(&*S, &v(b)), "{a} {b}");
        }
        assert_ne!(hash_value(&*S, &v("[1, 2]")), hash_value(&*S, &v("[2, 1]")));
        assert_ne!(
            hash_value(&*S, &v(r#"["ab", "c"]"#)),
            hash_value(&*S, &v(r#"["a", "bc"]"#))
        );
    }

    #[test]
    fn objects_and_sets_hash_by_their_entries_however_they_were_built() {
        // Inserted in another order, and read from JSON (the input's route).
        let mut object = Value::new_object();
        let mut set = Value::new_set();
        for (k, n) in [("zeta", 3u64), ("a", 1), ("mid", 2)] {
            object
                .as_object_mut()
                .unwrap()
                .insert(Value::from(k), Value::from(n));
            set.as_set_mut().unwrap().insert(Value::from(k));
        }
        let json = v(r#"{"a": 1, "mid": 2, "zeta": 3}"#);
        assert_eq!(object, json);
        assert_eq!(hash_value(&*S, &object), hash_value(&*S, &json));
        let mut other = Value::new_set();
        for k in ["mid", "zeta", "a"] {
            other.as_set_mut().unwrap().insert(Value::from(k));
        }
        assert_eq!(set, other);
        assert_eq!(hash_value(&*S, &set), hash_value(&*S, &other));
        // Entries that differ, or move from key to value, hash apart.
        for (a, b) in [
            (r#"{"a": 1, "b": 2}"#, r#"{"a": 2, "b": 1}"#),
            (r#"{"a": "b"}"#, r#"{"b": "a"}"#),
            (r#"{"a": {"b": 1}}"#, r#"{"a": {"c": 1}}"#),
        ] {
            assert_ne!(hash_value(&*S, &v(a)), hash_value(&*S, &v(b)), "{a} {b}");
        }
    }

    #[test]
    fn a_hit_needs_an_equal_input_and_the_same_rule() {
        let cache = DecisionCache::new(2).unwrap();
        let allow = Decision::deny("x", "a decision");
        let input = v(r#"{"tool": "t", "query": {"n": 1}}"#);
        let Lookup::Miss(slot) = cache.lookup(Rule::Decision, &input) else {
            panic!("an empty cache hit");
        };
        cache.store(slot, &allow);
        assert!(matches!(cache.lookup(Rule::Decision, &input), Lookup::Hit(d) if d == allow));
        assert!(matches!(cache.lookup(Rule::Plan, &input), Lookup::Miss(_)));
        let other = v(r#"{"tool": "t", "query": {"n": 2}}"#);
        assert!(matches!(
            cache.lookup(Rule::Decision, &other),
            Lookup::Miss(_)
        ));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries), (1, 3, 1));
    }

    #[test]
    fn it_is_bounded_and_drops_the_least_recently_used() {
        let cache = DecisionCache::new(2).unwrap();
        let d = Decision::deny("x", "d");
        for n in 0..3 {
            if let Lookup::Miss(slot) = cache.lookup(Rule::Decision, &Value::from(n as u64)) {
                cache.store(slot, &d);
            }
            // Keep 0 in use.
            let _ = cache.lookup(Rule::Decision, &Value::from(0u64));
        }
        assert_eq!(cache.stats().entries, 2);
        assert!(matches!(
            cache.lookup(Rule::Decision, &Value::from(0u64)),
            Lookup::Hit(_)
        ));
        assert!(matches!(
            cache.lookup(Rule::Decision, &Value::from(1u64)),
            Lookup::Miss(_)
        ));
        assert!(DecisionCache::new(0).is_none());
    }
}
