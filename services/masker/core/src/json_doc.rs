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
//! * **nesting**: sonic-rs's deserializer recurses, counting: past 254 levels
//!   ([`MAX_PARSE_DEPTH`]; orjson reads 1024 and writes 254) it refuses the
//!   document before its stack can overflow, and the caller takes the fallback
//!   (orjson reads it, as before, and refuses past 1024). The parse records
//!   the depth it saw ([`Parsed::depth`]);
//! * **negative zero**: sonic-rs reads `-0` as a float and `-0.0` as `+0.0`;
//!   orjson reads `-0` as the int 0 and `-0.0` as `-0.0`. When the parse met a
//!   float zero, the text is scanned for a negative number whose digits are
//!   all zero, and if there is one the caller takes the fallback too. No
//!   recorder sends either: the fallback is for correctness;
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
use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// The deepest document parsed here (sonic-rs's serde limit is 255 levels;
/// orjson writes at most 254); a deeper one takes the fallback.
pub const MAX_PARSE_DEPTH: usize = 254;
/// orjson refuses to write containers nested this deep (or deeper).
pub const MAX_WRITE_DEPTH: usize = 255;

/// A string of a parsed document: borrowed from the raw bytes when it has no
/// escapes (most keys and texts: no copy), owned when unescaped or changed.
pub type Str<'a> = Cow<'a, str>;

/// An object's pairs.
pub type Pairs<'a> = [(Str<'a>, Json<'a>)];

/// A JSON value as orjson's Python objects hold it.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// An integer that fits `i64` (Python `int`).
    Int(i64),
    /// An integer above `i64::MAX` that fits `u64` (a Python `int` too).
    UInt(u64),
    Float(f64),
    Str(Str<'a>),
    Array(Vec<Json<'a>>),
    /// Keys in first-seen order, each once (the last value of a repeated key).
    Object(Vec<(Str<'a>, Json<'a>)>),
}

/// Drops a value without recursion: one built from Python objects may nest as
/// deep as a page's DOM (tests walk 20,000 levels), deeper than the stack
/// allows frames. (A parsed one nests at most [`MAX_PARSE_DEPTH`] levels and
/// may be dropped as usual.)
pub fn dispose(value: Json<'_>) {
    let mut stack: Vec<Json<'_>> = vec![value];
    while let Some(mut child) = stack.pop() {
        take_nested(&mut child, &mut stack);
    } // `child` is dropped here with no containers left inside
}

/// Moves the children of a container that holds containers onto `stack`.
#[inline]
fn take_nested<'a>(value: &mut Json<'a>, stack: &mut Vec<Json<'a>>) {
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

thread_local! {
    /// The parse under way on this thread: its nesting now, the deepest it
    /// reached, and whether it met a float zero (maybe a negative one misread).
    static PARSING: std::cell::Cell<(usize, usize, bool)> = const { std::cell::Cell::new((0, 0, false)) };
}

#[inline]
fn enter() {
    PARSING.with(|p| {
        let (now, deepest, zero) = p.get();
        p.set((now + 1, deepest.max(now + 1), zero));
    });
}

#[inline]
fn leave() {
    PARSING.with(|p| {
        let (now, deepest, zero) = p.get();
        p.set((now.saturating_sub(1), deepest, zero));
    });
}

/// Objects up to this many keys look a repeated key up by scanning.
const SCAN_KEYS_UP_TO: usize = 16;

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(match i64::try_from(v) {
            Ok(v) => Json::Int(v),
            Err(_) => Json::UInt(v),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json<'de>, E> {
        if v == 0.0 {
            PARSING.with(|p| {
                let (now, deepest, _) = p.get();
                p.set((now, deepest, true));
            });
        }
        Ok(Json::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        enter();
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Json<'de>>()? {
            items.push(item);
        }
        leave();
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        enter();
        let mut pairs: Vec<(Str<'de>, Json<'de>)> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        // built only for a big object: where each key first stood
        let mut positions: Option<std::collections::HashMap<Str<'de>, usize>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value::<Json<'de>>()?;
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
        leave();
        Ok(Json::Object(pairs))
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json<'de>, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// An object key, borrowed from the input when it has no escapes (serde's own
/// `Cow<str>` always copies).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Str<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Str<'de>, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Str<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
        Ok(Cow::Owned(v))
    }
}

/// Written by sonic-rs's serializer (its SIMD string escaping; floats in their
/// shortest round-trip form, which orjson reads back as the same floats).
impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Int(v) => serializer.serialize_i64(*v),
            Json::UInt(v) => serializer.serialize_u64(*v),
            // never parsed, and no rule makes one: written `null`, as orjson writes it
            Json::Float(v) if !v.is_finite() => serializer.serialize_unit(),
            Json::Float(v) => serializer.serialize_f64(*v),
            Json::Str(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(pairs) => {
                let mut map = serializer.serialize_map(Some(pairs.len()))?;
                for (key, item) in pairs {
                    map.serialize_entry(key.as_ref(), item)?;
                }
                map.end()
            }
        }
    }
}

