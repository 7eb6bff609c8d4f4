//! One setting's value: the filter configuration first, then the first non-empty environment
//! variable of its list (nginx and Kong hide most variables from workers, so both ways exist).

use crate::json::{Map, Value};

use super::{err, Fail, Secret};

/// Where a setting's value came from, as its errors name it: `key`, or `key (from ENV)`. A copy
/// of two names: the text is written only when an error needs it (a `String` per lookup, built,
/// moved and dropped, was 2.4 KB of the packaged module; BENCHMARKS.md "Issue 25, lean7").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field<'k> {
    key: &'k str,
    env: Option<&'k str>,
}

impl<'k> Field<'k> {
    /// The setting itself (not an environment variable) named in an error.
    pub(crate) fn named(key: &'k str) -> Field<'k> {
        Field { key, env: None }
    }
}

impl From<Field<'_>> for String {
    fn from(f: Field<'_>) -> String {
        match f.env {
            None => f.key.to_string(),
            Some(name) => format!("{} (from {name})", f.key),
        }
    }
}

/// One setting's raw value and where it came from (for error messages).
pub(crate) struct Raw<'k> {
    pub(crate) value: Value,
    pub(crate) field: Field<'k>,
}

pub(crate) struct Lookup<'a> {
    /// Every setting except `config`, as (small) JSON values.
    pub(crate) obj: &'a Map,
    /// The `config` setting as a byte range of `text` (its raw JSON text); `null` included.
    pub(crate) config: Option<(usize, usize)>,
    /// The filter configuration text.
    pub(crate) text: &'a [u8],
    /// The `config` payload's `_format_version` check, when a sliced scan already found its
    /// members (`json::scan`): no second pass over a large payload.
    pub(crate) config_format_version: Option<Result<(), String>>,
    pub(crate) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Lookup<'_> {
    /// The filter-config value first, then the first non-empty environment variable.
    pub(crate) fn get<'k>(&self, key: &'k str, env_names: &[&'k str]) -> Option<Raw<'k>> {
        if let Some(v) = self.obj.get(key) {
            if !v.is_null() {
                return Some(Raw {
                    value: v.clone(),
                    field: Field { key, env: None },
                });
            }
        }
        env_names.iter().find_map(|name| {
            (self.env)(name)
                .filter(|s| !s.trim().is_empty())
                .map(|s| Raw {
                    value: Value::String(s),
                    field: Field {
                        key,
                        env: Some(name),
                    },
                })
        })
    }

    pub(crate) fn bool(&self, key: &str, env: &[&str], default: bool) -> Result<bool, Fail> {
        match self.get(key, env) {
            None => Ok(default),
            Some(r) => parse_bool(&r.value)
                .ok_or(())
                .or_else(|_| err(r.field, "expected a boolean or \"on\"/\"off\"")),
        }
    }

    pub(crate) fn string<'k>(
        &self,
        key: &'k str,
        env: &[&'k str],
    ) -> Result<Option<(String, Field<'k>)>, Fail> {
        match self.get(key, env) {
            None => Ok(None),
            Some(Raw {
                value: Value::String(s),
                field,
            }) => {
                let s = s.trim().to_string();
                if s.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some((s, field)))
                }
            }
            Some(r) => err(r.field, "expected a string"),
        }
    }

    /// A non-negative integer, also accepted as a numeric string (environment variables).
    pub(crate) fn uint(
        &self,
        key: &str,
        env: &[&str],
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, Fail> {
        let Some(r) = self.get(key, env) else {
            return Ok(default);
        };
        let n = match &r.value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            Some(_) => err(r.field, format!("must be between {min} and {max}")),
            None => err(r.field, "expected a non-negative integer"),
        }
    }

    /// Seconds (integer or decimal) converted to milliseconds.
    pub(crate) fn seconds_ms(
        &self,
        key: &str,
        env: &[&str],
        default_s: u64,
        max_s: u64,
    ) -> Result<u64, Fail> {
        let Some(r) = self.get(key, env) else {
            return Ok(default_s * 1000);
        };
        // Read exactly as decimal text (`decimal.rs`: no float parser in the module).
        let text = match &r.value {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.trim().to_string()),
            _ => None,
        };
        let n = text.as_deref().and_then(crate::decimal::parse);
        match n.map(|d| (d.milli(), d.cmp_int(max_s))) {
            Some((Some(ms), order)) if order.is_le() => Ok(ms),
            Some(_) => err(
                r.field,
                format!("must be a number of seconds between 0 and {max_s}"),
            ),
            None => err(r.field, "expected a number of seconds"),
        }
    }

    pub(crate) fn secret(&self, key: &str, env: &[&str]) -> Result<Option<Secret>, Fail> {
        Ok(self.string(key, env)?.map(|(s, _)| Secret::new(s)))
    }
}

pub(crate) fn parse_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "yes" | "1" => Some(true),
            "off" | "false" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A JSON object, or a JSON string holding one (Kong 3.4 passes the filter config as a string).
pub(crate) fn object_or_json_string(v: Value) -> Option<Map> {
    match v {
        Value::Object(m) => Some(m),
        Value::String(s) => match crate::json::parse(s.as_bytes()) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        },
        _ => None,
    }
}
