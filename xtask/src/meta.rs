//! Kong's filter metadata, `<filter>.meta.json` beside the .wasm in `wasm_filters_path`:
//! `{"config_schema": <JSON schema, draft 4, type object>}`. Kong 3.5+ validates every filter
//! config against it (lua-resty-ljsonschema, draft 4). The checked-in file is the one source of
//! truth; `tests/schema.rs` keeps it in step with the filter's config parser.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::{fs, path::Path};

pub const FILE_NAME: &str = "config_bridge.meta.json";
pub const META_JSON: &str = include_str!("../config_bridge.meta.json");

/// The `config_schema` object, after checking the shape Kong requires.
pub fn config_schema() -> Result<Value> {
    let meta: Value =
        serde_json::from_str(META_JSON).context("config_bridge.meta.json is not JSON")?;
    let schema = meta
        .get("config_schema")
        .context("meta.json has no config_schema")?;
    ensure!(
        schema.get("type") == Some(&Value::from("object")),
        "config_schema must have type: object"
    );
    Ok(schema.clone())
}

/// Write the meta.json into `dir` (after the shape check, so a broken file never ships).
pub fn write(dir: &Path) -> Result<()> {
    config_schema()?;
    fs::write(dir.join(FILE_NAME), META_JSON)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn shipped_meta_has_an_object_schema() {
        let schema = super::config_schema().unwrap();
        assert!(schema["properties"]
            .as_object()
            .is_some_and(|p| !p.is_empty()));
    }
}
