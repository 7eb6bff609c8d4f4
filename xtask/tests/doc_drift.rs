//! Docs and code drift apart unless something fails when they do. This test reads the user-facing
//! docs (README.md, docs/*.md, plugin/SETTINGS.md, examples/**/README.md, native/README.md,
//! host-harness/README.md) and the example filter configurations, and fails when:
//! * a doc names a file under `plugin/src` that does not exist (`plugin/src/...`, `src/...` in
//!   plugin/SETTINGS.md, the module tree and the `engine/...`, `store/...` paths of
//!   docs/architecture.md; `{a,b}.rs` groups expanded);
//! * a settings table (first column `name` or `setting`) names a setting the filter's parser does
//!   not know (`config_bridge::settings::SETTINGS`, the list the parser itself checks keys
//!   against), or the parser knows a setting that plugin/SETTINGS.md has no row for;
//! * an example filter configuration anywhere under `examples/` (a `config_bridge` filter of a Kong
//!   chain, Envoy's `configuration`, a `*filter*.json`) is refused by the parser or by the
//!   meta.json schema.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::{assert_no_problems, parser_accepts_bytes, root, schema_errors, validator};
use config_bridge::settings::SETTINGS;
use serde_json::Value;

/// The docs this test reads, relative to the workspace root.
fn docs() -> Vec<PathBuf> {
    let r = root();
    let mut out = vec![
        r.join("README.md"),
        r.join("plugin/SETTINGS.md"),
        r.join("native/README.md"),
        r.join("host-harness/README.md"),
    ];
    let mut in_docs: Vec<PathBuf> = fs::read_dir(r.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    in_docs.sort();
    out.extend(in_docs);
    out.extend(
        walk(&r.join("examples"))
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "README.md")),
    );
    out
}

/// Every file under `dir`, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for p in fs::read_dir(&d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
        {
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `a/{b,c}.rs` → `a/b.rs`, `a/c.rs` (one group at most, as the docs write them).
fn expand(path: &str) -> Vec<String> {
    match (path.find('{'), path.find('}')) {
        (Some(open), Some(close)) if open < close => path[open + 1..close]
            .split(',')
            .map(|alt| format!("{}{}{}", &path[..open], alt.trim(), &path[close + 1..]))
            .collect(),
        _ => vec![path.to_string()],
    }
}

/// Path-like tokens starting with `prefix` (letters, digits, `_-./{},` after it).
fn tokens_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(prefix) {
        let start = from + i;
        // Not the tail of a longer path (`native/src/...` is not `src/...`).
        let before = text[..start].chars().next_back();
        let glued = before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '_');
        let len = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_-./{},".contains(c)))
            .unwrap_or(text.len() - start);
        if !glued {
            out.push(text[start..start + len].trim_end_matches(['.', ',']));
        }
        from = start + len.max(1);
    }
    out
}

/// The files under plugin/src that `doc` names, as paths relative to plugin/src.
fn plugin_src_refs(doc: &Path, text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for t in tokens_after(text, "plugin/src/") {
        refs.extend(expand(t.trim_start_matches("plugin/src/")));
    }
    let name = rel(doc);
    if name == "plugin/SETTINGS.md" {
        for t in tokens_after(text, "src/") {
            refs.extend(expand(t.trim_start_matches("src/")));
        }
    }
    if name == "docs/architecture.md" {
        refs.extend(architecture_tree(text));
        // `engine/export.rs`, `store/sigv4.rs`, ... in prose and tables: plugin/src's modules.
        for dir in ["engine/", "store/", "settings/", "shell/"] {
            for t in tokens_after(text, dir) {
                refs.extend(expand(t));
            }
        }
    }
    refs.retain(|r| !r.is_empty() && (r.ends_with(".rs") || r.ends_with('/')));
    refs
}

