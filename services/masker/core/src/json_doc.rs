//! A raw message's JSON as a Rust tree, read and written exactly as orjson does
//! (the masker used `orjson.loads` / `orjson.dumps`; ingest validated every
//! message with orjson, so a message orjson accepts must be accepted here and
//! mean the same thing).
//!
//! Parsing is sonic-rs's (its serde deserializer, into [`Json`]); what it
//! would do differently from orjson is settled around it:
//!
//! * **duplicate keys**: a Python dict keeps the *last* value at the *first*
//!   key's position, and so does [`Json::Object`] (normalised while parsing, so
//!   nothing ever reads an object with two copies of a key: a walk that masked
//!   one copy while the writer wrote the other would leak it);
//! * **nesting**: sonic-rs recurses and refuses 255 levels (orjson reads 1024
//!   and writes 254), so the depth is counted first, without recursion, and a
//!   document nested deeper than [`MAX_PARSE_DEPTH`] is never handed to it:
//!   the caller takes the fallback (orjson reads it, as before, and refuses past
//!   1024). No input can overflow the stack;
//! * **negative zero**: sonic-rs reads `-0` as a float and `-0.0` as `+0.0`;
//!   orjson reads `-0` as the int 0 and `-0.0` as `-0.0`. The depth scan spots
//!   a negative number whose digits are all zero and the caller takes the
//!   fallback too. No recorder sends either: the fallback is for correctness;
//! * integers beyond 64 bits become floats, `NaN`/`Infinity`, a BOM, trailing
//!   content, invalid UTF-8, control characters and lone surrogate escapes are
//!   refused: both agree (tests/unit/test_masker_json_doc.py checks each).
//!
//! A refusal never quotes the input (sonic-rs's own messages show a snippet of
//! it): [`ParseError`] names only what is wrong.
//!
//! Writing ([`write_json`]) escapes as orjson does (`"`, `\`, control
//! characters), writes other text as UTF-8 and floats in their shortest
//! round-trip form, always with a `.` or an exponent so that they read back as
//! floats.
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The deepest document parsed here (sonic-rs's serde limit is 255 levels;
/// orjson writes at most 254); a deeper one takes the fallback.
pub const MAX_PARSE_DEPTH: usize = 254;
/// orjson refuses to write containers nested this deep (or deeper).
pub const MAX_WRITE_DEPTH: usize = 255;

/// A JSON value as orjson's Python objects hold it.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// An integer that fits `i64` (Python `int`).
    Int(i64),
    /// An integer above `i64::MAX` that fits `u64` (a Python `int` too).
    UInt(u64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    /// Keys in first-seen order, each once (the last value of a repeated key).
    Object(Vec<(String, Json)>),
}

/// Dropped without recursion: a value may nest as deep as a page's DOM
/// (tests walk 20,000 levels), deeper than the stack allows frames.
impl Drop for Json {
    fn drop(&mut self) {
        let mut stack: Vec<Json> = Vec::new();
        take_nested(self, &mut stack);
        while let Some(mut child) = stack.pop() {
            take_nested(&mut child, &mut stack);
        } // `child` is dropped here with no containers left inside
    }
}

/// Moves the children of a container that holds containers onto `stack`.
#[inline]
fn take_nested(value: &mut Json, stack: &mut Vec<Json>) {
    match value {
        Json::Array(items) if items.iter().any(Json::is_container) => stack.append(items),
        Json::Object(pairs) if pairs.iter().any(|(_, v)| v.is_container()) => {
            stack.extend(pairs.drain(..).map(|(_, v)| v));
        }
        _ => {}
    }
}

/// Why a document was refused (no content quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON as orjson reads it.
    Invalid,
    /// Nested deeper than [`MAX_PARSE_DEPTH`], or holding a negative zero
    /// (which sonic-rs reads otherwise): read it with orjson instead.
    Fallback,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Invalid => f.write_str("not valid JSON"),
            ParseError::Fallback => f.write_str("too deep or a negative zero: read with orjson"),
        }
    }
}

/// Objects up to this many keys look a repeated key up by scanning.
const SCAN_KEYS_UP_TO: usize = 16;

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(match i64::try_from(v) {
            Ok(v) => Json::Int(v),
            Err(_) => Json::UInt(v),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Json>()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut pairs: Vec<(String, Json)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        // built only for a big object: where each key first stood
        let mut positions: Option<std::collections::HashMap<String, usize>> = None;
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Json>()?;
            let seen = match &mut positions {
                Some(positions) => positions.get(&key).copied(),
                None => pairs.iter().position(|(k, _)| *k == key),
            };
            match seen {
                // as a Python dict: the first key's place, the last value
                Some(at) => pairs[at].1 = value,
                None => {
                    if let Some(positions) = &mut positions {
                        positions.insert(key.clone(), pairs.len());
                    }
                    pairs.push((key, value));
                    if positions.is_none() && pairs.len() > SCAN_KEYS_UP_TO {
                        positions = Some(
                            pairs.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect(),
                        );
                    }
                }
            }
        }
        Ok(Json::Object(pairs))
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// What the scan before parsing found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scan {
    depth: usize,
    negative_zero: bool,
}

