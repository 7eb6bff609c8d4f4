//! What a command ends with: an exit code an init container or a script can act on, one line
//! for a person, detail lines, and the same as one JSON object for machines (`--json`). Progress
//! goes to stderr. Nothing here ever sees a secret: commands hand over only what they print.

use serde_json::{json, Map, Value};

/// Exit codes (documented in `--help` and native/README.md; scripts depend on them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// A local file could not be read or written.
    Local = 1,
    /// A flag, a setting or a credential is missing or wrong.
    Usage = 2,
    /// Nothing done on purpose: the CP answers, a persisted config exists, the node already has a
    /// configuration, storage holds a newer config.
    Skipped = 10,
    /// Nothing there: no export (404), nothing under the prefix, an empty source.
    Nothing = 11,
    /// The object (or the input document) is not a valid Kong declarative configuration, or Kong
    /// refused it.
    Invalid = 12,
    /// The storage did not answer, or kept refusing, until `--timeout`.
    Storage = 13,
    /// The source of the config or the Admin API did not answer (or refused).
    Source = 14,
    /// drill: the export is older than `--max-age`.
    Stale = 20,
    /// drill: the export's entities differ from the live Admin API's.
    Different = 21,
    /// drill --sample: an export of the history is invalid, or Kong refused it.
    HistoryInvalid = 22,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The `result` of the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Exit::Ok => "ok",
            Exit::Local => "local-error",
            Exit::Usage => "usage-error",
            Exit::Skipped => "skipped",
            Exit::Nothing => "nothing",
            Exit::Invalid => "invalid",
            Exit::Storage => "storage-unreachable",
            Exit::Source => "source-unreachable",
            Exit::Stale => "stale",
            Exit::Different => "different",
            Exit::HistoryInvalid => "history-invalid",
        }
    }
}

/// The end of a command: `Err(Outcome)` as well as `Ok(Outcome)`, so `?` carries failures.
#[derive(Debug)]
pub struct Outcome {
    pub exit: Exit,
    /// One line: what happened, or why not.
    pub message: String,
    /// Details for a person, printed before the message.
    pub lines: Vec<String>,
    /// The same details for machines, merged into the JSON object.
    pub fields: Map<String, Value>,
}

pub type Res<T> = Result<T, Outcome>;

impl Outcome {
    pub fn new(exit: Exit, message: impl Into<String>) -> Outcome {
        Outcome {
            exit,
            message: message.into(),
            lines: Vec::new(),
            fields: Map::new(),
        }
    }

    pub fn ok(message: impl Into<String>) -> Outcome {
        Outcome::new(Exit::Ok, message)
    }

    pub fn line(mut self, line: impl Into<String>) -> Outcome {
        self.lines.push(line.into());
        self
    }

    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Outcome {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    /// The `--json` object: `command`, `result`, `exit_code`, `message`, then the fields.
    pub fn to_json(&self, command: &str) -> Value {
        let mut out = Map::new();
        out.insert("command".into(), json!(command));
        out.insert("result".into(), json!(self.exit.name()));
        out.insert("exit_code".into(), json!(self.exit.code()));
        out.insert("message".into(), json!(self.message));
        for (k, v) in &self.fields {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }

    /// Prints the outcome: detail lines and a successful message on stdout, any other message on
    /// stderr; with `json`, one JSON object on stdout.
    pub fn print(&self, command: &str, json: bool) {
        if json {
            println!("{}", self.to_json(command));
            return;
        }
        for line in &self.lines {
            println!("{line}");
        }
        if self.exit == Exit::Ok {
            println!("{}", self.message);
        } else {
            eprintln!("config-bridge {command}: {}", self.message);
        }
    }
}

/// Progress lines on stderr: warnings always, more with `-v` / `-vv`.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub verbosity: u8,
}

impl Progress {
    pub fn warn(&self, line: &str) {
        eprintln!("config-bridge: {line}");
    }

    pub fn info(&self, line: &str) {
        if self.verbosity >= 1 {
            eprintln!("config-bridge: {line}");
        }
    }

    pub fn debug(&self, line: &str) {
        if self.verbosity >= 2 {
            eprintln!("config-bridge: {line}");
        }
    }
}