/// The module tree of docs/architecture.md: the code block that starts with `plugin/src/`, one
/// name per line, nested by two spaces.
fn architecture_tree(text: &str) -> Vec<String> {
    let Some(start) = text.find("```\nplugin/src/\n") else {
        return vec!["<docs/architecture.md has no plugin/src/ tree>".into()];
    };
    let block = &text[start + 4..];
    let block = &block[..block.find("```").unwrap_or(block.len())];
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut out = Vec::new();
    for line in block.lines().skip(1) {
        let indent = line.len() - line.trim_start().len();
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        // A continuation of the previous entry's description is indented past the names.
        if !(name.ends_with(".rs") || name.ends_with('/')) {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let parent: String = stack.iter().map(|(_, d)| d.as_str()).collect();
        out.push(format!("{parent}{name}"));
        if name.ends_with('/') {
            stack.push((indent, name.to_string()));
        }
    }
    out
}

#[test]
fn every_plugin_src_file_a_doc_names_exists() {
    let src = root().join("plugin/src");
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in docs() {
        let text = fs::read_to_string(&doc).unwrap();
        for r in plugin_src_refs(&doc, &text) {
            checked += 1;
            if !src.join(&r).exists() {
                problems.push(format!(
                    "{}: names plugin/src/{r}, which does not exist",
                    rel(&doc)
                ));
            }
        }
    }
    // The architecture tree alone names more than 40 files: a parser that finds nothing is broken.
    assert!(checked > 40, "only {checked} plugin/src references found");
    assert_no_problems(&problems);
}

/// The rows of every settings table (first header cell `name` or `setting`): the backticked
/// first cell of each row.
fn settings_table_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if !line.trim_start().starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table {
            in_table = matches!(cells.first(), Some(&"name") | Some(&"setting"));
            continue;
        }
        let first = cells.first().copied().unwrap_or_default();
        if first.starts_with("---") {
            continue;
        }
        out.extend(
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    out
}

#[test]
fn every_setting_a_doc_tabulates_is_known_to_the_parser_and_documented() {
    let known: BTreeSet<&str> = SETTINGS.iter().copied().collect();
    let mut problems = Vec::new();
    let mut settings_md = BTreeSet::new();
    for doc in docs() {
        let text = fs::read_to_string(&doc).unwrap();
        for name in settings_table_names(&text) {
            if !known.contains(name.as_str()) {
                problems.push(format!(
                    "{}: the settings table names `{name}`, which the filter's parser does not know",
                    rel(&doc)
                ));
            }
            if rel(&doc) == "plugin/SETTINGS.md" {
                settings_md.insert(name);
            }
        }
    }
    for name in &known {
        if !settings_md.contains(*name) {
            problems.push(format!(
                "plugin/SETTINGS.md has no row for `{name}`, a setting the parser accepts"
            ));
        }
    }
    assert_no_problems(&problems);
}

/// Every config-bridge filter configuration inside a parsed YAML/JSON example: Kong chains
/// (`filters[]` with `name: config_bridge`) and Envoy's Wasm filter (`configuration`).
fn filter_configs(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            if m.get("name").and_then(Value::as_str) == Some("config_bridge") {
                if let Some(c) = m.get("config") {
                    out.push(c.clone());
                }
                // Envoy: `configuration: {"@type": ...StringValue, value: "<json>"}`.
                if let Some(s) = m
                    .get("configuration")
                    .and_then(|c| c.get("value"))
                    .and_then(Value::as_str)
                {
                    out.push(Value::String(s.to_string()));
                }
            }
            m.values().for_each(|x| filter_configs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| filter_configs(x, out)),
        _ => {}
    }
}

#[test]
fn every_example_filter_config_passes_the_parser_and_the_schema() {
    let v = validator();
    let mut problems = Vec::new();
    let mut seen = 0;
    let files = walk(&root().join("examples"))
        .into_iter()
        .chain(walk(&root().join("plugin/examples")));
    for file in files {
        let name = rel(&file);
        let text = fs::read_to_string(&file).unwrap_or_default();
        let doc: Option<Value> = match file.extension().and_then(|x| x.to_str()) {
            Some("json") => serde_json::from_str(&text).ok(),
            Some("yaml") | Some("yml") => serde_norway::from_str(&text).ok(),
            _ => continue,
        };
        let Some(doc) = doc else {
            problems.push(format!("{name}: not valid JSON/YAML"));
            continue;
        };
        let mut configs = Vec::new();
        filter_configs(&doc, &mut configs);
        let stem = file.file_name().unwrap().to_string_lossy().to_string();
        if configs.is_empty() && stem.contains("filter") && stem.ends_with(".json") {
            configs.push(doc.clone());
        }
        if configs.is_empty() && name.starts_with("plugin/examples/") {
            configs.push(doc.clone());
        }
        for config in configs {
            seen += 1;
            let bytes = match &config {
                Value::String(s) => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            };
            if let Err(e) = parser_accepts_bytes(&bytes) {
                problems.push(format!("{name}: the filter's parser refuses a config: {e}"));
            }
            let object: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            for (what, value) in [("as written", &config), ("as an object", &object)] {
                for e in schema_errors(&v, value) {
                    problems.push(format!("{name}: meta.json refuses a config {what}: {e}"));
                }
            }
        }
    }
    // 4 version directories × 2 files, 3 bootstraps, Envoy, plugin/examples.
    assert!(seen >= 14, "only {seen} example filter configs found");
    assert_no_problems(&problems);
}

/// The finders themselves, on text where the answer is known.
#[test]
fn the_finders_find_what_docs_write() {
    assert_eq!(
        expand("engine/{export,import}.rs"),
        vec!["engine/export.rs", "engine/import.rs"]
    );
    // `src/` glued to `plugin/` or `native/` is not a bare `src/` path.
    assert!(tokens_after("see `plugin/src/store/s3.rs`, and native/src/x.rs", "src/").is_empty());
    assert_eq!(
        tokens_after("(see `src/engine/export.rs`)", "src/"),
        vec!["src/engine/export.rs"]
    );
    assert_eq!(
        tokens_after("see `plugin/src/store/s3.rs`.", "plugin/src/"),
        vec!["plugin/src/store/s3.rs"]
    );
    let tree = "```\nplugin/src/\n  lib.rs   root\n  engine/  core\n    mod.rs   x\n             more text\n  gone.rs  y\n```\n";
    assert_eq!(
        architecture_tree(tree),
        vec!["lib.rs", "engine/", "engine/mod.rs", "gone.rs"]
    );
    let table = "| name | type |\n|---|---|\n| `a_b` | x |\n| `c` / `d` | y |\n\n| parameter | h |\n|---|---|\n| `Zed` | z |\n";
    assert_eq!(settings_table_names(table), vec!["a_b", "c", "d"]);
}
