//! A map on a `Vec`, searched linearly, for the filter's few-entry tables (root contexts of a
//! worker, calls in flight, metric ids). Each `BTreeMap<K, V>` the module instantiates costs
//! ~5 KB of code (BENCHMARKS.md, "Where the bytes go"); this one a few hundred bytes.
//! [`SortedVecSet`] does the same for `BTreeSet`.

use std::borrow::Borrow;

/// Entries in insertion order; a key at most once.
#[derive(Clone, Debug)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }
}

impl<K: PartialEq, V> VecMap<K, V> {
    pub const fn new() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }

    fn position(&self, key: &K) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k == key)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.position(key).is_some()
    }

    /// Sets `key` to `value`; the previous value, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.get_mut(&key) {
            Some(v) => Some(std::mem::replace(v, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// The value of `key`, inserted with `make` first when missing.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        match self.position(&key) {
            // Moved to the end, where `push_mut` would have put it: found without indexing.
            Some(at) => {
                let entry = self.entries.remove(at);
                &mut self.entries.push_mut(entry).1
            }
            None => &mut self.entries.push_mut((key, make())).1,
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.position(key)?;
        Some(self.entries.swap_remove(at).1)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.entries.retain(|(k, v)| keep(k, v));
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A set on a sorted `Vec`, searched by bisection: `BTreeSet`'s order and deduplication, for
/// sets that are filled and looked up (an insertion shifts the tail: meant for a few thousand
/// entries at most).
#[derive(Clone, Debug)]
pub struct SortedVecSet<T> {
    items: Vec<T>,
}

impl<T> Default for SortedVecSet<T> {
    fn default() -> Self {
        SortedVecSet { items: Vec::new() }
    }
}

impl<T: Ord> SortedVecSet<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `item`; false if it was there already (like `BTreeSet::insert`).
    pub fn insert(&mut self, item: T) -> bool {
        match self.items.binary_search(&item) {
            Ok(_) => false,
            Err(at) => {
                self.items.insert(at, item);
                true
            }
        }
    }

    pub fn contains<Q: Ord + ?Sized>(&self, item: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.items
            .binary_search_by(|probe| probe.borrow().cmp(item))
            .is_ok()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// In order, each once.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }
}

impl<T: Ord> Extend<T> for SortedVecSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for item in items {
            self.insert(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_replace_remove_retain() {
        let mut m = VecMap::new();
        assert_eq!(m.insert(7u32, "a"), None);
        assert_eq!(m.insert(9, "b"), None);
        assert_eq!(m.insert(7, "c"), Some("a"));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&7), Some(&"c"));
        assert!(m.contains_key(&9) && !m.contains_key(&8));
        *m.get_or_insert_with(8, || "d") = "e";
        assert_eq!(*m.get_or_insert_with(8, || "never"), "e");
        assert_eq!(m.remove(&7), Some("c"));
        assert_eq!(m.remove(&7), None);
        m.retain(|k, _| *k != 9);
        assert_eq!(m.get(&9), None);
        assert_eq!(m.get(&8), Some(&"e"));
        m.clear();
        assert!(m.is_empty());
    }

    #[test]
    fn sorted_set_keeps_btreesets_order_and_dedup() {
        let words = ["m", "b", "zz", "b", "a", "m", "", "ab"];
        let mut set = SortedVecSet::new();
        let mut tree = std::collections::BTreeSet::new();
        for w in words {
            assert_eq!(set.insert(w.to_string()), tree.insert(w.to_string()));
        }
        assert_eq!(set.len(), tree.len());
        assert!(set.iter().eq(tree.iter()));
        assert!(set.contains("ab") && set.contains("") && !set.contains("c"));
        set.extend(Some("c".to_string()));
        set.extend(None);
        assert!(set.contains("c") && set.len() == tree.len() + 1 && !set.is_empty());
        assert!(SortedVecSet::<String>::new().is_empty());
    }
}
