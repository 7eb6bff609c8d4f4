//! The filter's one JSON tree, for the small documents it reads and writes whole (settings,
//! Admin API and store answers, lock and election objects, JWT claims, GCS metadata). It replaces
//! `serde_json::Value`, whose parser, printer and float tables were 43 KB of the packaged module
//! (BENCHMARKS.md, "Issue 25, lean5").
//!
//! * Acceptance is `scan`'s (RFC 8259 as serde_json reads it: UTF-8, no lone surrogates, depth
//!   127) plus serde_json's number range: a number that rounds past `f64::MAX` is refused.
//! * Objects keep their members sorted by key, the last of duplicate keys winning: the order and
//!   the choice of serde_json's `BTreeMap`, so what is written is what serde_json wrote.
//! * Numbers keep their text. Integers within `i64`/`u64` in canonical form (what the filter
//!   writes) print as serde_json printed them; other number text is written back as read, where
//!   serde_json would have printed the nearest `f64` (`1.50` for its `1.5`).

use std::fmt;

use super::scan::{validate_all, ErrorKind, ScanError};

/// A JSON value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

/// A number, as its (valid) JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Number(String);

impl Number {
    /// The number as a `u64` when its text is a non-negative integer in range.
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }

    /// The number as an `i64` when its text is an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        self.0.parse().ok()
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object's members, sorted by key (binary search; the filter's objects are small).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Map {
    entries: Vec<(String, Value)>,
}