/// A parsed document and how deep it nests (a scalar is 0, `[]` is 1).
pub struct Parsed<'a> {
    pub value: Json<'a>,
    pub depth: usize,
}

/// A negative number whose digits before any exponent are all zeros (`-0`,
/// `-0.0`, `-0e5`), outside strings: what sonic-rs reads otherwise than orjson.
fn has_negative_zero(bytes: &[u8]) -> bool {
    let mut i = 0;
    let n = bytes.len();
    while i < n {
        match bytes[i] {
            b'"' => {
                // skip the string: to the next unescaped quote
                i += 1;
                while let Some(at) = memchr::memchr2(b'"', b'\\', &bytes[i.min(n)..]) {
                    i += at;
                    if bytes[i] == b'"' {
                        break;
                    }
                    i += 2;
                }
            }
            b'-' => {
                let mut j = i + 1;
                let mut all_zero = j < n && bytes[j].is_ascii_digit();
                while j < n && (bytes[j].is_ascii_digit() || bytes[j] == b'.') {
                    all_zero &= bytes[j] == b'0' || bytes[j] == b'.';
                    j += 1;
                }
                if all_zero {
                    return true;
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// Parses a document as orjson would (see the module doc).
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, ParseError> {
    PARSING.with(|p| p.set((0, 0, false)));
    let parsed = sonic_rs::from_slice::<Json>(bytes);
    let (_, depth, zero) = PARSING.with(|p| p.get());
    let value = match parsed {
        Ok(value) => value,
        // sonic-rs's depth limit: orjson reads up to 1024 levels
        Err(_) if depth >= MAX_PARSE_DEPTH => return Err(ParseError::Fallback),
        Err(_) => return Err(ParseError::Invalid),
    };
    if zero && has_negative_zero(bytes) {
        return Err(ParseError::Fallback);
    }
    Ok(Parsed { value, depth })
}

/// How deep containers nest in `value` (a scalar is 0, `[]` is 1), without recursing.
pub fn depth(value: &Json<'_>) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Json<'_>, usize)> = vec![(value, 0)];
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

impl<'a> Json<'a> {
    /// An array or an object.
    #[inline]
    pub fn is_container(&self) -> bool {
        matches!(self, Json::Array(_) | Json::Object(_))
    }

    /// The value under `key` of an object (None for other values).
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
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
pub fn obj_get<'p, 'a>(pairs: &'p Pairs<'a>, key: &str) -> Option<&'p Json<'a>> {
    pairs.iter().find(|(k, _)| k.as_ref() == key).map(|(_, v)| v)
}

/// `pairs[key]`, mutable.
#[inline]
pub fn obj_get_mut<'p, 'a>(pairs: &'p mut Pairs<'a>, key: &str) -> Option<&'p mut Json<'a>> {
    pairs.iter_mut().find(|(k, _)| k.as_ref() == key).map(|(_, v)| v)
}

/// `pairs[key] = value` (in place if present, appended otherwise, as a dict).
pub fn obj_set<'a>(pairs: &mut Vec<(Str<'a>, Json<'a>)>, key: &'static str, value: Json<'a>) {
    match obj_get_mut(pairs, key) {
        Some(slot) => *slot = value,
        None => pairs.push((Cow::Borrowed(key), value)),
    }
}

// --- writing -------------------------------------------------------------------

/// Appends `value` as JSON (see the `Serialize` impl). Recurses: callers
/// check [`depth`] against [`MAX_WRITE_DEPTH`] first, or hold a parsed value.
pub fn write_json(out: &mut Vec<u8>, value: &Json<'_>) {
    // writing into memory cannot fail, and every float is finite
    let _ = sonic_rs::to_writer(out, value);
}

/// The JSON text of a value (see [`write_json`]).
pub fn to_vec(value: &Json<'_>) -> Vec<u8> {
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