/// Counts the nesting (outside strings) and spots negative zeros, without parsing.
/// Stops at the first level past [`MAX_PARSE_DEPTH`].
fn scan(bytes: &[u8]) -> Scan {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut negative_zero = false;
    let mut i = 0;
    let n = bytes.len();
    while i < n {
        match bytes[i] {
            b'"' => {
                // skip the string: to the next unescaped quote
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[i.min(n)..]) {
                        Some(at) => {
                            i += at;
                            if bytes[i] == b'\\' {
                                i += 2;
                            } else {
                                break;
                            }
                        }
                        None => {
                            i = n;
                            break;
                        }
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > MAX_PARSE_DEPTH {
                        break;
                    }
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' => {
                // a number: are all its digits before any exponent zeros?
                let mut j = i + 1;
                let mut all_zero = j < n && bytes[j].is_ascii_digit();
                while j < n && (bytes[j].is_ascii_digit() || bytes[j] == b'.') {
                    if bytes[j].is_ascii_digit() && bytes[j] != b'0' {
                        all_zero = false;
                    }
                    j += 1;
                }
                negative_zero |= all_zero;
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Scan { depth: deepest, negative_zero }
}

/// Parses a document as orjson would (see the module doc).
pub fn parse(bytes: &[u8]) -> Result<Json, ParseError> {
    let found = scan(bytes);
    if found.depth > MAX_PARSE_DEPTH {
        return Err(ParseError::Fallback);
    }
    let parsed = sonic_rs::from_slice::<Json>(bytes).map_err(|_| ParseError::Invalid)?;
    if found.negative_zero {
        return Err(ParseError::Fallback);
    }
    Ok(parsed)
}

/// How deep containers nest in `value` (a scalar is 0, `[]` is 1), without recursing.
pub fn depth(value: &Json) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Json, usize)> = vec![(value, 0)];
    while let Some((current, level)) = stack.pop() {
        match current {
            Json::Array(items) => {
                deepest = deepest.max(level + 1);
                stack.extend(items.iter().filter(|v| v.is_container()).map(|v| (v, level + 1)));
            }
            Json::Object(pairs) => {
                deepest = deepest.max(level + 1);
                stack.extend(
                    pairs.iter().filter(|(_, v)| v.is_container()).map(|(_, v)| (v, level + 1)),
                );
            }
            _ => {}
        }
    }
    deepest
}

impl Json {
    /// An array or an object.
    #[inline]
    pub fn is_container(&self) -> bool {
        matches!(self, Json::Array(_) | Json::Object(_))
    }

    /// The value under `key` of an object (None for other values).
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(pairs) => obj_get(pairs, key),
            _ => None,
        }
    }

    /// The text of a string.
    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// `pairs[key]`.
#[inline]
pub fn obj_get<'a>(pairs: &'a [(String, Json)], key: &str) -> Option<&'a Json> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// `pairs[key]`, mutable.
#[inline]
pub fn obj_get_mut<'a>(pairs: &'a mut [(String, Json)], key: &str) -> Option<&'a mut Json> {
    pairs.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// `pairs[key] = value` (in place if present, appended otherwise, as a dict).
pub fn obj_set(pairs: &mut Vec<(String, Json)>, key: &str, value: Json) {
    match obj_get_mut(pairs, key) {
        Some(slot) => *slot = value,
        None => pairs.push((key.to_owned(), value)),
    }
}

// --- writing -------------------------------------------------------------------

/// Appends `value` as JSON (orjson's output, up to the spelling of floats).
/// Recurses: callers check [`depth`] against [`MAX_WRITE_DEPTH`] first.
pub fn write_json(out: &mut Vec<u8>, value: &Json) {
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Int(v) => out.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes()),
        Json::UInt(v) => out.extend_from_slice(itoa::Buffer::new().format(*v).as_bytes()),
        Json::Float(v) => write_float(out, *v),
        Json::Str(s) => write_str(out, s),
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, item);
            }
            out.push(b']');
        }
        Json::Object(pairs) => {
            out.push(b'{');
            for (i, (key, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_json(out, item);
            }
            out.push(b'}');
        }
    }
}

/// A finite float in its shortest round-trip form (`{:?}`: `100.0`, `1e300`,
/// `5e-324`), which always has a `.` or an exponent. A non-finite one (never
/// parsed, and no rule makes one) is written `null`, as orjson writes it.
fn write_float(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        use std::io::Write;
        let _ = write!(out, "{v:?}");
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Escapes `"`, `\` and the control characters below U+0020, as orjson does.
fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The JSON text of a value (see [`write_json`]).
pub fn to_vec(value: &Json) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_json(&mut out, value);
    out
}

/// Python's `repr(float)` (which `str()` of a JSON float is): the shortest
/// round-trip digits, in exponent form below 1e-4 or from 1e16 on
/// (`1e-05`, `1e+16`), else positional with at least one decimal (`100.0`).
pub fn py_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".to_owned() } else { "-inf".to_owned() };
    }
    // `{:e}` is the shortest round-trip digits too: "d.ddde±x"
    let sci = format!("{:e}", v.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if v.is_sign_negative() { "-" } else { "" };
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let esign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{first}{fraction}e{esign}{:02}", exponent.abs())
    }
}