impl Map {
    pub fn new() -> Map {
        Map::default()
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        let i = self.find(key).ok()?;
        self.entries.get(i).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        let i = self.find(key).ok()?;
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key`; the value it replaces, if any.
    pub fn insert(&mut self, key: String, value: Value) -> Option<Value> {
        match self.find(&key) {
            Ok(i) => self
                .entries
                .get_mut(i)
                .map(|(_, v)| std::mem::replace(v, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// `insert` for `json!`'s members: the key copied and the replaced value dropped here, once,
    /// not at each member of each `json!` (BENCHMARKS.md, "Issue 25, lean7").
    #[inline(never)]
    pub fn put(&mut self, key: &str, value: Value) {
        self.insert(key.to_string(), value);
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.find(key).ok()?;
        Some(self.entries.remove(i).1)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&String, &mut Value) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    pub fn iter(&self) -> <&Map as IntoIterator>::IntoIter {
        self.into_iter()
    }

    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&String, &mut Value)> + ExactSizeIterator {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = &mut Value> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

impl IntoIterator for Map {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// A member as a pair of references (the item of `&Map`'s iterator, as serde_json's).
fn pair(e: &(String, Value)) -> (&String, &Value) {
    (&e.0, &e.1)
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a String, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Value)>,
        fn(&'a (String, Value)) -> (&'a String, &'a Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(pair)
    }
}

impl FromIterator<(String, Value)> for Map {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Map {
        let mut m = Map::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl Value {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.as_object_mut()?.get_mut(key)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_array_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Value::String(_))
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    /// The value, leaving `Null` in its place.
    pub fn take(&mut self) -> Value {
        std::mem::take(self)
    }
}

/// What a missing member or element reads as through `[]` (as serde_json's `Index`).
static NULL: Value = Value::Null;

impl std::ops::Index<&str> for Value {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NULL)
    }
}

impl std::ops::Index<usize> for Value {
    type Output = Value;
    fn index(&self, i: usize) -> &Value {
        self.as_array().and_then(|a| a.get(i)).unwrap_or(&NULL)
    }
}

/// Tests: `v["k"] = ...` as with serde_json (a missing member is added; `Null` becomes an object).
#[cfg(test)]
impl std::ops::IndexMut<&str> for Value {
    fn index_mut(&mut self, key: &str) -> &mut Value {
        if self.is_null() {
            *self = Value::Object(Map::new());
        }
        let Value::Object(m) = self else {
            panic!("not an object");
        };
        if !m.contains_key(key) {
            m.insert(key.to_string(), Value::Null);
        }
        m.get_mut(key).unwrap()
    }
}

#[cfg(test)]
impl std::ops::IndexMut<usize> for Value {
    fn index_mut(&mut self, i: usize) -> &mut Value {
        &mut self.as_array_mut().unwrap()[i]
    }
}

/// Tests: the same value as serde_json's (through this module's text).
#[cfg(test)]
pub fn to_serde(v: &Value) -> serde_json::Value {
    serde_json::from_slice(&to_vec(v)).unwrap()
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::String(s.clone())
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Value {
        Value::Object(m)
    }
}

/// Numbers from integers (and, in tests, floats: the module writes none).
macro_rules! from_number {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Value {
                Value::Number(Number(n.to_string()))
            }
        }
    )*};
}

from_number!(u64, u32, i64, i32, usize);

#[cfg(test)]
from_number!(f64);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Value {
        o.map_or(Value::Null, Into::into)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::Array(v.into_iter().map(Into::into).collect())
    }
}

impl<T: Clone + Into<Value>> From<&[T]> for Value {
    fn from(v: &[T]) -> Value {
        Value::Array(v.iter().cloned().map(Into::into).collect())
    }
}

/// A value `json!` can take by reference (as `serde_json::json!` does).
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::String(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::String(self.clone())
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl<T: ToValue> ToValue for [T] {
    fn to_value(&self) -> Value {
        Value::Array(self.iter().map(ToValue::to_value).collect())
    }
}

impl<T: ToValue> ToValue for Vec<T> {
    fn to_value(&self) -> Value {
        self.as_slice().to_value()
    }
}

macro_rules! to_value_via_from {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::from(*self)
            }
        }
    )*};
}

to_value_via_from!(u64, u32, i64, i32, usize);

#[cfg(test)]
to_value_via_from!(f64);

/// Builds a [`Value`] from JSON-like syntax: `json!({"k": expr, "o": {...}, "a": [...]})`, every
/// leaf an expression of a [`ToValue`] type, taken by reference (a small `serde_json::json!`).
#[macro_export]
macro_rules! json {
    (null) => { $crate::json::Value::Null };
    ([ $($body:tt)* ]) => { $crate::json::Value::Array($crate::json!(@elems [] $($body)*)) };
    ({ $($body:tt)* }) => {{
        #[allow(unused_mut)]
        let mut m = $crate::json::Map::new();
        $crate::json!(@members m $($body)*);
        $crate::json::Value::Object(m)
    }};
    (@elems [$($done:expr),*]) => { vec![$($done),*] };
    (@elems [$($done:expr),*] {$($v:tt)*} $(, $($rest:tt)*)?) => {
        $crate::json!(@elems [$($done,)* $crate::json!({$($v)*})] $($($rest)*)?)
    };
    (@elems [$($done:expr),*] [$($v:tt)*] $(, $($rest:tt)*)?) => {
        $crate::json!(@elems [$($done,)* $crate::json!([$($v)*])] $($($rest)*)?)
    };
    (@elems [$($done:expr),*] null $(, $($rest:tt)*)?) => {
        $crate::json!(@elems [$($done,)* $crate::json::Value::Null] $($($rest)*)?)
    };
    (@elems [$($done:expr),*] $v:expr $(, $($rest:tt)*)?) => {
        $crate::json!(@elems [$($done,)* $crate::json::ToValue::to_value(&$v)] $($($rest)*)?)
    };
    (@members $m:ident) => {};
    (@members $m:ident $k:tt : {$($v:tt)*} $(, $($rest:tt)*)?) => {
        $m.put(::core::convert::AsRef::<str>::as_ref(&$k), $crate::json!({$($v)*}));
        $crate::json!(@members $m $($($rest)*)?);
    };
    (@members $m:ident $k:tt : [$($v:tt)*] $(, $($rest:tt)*)?) => {
        $m.put(::core::convert::AsRef::<str>::as_ref(&$k), $crate::json!([$($v)*]));
        $crate::json!(@members $m $($($rest)*)?);
    };
    (@members $m:ident $k:tt : null $(, $($rest:tt)*)?) => {
        $m.put(::core::convert::AsRef::<str>::as_ref(&$k), $crate::json::Value::Null);
        $crate::json!(@members $m $($($rest)*)?);
    };
    (@members $m:ident $k:tt : $v:expr $(, $($rest:tt)*)?) => {
        $m.put(::core::convert::AsRef::<str>::as_ref(&$k), $crate::json::ToValue::to_value(&$v));
        $crate::json!(@members $m $($($rest)*)?);
    };
    ($e:expr) => { $crate::json::ToValue::to_value(&$e) };
}

/// Parses one JSON value (see the module documentation for what is accepted). Errors name a
/// category and byte offset, never the input.
pub fn parse(text: &[u8]) -> Result<Value, ScanError> {
    validate_all(text)?;
    let mut b = Builder { t: text, i: 0 };
    b.value()
}

/// Builds the tree from text `scan` has validated; `None` only where the two disagreed.
struct Builder<'a> {
    t: &'a [u8],
    i: usize,
}

impl Builder<'_> {
    fn fail(&self, kind: ErrorKind) -> ScanError {
        ScanError {
            kind,
            offset: self.i,
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.i = super::members::skip_ws(self.t, self.i);
        self.t.get(self.i).copied()
    }

    fn value(&mut self) -> Result<Value, ScanError> {
        let Some(b) = self.peek() else {
            return Err(self.fail(ErrorKind::UnexpectedEnd));
        };
        let (v, len) = match b {
            b'{' => return self.object(),
            b'[' => return self.array(),
            b'"' => return self.string().map(Value::String),
            b't' => (Value::Bool(true), 4),
            b'f' => (Value::Bool(false), 5),
            b'n' => (Value::Null, 4),
            _ => return self.number(),
        };
        self.i += len;
        Ok(v)
    }

    fn number(&mut self) -> Result<Value, ScanError> {
        let start = self.i;
        while self
            .t
            .get(self.i)
            .is_some_and(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.i += 1;
        }
        let text = self.t.get(start..self.i).unwrap_or_default();
        if out_of_range(text) {
            self.i = start;
            return Err(self.fail(ErrorKind::NumberOutOfRange));
        }
        match std::str::from_utf8(text) {
            Ok(s) if !s.is_empty() => Ok(Value::Number(Number(s.to_string()))),
            _ => Err(self.fail(ErrorKind::InvalidNumber)),
        }
    }

    fn array(&mut self) -> Result<Value, ScanError> {
        self.i += 1;
        let mut out = Vec::new();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(out));
        }
        loop {
            out.push(self.value()?);
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(out));
                }
                _ => return Err(self.fail(ErrorKind::ExpectedCommaOrEnd)),
            }
        }
    }

    fn object(&mut self) -> Result<Value, ScanError> {
        self.i += 1;
        let mut out = Map::new();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(out));
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.fail(ErrorKind::KeyMustBeString));
            }
            let key = self.string()?;
            if self.peek() != Some(b':') {
                return Err(self.fail(ErrorKind::ExpectedColon));
            }
            self.i += 1;
            let v = self.value()?;
            out.insert(key, v);
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Object(out));
                }
                _ => return Err(self.fail(ErrorKind::ExpectedCommaOrEnd)),
            }
        }
    }

    /// At `"`: the string, unescaped; after it, `self.i` is past the closing quote.
    fn string(&mut self) -> Result<String, ScanError> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let start = self.i;
            while self.t.get(self.i).is_some_and(|&b| b != b'"' && b != b'\\') {
                self.i += 1;
            }
            out.extend_from_slice(self.t.get(start..self.i).unwrap_or_default());
            match self.t.get(self.i) {
                Some(b'"') => break,
                Some(_) => self.escape(&mut out)?,
                None => return Err(self.fail(ErrorKind::UnexpectedEnd)),
            }
        }
        self.i += 1;
        String::from_utf8(out).map_err(|_| self.fail(ErrorKind::InvalidUtf8))
    }

    /// At `\`: appends the escaped character (a surrogate pair read whole).
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), ScanError> {
        let (c, len) =
            super::escape(self.t, self.i + 1).ok_or(self.fail(ErrorKind::InvalidEscape))?;
        self.i += 1 + len;
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }
}

