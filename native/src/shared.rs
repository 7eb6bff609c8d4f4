//! The engine's shared data (`node_lock::SharedStore`) for a single process: a map with compare
//! and swap, following ngx_wasm_module's rules (a missing key is created without a cas, an
//! existing one is replaced only with its current cas). One tool run is one "node" with one root
//! context, so the lease is always ours; the node record starts empty, as after a gateway reload,
//! which makes the export ask the store first (HEAD) and never upload identical content twice.

use std::collections::HashMap;

use config_bridge::node_lock::SharedStore;

#[derive(Debug, Default)]
pub struct MemShared {
    entries: HashMap<String, (Vec<u8>, u32)>,
}

impl SharedStore for MemShared {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        Ok(match self.entries.get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        let current = self.entries.get(key).map(|(_, c)| *c);
        let allowed = match (current, cas.filter(|c| *c != 0)) {
            (None, None) => true,
            (Some(now), Some(expected)) => now == expected,
            _ => false,
        };
        if allowed {
            let next = current.unwrap_or(0).wrapping_add(1).max(1);
            self.entries.insert(key.to_string(), (value.to_vec(), next));
        }
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap_as_ngx_wasm_module() {
        let mut s = MemShared::default();
        assert_eq!(s.get("k").unwrap(), (None, None));
        assert!(s.set("k", b"a", None).unwrap());
        assert!(
            !s.set("k", b"b", None).unwrap(),
            "no cas on an existing key"
        );
        let (v, cas) = s.get("k").unwrap();
        assert_eq!(v.as_deref(), Some(&b"a"[..]));
        assert!(!s.set("k", b"b", cas.map(|c| c + 1)).unwrap(), "stale cas");
        assert!(s.set("k", b"b", cas).unwrap());
        assert_eq!(s.get("k").unwrap().0.as_deref(), Some(&b"b"[..]));
    }
}
