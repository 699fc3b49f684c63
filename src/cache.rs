//! Per-node caches of answers that are never stale.
//!
//! `GenerationCache`: answers computed from data that a database counter versions. Each answer is kept with the generation it was computed at, read from the database
//! before the data it was computed from. All entries share one generation: seeing a newer
//! one drops them all. A caller reads the current generation (with its other reads where it
//! can) and uses an entry only when the two are equal, so an answer is never older than the
//! data, on any node: nodes share nothing but the database.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

pub struct GenerationCache<K, V> {
    /// Most entries kept; 0 keeps none.
    capacity: usize,
    inner: Mutex<Inner<K, V>>,
}

struct Inner<K, V> {
    /// The newest generation seen; every entry was computed at it.
    generation: i64,
    entries: HashMap<K, Arc<V>>,
}

impl<K: Hash + Eq, V> GenerationCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        GenerationCache {
            capacity,
            inner: Mutex::new(Inner {
                generation: i64::MIN,
                entries: HashMap::new(),
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The entry for `key` and the generation it was computed at.
    pub fn get(&self, key: &K) -> Option<(i64, Arc<V>)> {
        let inner = self.inner.lock().expect("generation cache");
        inner
            .entries
            .get(key)
            .map(|v| (inner.generation, v.clone()))
    }

    /// The entry for `key` if it was computed at `generation`; drops every entry older
    /// than `generation`.
    pub fn get_at(&self, key: &K, generation: i64) -> Option<Arc<V>> {
        let mut inner = self.inner.lock().expect("generation cache");
        inner.see(generation);
        if inner.generation == generation {
            inner.entries.get(key).cloned()
        } else {
            None
        }
    }

    /// Drops every entry older than `generation`.
    pub fn saw(&self, generation: i64) {
        self.inner.lock().expect("generation cache").see(generation);
    }

    /// Keeps `value` for `key`, computed from data read after `generation` was; not kept
    /// when a newer generation has been seen since.
    pub fn remember(&self, key: K, generation: i64, value: Arc<V>) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().expect("generation cache");
        inner.see(generation);
        if generation < inner.generation {
            return;
        }
        if inner.entries.len() >= self.capacity {
            // Simple and bounded: a full cache starts over.
            inner.entries.clear();
        }
        inner.entries.insert(key, value);
    }
}

/// A per-node cache whose entries each carry the tag they were computed for: a value the
/// caller reads again cheaply before each use, and which moves whenever the answer may
/// (e.g. a customer's newest order, read before the answer). An entry is used only while
/// the tag read now is the same.
pub struct TaggedCache<K, T, V> {
    /// Most entries kept; 0 keeps none.
    capacity: usize,
    entries: Mutex<HashMap<K, (T, Arc<V>)>>,
}

impl<K: Hash + Eq, T: PartialEq, V> TaggedCache<K, T, V> {
    pub fn new(capacity: usize) -> Self {
        TaggedCache {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The entry for `key` if it was computed for `tag`.
    pub fn get(&self, key: &K, tag: &T) -> Option<Arc<V>> {
        let entries = self.entries.lock().expect("tagged cache");
        match entries.get(key) {
            Some((t, v)) if t == tag => Some(v.clone()),
            _ => None,
        }
    }

    /// The entry for `key` and its tag, whatever the tag is now: for a caller whose write
    /// checks the tag itself (a compare-and-set on it) and reads again when it moved.
    pub fn latest(&self, key: &K) -> Option<(T, Arc<V>)>
    where
        T: Clone,
    {
        let entries = self.entries.lock().expect("tagged cache");
        entries.get(key).map(|(t, v)| (t.clone(), v.clone()))
    }

    pub fn forget(&self, key: &K) {
        self.entries.lock().expect("tagged cache").remove(key);
    }

    /// Keeps `value` for `key`, computed from data read after `tag` was.
    pub fn remember(&self, key: K, tag: T, value: Arc<V>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().expect("tagged cache");
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            // Simple and bounded: a full cache starts over.
            entries.clear();
        }
        entries.insert(key, (tag, value));
    }
}

impl<K, V> Inner<K, V> {
    fn see(&mut self, generation: i64) {
        if generation > self.generation {
            self.generation = generation;
            self.entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_hold_for_their_generation_only() {
        let c = GenerationCache::<u32, &str>::new(2);
        c.remember(1, 5, Arc::new("a"));
        assert_eq!(c.get_at(&1, 5).as_deref(), Some(&"a"));
        assert_eq!(c.get(&1).map(|(g, v)| (g, *v)), Some((5, "a")));
        // An older generation read late neither uses nor drops the newer entries.
        assert_eq!(c.get_at(&1, 4), None);
        c.remember(2, 4, Arc::new("old"));
        assert_eq!(c.get_at(&2, 5), None);
        // A newer one drops them.
        assert_eq!(c.get_at(&1, 6), None);
        assert_eq!(c.get(&1), None);
        // Bounded: a full cache starts over.
        c.remember(1, 6, Arc::new("a"));
        c.remember(2, 6, Arc::new("b"));
        c.remember(3, 6, Arc::new("c"));
        assert_eq!(c.get_at(&1, 6), None);
        assert_eq!(c.get_at(&3, 6).as_deref(), Some(&"c"));
        let off = GenerationCache::<u32, &str>::new(0);
        off.remember(1, 1, Arc::new("a"));
        assert_eq!(off.get_at(&1, 1), None);
        assert!(!off.enabled());
    }

    #[test]
    fn tagged_entries_hold_for_their_tag_only() {
        let c = TaggedCache::<u32, u64, &str>::new(2);
        c.remember(1, 7, Arc::new("a"));
        assert_eq!(c.get(&1, &7).as_deref(), Some(&"a"));
        assert_eq!(c.get(&1, &8), None);
        c.remember(1, 8, Arc::new("b"));
        assert_eq!(c.get(&1, &8).as_deref(), Some(&"b"));
        assert_eq!(c.get(&1, &7), None);
        // Bounded: a full cache starts over; replacing an entry does not count.
        c.remember(2, 1, Arc::new("c"));
        c.remember(2, 2, Arc::new("d"));
        assert_eq!(c.get(&1, &8).as_deref(), Some(&"b"));
        c.remember(3, 1, Arc::new("e"));
        assert_eq!(c.get(&1, &8), None);
        assert_eq!(c.get(&3, &1).as_deref(), Some(&"e"));
    }

    #[test]
    fn latest_gives_any_tag_and_forget_drops() {
        let c = TaggedCache::<u32, u64, &str>::new(4);
        assert!(c.latest(&1).is_none());
        c.remember(1, 7, Arc::new("a"));
        assert_eq!(c.latest(&1).map(|(t, v)| (t, *v)), Some((7, "a")));
        c.forget(&1);
        assert!(c.latest(&1).is_none());
        assert_eq!(c.get(&1, &7), None);
    }
}