/// `2^1024 - 2^970`, the midpoint between `f64::MAX` and `2^1024`, as `0.DIGITS × 10^309`: a
/// number at or above it rounds to infinity, which serde_json refuses ("number out of range").
const OVERFLOW_DIGITS: &[u8] = b"17976931348623158079372897140530341507993413271003782693617377898\
044496829276475094664901797758720709633028641669288791094655554785194040263065748867150582068";

/// Whether the number text (valid) is at or beyond the overflow threshold. Exact, without floats:
/// the significant digits and the decimal exponent are compared with the threshold's.
fn out_of_range(text: &[u8]) -> bool {
    let mantissa_end = text
        .iter()
        .position(|b| matches!(b, b'e' | b'E'))
        .unwrap_or(text.len());
    let (mantissa, exp) = text.split_at(mantissa_end);
    let exp = exponent(exp.get(1..).unwrap_or_default());
    let int_digits = mantissa
        .iter()
        .take_while(|&&b| b != b'.')
        .filter(|b| b.is_ascii_digit())
        .count();
    let digits = mantissa.iter().filter(|b| b.is_ascii_digit());
    let leading = digits.clone().take_while(|&&b| b == b'0').count();
    let significant: Vec<u8> = digits.skip(leading).copied().collect();
    let Some(last) = significant.iter().rposition(|&b| b != b'0') else {
        return false; // zero, whatever its exponent
    };
    let significant = significant.get(..=last).unwrap_or_default();
    // value = 0.significant × 10^point
    let point = i64::try_from(int_digits)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(leading).unwrap_or(i64::MAX))
        .saturating_add(exp);
    match point.cmp(&309) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => significant >= OVERFLOW_DIGITS,
    }
}

