//! `diff A B`: what changed from export A to export B — entities added, removed and changed, by
//! type and name, with the names of the changed fields, never their values (`entity_diff`). A
//! and B are `latest`, a history version id (or a prefix of one), or a file. Objects from the
//! storage pass the import's checks first (`storage::open_export`: size, digest, seal,
//! validation); files must be Kong declarative configurations. The storage's settings are needed
//! only when a side is in the storage.

use std::path::Path;

use config_bridge::document::{sha256_hex, validate_declarative_json};
use serde_json::{json, Value};

use super::{deadline, http, progress};
use crate::args::DiffArgs;
use crate::entity_diff::diff;
use crate::outcome::{Exit, Outcome, Res};
use crate::pick::{resolve, Pick};
use crate::settings::Settings;
use crate::storage::{open_export, Storage};
use crate::time::rfc3339;

/// One side, read and described.
struct Side {
    doc: Value,
    sha256: String,
    /// For the text output: `latest  s3://b/p/3.9.1/config.json (697 bytes, sha256 33bdedd5666e)`.
    line: String,
    json: Value,
}

pub fn run(args: &DiffArgs) -> Res<Outcome> {
    let picks = [Pick::from_reference(&args.a), Pick::from_reference(&args.b)];
    let sides = if picks.iter().any(Option::is_some) {
        let common = &args.common;
        let deadline = deadline(common)?;
        let cfg = Settings::load(common)?.reading().parse(None)?;
        let http = http(&cfg, common)?;
        let storage = Storage::new(&cfg, &http, progress(common), deadline);
        let read = |text: &str, pick: &Option<Pick>| match pick {
            Some(p) => from_storage(&storage, &cfg, text, p, args.max_bytes),
            None => from_file(text, args.max_bytes),
        };
        [read(&args.a, &picks[0])?, read(&args.b, &picks[1])?]
    } else {
        [
            from_file(&args.a, args.max_bytes)?,
            from_file(&args.b, args.max_bytes)?,
        ]
    };
    let [a, b] = sides;
    let d = diff(&a.doc, &b.doc);
    let mut message = d.summary();
    if a.sha256 == b.sha256 {
        message.push_str(" (identical bytes)");
    }
    let mut out = Outcome::ok(message)
        .line(format!("a  {}", a.line))
        .line(format!("b  {}", b.line));
    for line in d.lines() {
        out = out.line(line);
    }
    let mut fields = d.to_json();
    fields["a"] = a.json;
    fields["b"] = b.json;
    fields["identical"] = json!(d.is_empty());
    if let Value::Object(map) = fields {
        for (k, v) in map {
            out = out.field(&k, v);
        }
    }
    Ok(out)
}

fn from_file(text: &str, max_bytes: u64) -> Res<Side> {
    let path = Path::new(text);
    let bytes = std::fs::read(path)
        .map_err(|e| Outcome::new(Exit::Local, format!("cannot read {text}: {e}")))?;
    let invalid = |why: String| Outcome::new(Exit::Invalid, format!("{text}: {why}"));
    if bytes.len() as u64 > max_bytes {
        return Err(invalid(format!(
            "{} bytes is more than --max-bytes ({max_bytes})",
            bytes.len()
        )));
    }
    validate_declarative_json(&bytes).map_err(|why| invalid(format!("the file {why}")))?;
    let sha = sha256_hex(&bytes);
    Ok(Side {
        doc: parse(&bytes),
        line: format!("{text} ({} bytes, sha256 {})", bytes.len(), &sha[..12]),
        json: json!({"ref": text, "file": text, "bytes": bytes.len(), "sha256": sha}),
        sha256: sha,
    })
}

fn from_storage(
    storage: &Storage,
    cfg: &config_bridge::settings::Config,
    text: &str,
    pick: &Pick,
    max_bytes: u64,
) -> Res<Side> {
    let picked = resolve(storage, cfg, pick)?;
    let where_ = storage.describe(&picked.key);
    let object = storage.get(&picked.key, "nothing to compare")?;
    let stored_sha = sha256_hex(&object.body);
    let uploader = object.meta.uploader.clone();
    let applied = object.applied_at().map(|(t, _)| t);
    let sealed = object.meta.seal.describe();
    let object = open_export(cfg, &picked, object, max_bytes).map_err(|why| {
        Outcome::new(Exit::Invalid, format!("{where_} is not readable: {why}"))
            .field("object", where_.as_str())
    })?;
    let name = picked.name().to_string();
    Ok(Side {
        doc: parse(&object.body),
        line: format!(
            "{name}  {where_} ({} bytes, sha256 {}{})",
            object.body.len(),
            &stored_sha[..12],
            applied
                .map(|t| format!(", from {}", rfc3339(t)))
                .unwrap_or_default()
        ),
        json: json!({
            "ref": text,
            "version_id": picked.entry.as_ref().map(|e| e.version_id()),
            "object": where_,
            "bytes": object.body.len(),
            "sha256": stored_sha,
            "uploader": uploader,
            "applied_at": applied.map(rfc3339),
            "sealed": sealed,
        }),
        sha256: stored_sha,
    })
}

/// Valid JSON by now (the core's check): the tree for the comparison.
fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}
