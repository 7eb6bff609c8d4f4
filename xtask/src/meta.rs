//! Kong's filter metadata, `<filter>.meta.json` beside the .wasm in `wasm_filters_path`:
//! `{"config_schema": <JSON schema, draft 4>}`. Kong 3.5+ validates every filter config against it
//! (lua-resty-ljsonschema, draft 4). The top-level type is `["object", "string"]`: Kong 3.4 stores
//! the configuration as a JSON string, and such a filter chain must survive the upgrade to 3.5+
//! (docs/kong.md); only the object form is described in detail. The checked-in file is the one
//! source of truth; `tests/schema.rs` keeps it in step with the filter's config parser.

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
    let types = schema.get("type").and_then(Value::as_array);
    ensure!(
        types.is_some_and(
            |t| t.contains(&Value::from("object")) && t.contains(&Value::from("string"))
        ),
        "config_schema must accept an object and a string (Kong 3.4 chains carry a string)"
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
    fn shipped_meta_describes_the_object_form() {
        let schema = super::config_schema().unwrap();
        assert!(schema["properties"]
            .as_object()
            .is_some_and(|p| !p.is_empty()));
    }
}
