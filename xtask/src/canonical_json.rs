//! Byte-stable JSON for OCI documents.
//!
//! oci-spec keeps annotations in `HashMap`s (random iteration order), and serde_json's `Map` keeps
//! insertion order when any crate in the build enables `preserve_order`. A digest must not depend on
//! either, so every document is re-serialised with object keys sorted, compact, no trailing newline.

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Map, Value};

/// Serialise `doc` as compact JSON with object keys sorted at every level.
pub fn to_vec<T: Serialize>(doc: &T) -> Result<Vec<u8>> {
    let value = serde_json::to_value(doc).context("serialising an OCI document")?;
    Ok(serde_json::to_vec(&sorted(value))?)
}

fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::new();
            for (k, v) in entries {
                out.insert(k, sorted(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keys_are_sorted_whatever_the_map_order() {
        let mut doc = HashMap::new();
        for key in ["zeta", "alpha", "mid", "beta", "omega", "gamma"] {
            doc.insert(key.to_string(), HashMap::from([("y", 1), ("b", 2)]));
        }
        let bytes = to_vec(&doc).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with(r#"{"alpha":{"b":2,"y":1},"beta":"#),
            "{text}"
        );
        let positions: Vec<usize> = ["alpha", "beta", "gamma", "mid", "omega", "zeta"]
            .iter()
            .map(|k| text.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }
}