/// An exponent's value (sign and digits), saturating.
fn exponent(t: &[u8]) -> i64 {
    let (neg, digits) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, t),
    };
    let n = digits.iter().fold(0i64, |acc, &d| {
        acc.saturating_mul(10)
            .saturating_add(i64::from(d.wrapping_sub(b'0')))
    });
    if neg {
        -n
    } else {
        n
    }
}

/// Compact JSON text, as serde_json's `to_vec` writes it.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(v, &mut out);
    out
}

/// Compact JSON text, as serde_json's `to_string` writes it.
pub fn to_text(v: &Value) -> String {
    String::from_utf8(to_vec(v)).unwrap_or_default()
}

fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.0.as_bytes()),
        Value::String(s) => write_string(s, out),
        Value::Array(a) => {
            out.push(b'[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(e, out);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            out.push(b'{');
            for (i, (k, e)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write(e, out);
            }
            out.push(b'}');
        }
    }
}

/// A string with serde_json's escapes: `\"`, `\\`, the five short control escapes, `\u00xx`
/// (lower-case hex) for the other control characters; everything else as is.
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\t' => b't',
            b'\r' => b'r',
            0x08 => b'b',
            0x0c => b'f',
            0..0x20 => b'u',
            _ => {
                out.push(b);
                continue;
            }
        };
        out.extend_from_slice(&[b'\\', short]);
        if short == b'u' {
            let hex = |n: u8| HEX.get(usize::from(n & 15)).copied().unwrap_or(b'0');
            out.extend_from_slice(&[b'0', b'0', hex(b >> 4), hex(b)]);
        }
    }
    out.push(b'"');
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_text(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_sorted_and_the_last_duplicate_wins_as_in_serde_json() {
        let text = br#"{"b":1,"a":{"y":[true,null],"x":"\u00e9\n"},"b":2,"":-3}"#;
        let v = parse(text).unwrap();
        let serde: serde_json::Value = serde_json::from_slice(text).unwrap();
        assert_eq!(to_vec(&v), serde_json::to_vec(&serde).unwrap());
        assert_eq!(v["b"].as_u64(), Some(2));
        assert_eq!(v[""].as_i64(), Some(-3));
        assert_eq!(v["a"]["y"][0].as_bool(), Some(true));
        assert!(v["a"]["y"][1].is_null() && v["missing"][7].is_null());
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["", "a", "b"]);
    }

    #[test]
    fn map_edits_keep_the_order() {
        let mut m = Map::new();
        assert_eq!(m.insert("k".into(), Value::from(1u64)), None);
        m.insert("c".into(), Value::Null);
        assert_eq!(m.insert("k".into(), "v".into()), Some(Value::from(1u64)));
        m.retain(|k, _| k != "c");
        assert_eq!(to_text(&Value::Object(m.clone())), r#"{"k":"v"}"#);
        assert_eq!(m.remove("k"), Some(Value::from("v")));
        assert!(m.is_empty() && m.remove("k").is_none());
    }

    #[test]
    fn the_macro_builds_what_serde_jsons_builds() {
        let name = String::from("n\"1");
        let none: Option<u64> = None;
        let ours = crate::json!({
            "name": name,
            "n": 7u64,
            "neg": -2i64,
            "list": [1u32, "two", null, {"deep": [false]}],
            "none": none,
            "some": Some("x"),
            "null": null,
        });
        let serde = serde_json::json!({
            "name": name, "n": 7, "neg": -2, "list": [1, "two", null, {"deep": [false]}],
            "none": null, "some": "x", "null": null,
        });
        assert_eq!(to_vec(&ours), serde_json::to_vec(&serde).unwrap());
    }

    #[test]
    fn errors_name_a_category_and_offset_only() {
        let e = parse(br#"{"secret": 1e999}"#).unwrap_err();
        assert_eq!((e.kind, e.offset), (ErrorKind::NumberOutOfRange, 11));
        assert_eq!(
            e.to_string(),
            "not valid JSON (number out of range at byte 11)"
        );
        let e = parse(br#"{"secret": "x",}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TrailingComma);
        assert!(!e.to_string().contains("secret"));
    }
}
