//! Sorting with one copy of the standard library's sort in the module.
//!
//! `slice::sort_by` is generic: every element type and comparator got its own ~4 KB copy of
//! the sort (driftsort, its small sorts and merges), and the filter sorted four kinds of lists
//! (SigV4 headers and query pairs, S3 parameter headers, history entries, election candidates).
//! Here the standard sort runs once, over indices, through a `dyn` comparator; only the small
//! reordering is per type (BENCHMARKS.md, "Issue 25"). The lists are short (headers) or a listing's
//! worth (history, candidates): an indirect comparison costs nothing there.

use std::cmp::Ordering;

/// Sorts `v` by `cmp`, stably (equal elements keep their order), like `slice::sort_by`.
pub fn sort_by<T>(v: &mut Vec<T>, cmp: impl Fn(&T, &T) -> Ordering) {
    let order = sorted_indices(v.len(), &|a, b| match (v.get(a), v.get(b)) {
        (Some(x), Some(y)) => cmp(x, y),
        _ => Ordering::Equal,
    });
    reorder(v, &order);
}

/// Sorts `v` in its natural order, stably, like `slice::sort`.
pub fn sort<T: Ord>(v: &mut Vec<T>) {
    sort_by(v, T::cmp);
}

/// `0..n` sorted by `cmp` (the only instantiation of the standard sort).
fn sorted_indices(n: usize, cmp: &dyn Fn(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| cmp(a, b));
    order
}

/// `v` rearranged so that its i-th element is the old `v[order[i]]`; `order` is a permutation
/// of `0..v.len()`.
fn reorder<T>(v: &mut Vec<T>, order: &[usize]) {
    let mut slots: Vec<Option<T>> = v.drain(..).map(Some).collect();
    v.extend(
        order
            .iter()
            .filter_map(|&i| slots.get_mut(i).and_then(Option::take)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift): no dependency for test data.
    fn numbers(seed: u64, n: usize, modulo: u64) -> Vec<u64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % modulo
            })
            .collect()
    }

    #[test]
    fn agrees_with_the_standard_stable_sort() {
        for (seed, n, modulo) in [
            (1, 0, 5),
            (2, 1, 5),
            (3, 2, 2),
            (4, 17, 4),
            (5, 300, 7),
            (6, 2000, 1000),
        ] {
            // (key, original position): stability shows in the positions of equal keys.
            let items: Vec<(u64, usize)> = numbers(seed, n, modulo)
                .into_iter()
                .enumerate()
                .map(|(i, k)| (k, i))
                .collect();
            let mut ours = items.clone();
            sort_by(&mut ours, |a, b| a.0.cmp(&b.0));
            let mut std_sorted = items.clone();
            std_sorted.sort_by_key(|a| a.0);
            assert_eq!(ours, std_sorted, "seed {seed}, n {n}");

            let mut desc = items.clone();
            sort_by(&mut desc, |a, b| b.0.cmp(&a.0));
            let mut std_desc = items;
            std_desc.sort_by_key(|b| std::cmp::Reverse(b.0));
            assert_eq!(desc, std_desc, "seed {seed}, n {n}, descending");
        }
    }

    #[test]
    fn sorts_owned_strings_in_their_natural_order() {
        let mut v: Vec<(String, String)> = [("b", "2"), ("a", "9"), ("b", "1"), ("a", "10")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        sort(&mut v);
        let flat: Vec<String> = v.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(flat, ["a=10", "a=9", "b=1", "b=2"]);
    }
}
