//! The word rules of `services/masker/sensitivity.py`: which field names, keys
//! and attribute names name a secret, and the node bits of rrweb's marker
//! classes. The word lists stay in Python (they are configuration read by
//! settings); the default secret names are compiled here once.
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use pyo3::prelude::*;
use pyo3::types::{PyFrozenSet, PyString, PyTuple};

use crate::flags::{F_BLOCK, F_IGNORE, F_MASK};

/// The one list of secret words: field names and ids, URL parameter keys,
/// payload keys and attribute names are all checked against it (with the card
/// and bank words below). Anchored on Sentry Relay's default password rule
/// (relay-pii PASSWORD_KEY_REGEX), the keywords of gitleaks' generic-api-key
/// rule plus session, cookie, signature and anti-forgery names. Names of 4+
/// characters match as substrings of the name with separators removed; shorter
/// ones and those in `WHOLE_WORD_NAMES` must be a whole word ("pin" does not
/// match "shipping" nor "auth" "author").
pub const SECRET_WORDS: &[&str] = &[
    "password", "passwd", "passphrase", "passcode", "pass", "pwd", "pw", "secret", "token",
    "apikey", "api_key", "accesskey", "access_key", "privatekey", "private_key", "auth",
    "authorization", "authenticity", "credential", "bearer", "session", "sessid", "sid",
    "cookie", "signature", "sig", "csrf", "xsrf", "jwt", "otp", "twofactor", "hmac", "pin",
];
/// Card and bank words, sensitive as field names (with `SECRET_WORDS`).
pub const CARD_AND_BANK_WORDS: &[&str] = &[
    "card", "ccnum", "cvv", "cvc", "csc", "cvn", "iban", "ssn", "securitycode",
    "accountnumber", "routing", "taxid",
];
/// `SECRET_WORDS` then `CARD_AND_BANK_WORDS`: the deployment's default name list.
pub static DEFAULT_SENSITIVE_NAMES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| SECRET_WORDS.iter().chain(CARD_AND_BANK_WORDS).copied().collect());
/// 4+ letter words that are parts of common harmless words ("author", "compass").
pub const WHOLE_WORD_NAMES: &[&str] = &["auth", "pass"];
/// Weak secret words: a value under them is a secret only if it looks generated.
pub const WEAK_SECRET_WORDS: &[&str] = &["key", "api", "access", "creds"];
/// Names longer than this are never weak secrets (and were never cached in Python).
pub const MAX_CACHED_NAME_CHARS: usize = 256;
/// Autocomplete tokens of secret fields (lower case; compared ignoring ASCII case).
pub const SENSITIVE_AUTOCOMPLETE: &[&str] = &["current-password", "new-password", "one-time-code"];
/// Autocomplete tokens starting with this are card fields (cc-number, cc-csc, cc-exp*, cc-name...).
pub const SENSITIVE_AUTOCOMPLETE_PREFIX: &str = "cc-";

/// A name list split for matching: substring names and whole-word names, with
/// one automaton finding any long name in a single pass.
#[derive(Debug, Clone, Default)]
pub struct SplitNames {
    pub long: Vec<String>,
    pub short: HashSet<String>,
    finder: Option<AhoCorasick>,
}

impl SplitNames {
    /// Whether `value` contains a long name or has a short one as a whole word
    /// (as [`name_is_sensitive`] with these names).
    pub fn matches(&self, value: &str) -> bool {
        if let Some(finder) = &self.finder {
            let found = with_compact(value, |compact| finder.is_match(compact));
            if found {
                return true;
            }
        }
        short_word_matches(value, &self.short)
    }
}

/// Calls `f` with [`compact_name`] of `value`, on the stack for short ASCII names.
fn with_compact<R>(value: &str, f: impl FnOnce(&str) -> R) -> R {
    if value.len() <= 256 && value.is_ascii() {
        let mut buf = [0u8; 256];
        let mut n = 0;
        for b in value.bytes() {
            let b = b.to_ascii_lowercase();
            if b.is_ascii_alphanumeric() {
                buf[n] = b;
                n += 1;
            }
        }
        return f(std::str::from_utf8(&buf[..n]).unwrap_or(""));
    }
    f(&compact_name(value))
}

static SECRET_NAMES: LazyLock<SplitNames> =
    LazyLock::new(|| split_names(DEFAULT_SENSITIVE_NAMES.iter().copied()));
static WEAK_NAMES: LazyLock<HashSet<String>> =
    LazyLock::new(|| WEAK_SECRET_WORDS.iter().map(|w| (*w).to_owned()).collect());

/// The default secret names, split (`SECRET_LONG_NAMES`, `SECRET_SHORT_NAMES`).
pub fn secret_names() -> &'static SplitNames {
    &SECRET_NAMES
}

/// A name lower-cased (as Python's `str.lower`) with every character other than
/// `a-z0-9` dropped.
pub fn compact_name(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    if value.is_ascii() {
        out.extend(
            value.bytes().map(|b| b.to_ascii_lowercase()).filter(u8::is_ascii_alphanumeric).map(char::from),
        );
    } else {
        out.extend(
            value.chars().flat_map(char::to_lowercase).filter(char::is_ascii_alphanumeric),
        );
    }
    out
}

/// Calls `found` with each word of a name as `[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+`
/// reads it ("authToken" -> "auth", "Token"; "APIKey" -> "API", "Key");
/// stops when `found` returns true. Digits are ASCII ones: a word with another
/// script's digits never equals a listed (ASCII) name.
fn any_camel_word(value: &str, mut found: impl FnMut(&str) -> bool) -> bool {
    let b = value.as_bytes();
    let n = b.len();
    let mut i = 0;
    while i < n {
        let c = b[i];
        let start = i;
        if c.is_ascii_lowercase() || (c.is_ascii_uppercase() && i + 1 < n && b[i + 1].is_ascii_lowercase()) {
            i += 1;
            while i < n && b[i].is_ascii_lowercase() {
                i += 1;
            }
        } else if c.is_ascii_uppercase() {
            while i < n && b[i].is_ascii_uppercase() {
                i += 1;
            }
            if i < n && b[i].is_ascii_lowercase() {
                i -= 1; // the last capital starts the next word
            }
        } else if c.is_ascii_digit() {
            while i < n && b[i].is_ascii_digit() {
                i += 1;
            }
        } else {
            i += 1;
            continue;
        }
        if found(&value[start..i]) {
            return true;
        }
    }
    false
}

/// True if a field name/id contains a long name or has a short one as a whole
/// word. `long`/`short` are already lower-cased without separators.
pub fn name_is_sensitive(value: &str, long: &[String], short: &HashSet<String>) -> bool {
    if !long.is_empty() && with_compact(value, |compact| long.iter().any(|name| compact.contains(name.as_str()))) {
        return true;
    }
    short_word_matches(value, short)
}

fn short_word_matches(value: &str, short: &HashSet<String>) -> bool {
    if short.is_empty() {
        return false;
    }
    let mut lowered = String::new();
    any_camel_word(value, |word| {
        lowered.clear();
        lowered.extend(word.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        short.contains(lowered.as_str())
    })
}

/// (substring names, whole-word names) of a name list, lower-cased without separators.
pub fn split_names<'a>(names: impl IntoIterator<Item = &'a str>) -> SplitNames {
    let mut split = SplitNames::default();
    for name in names {
        let n = compact_name(name);
        let whole_word = WHOLE_WORD_NAMES.contains(&n.as_str());
        if n.len() >= 4 && !whole_word {
            if !split.long.contains(&n) {
                split.long.push(n);
            }
        } else if !n.is_empty() {
            split.short.insert(n);
        }
    }
    if !split.long.is_empty() {
        split.finder = AhoCorasick::builder()
            .kind(Some(AhoCorasickKind::DFA))
            .build(&split.long)
            .ok();
    }
    split
}

/// True if a URL parameter, payload key or attribute name names a secret word.
pub fn key_is_secret(key: &str) -> bool {
    SECRET_NAMES.matches(key)
}

/// True if a key has a weak secret word (`key`, `api`...) as a whole word: its
/// value is a secret if it looks generated.
pub fn key_is_weak_secret(key: &str) -> bool {
    if key.chars().count() > MAX_CACHED_NAME_CHARS {
        return false;
    }
    short_word_matches(key, &WEAK_NAMES)
}

/// Python's `str.isspace` (Unicode White_Space plus the separators \x1c-\x1f).
#[inline]
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Bits of rrweb's `rr-block`/`rr-mask`/`rr-ignore` classes in a class attribute.
pub fn class_marks(cls: &str) -> u64 {
    let mut bits = 0;
    for token in cls.split(py_isspace) {
        match token {
            "rr-block" => bits |= F_BLOCK,
            "rr-mask" => bits |= F_MASK,
            "rr-ignore" => bits |= F_IGNORE,
            _ => {}
        }
    }
    bits
}

/// Bits of a `data-recording-ignore` attribute value (`None`: not a string).
/// Smartsupp: "events" records nothing inside, "mask" masks typed input; any
/// other value is an unknown intent to hide something: mask.
pub fn recording_ignore_marks(marker: Option<&str>) -> u64 {
    match marker {
        Some(m) if m.trim_matches(py_isspace).to_lowercase() == "events" => F_BLOCK,
        _ => F_MASK,
    }
}

// --- the Python face ---------------------------------------------------------

/// Name lists the Python face was given, compiled, by the identity of the
/// (immutable, long-lived: a policy's) tuple and frozenset; a few at a time.
type CompiledNames = (Py<PyAny>, Py<PyAny>, Arc<SplitNames>);
static COMPILED: Mutex<Vec<CompiledNames>> = Mutex::new(Vec::new());
const MAX_COMPILED: usize = 32;

fn compiled_names(long: &Bound<'_, PyAny>, short: &Bound<'_, PyAny>) -> PyResult<Arc<SplitNames>> {
    let immutable = (long.is_exact_instance_of::<PyTuple>() || long.is_exact_instance_of::<PyFrozenSet>())
        && short.is_exact_instance_of::<PyFrozenSet>();
    if immutable {
        let cache = COMPILED.lock().expect("compiled names");
        if let Some((_, _, names)) = cache.iter().find(|(l, s, _)| l.is(long) && s.is(short)) {
            return Ok(names.clone());
        }
    }
    let long_names: Vec<String> = long.try_iter()?.map(|n| n?.extract()).collect::<PyResult<_>>()?;
    let short_names: HashSet<String> = short.try_iter()?.map(|n| n?.extract()).collect::<PyResult<_>>()?;
    let finder = if long_names.is_empty() {
        None
    } else {
        AhoCorasick::builder().kind(Some(AhoCorasickKind::DFA)).build(&long_names).ok()
    };
    let names = Arc::new(SplitNames { long: long_names, short: short_names, finder });
    if immutable {
        let mut cache = COMPILED.lock().expect("compiled names");
        if cache.len() >= MAX_COMPILED {
            cache.remove(0);
        }
        cache.push((long.clone().unbind(), short.clone().unbind(), names.clone()));
    }
    Ok(names)
}

#[pyfunction(name = "name_is_sensitive")]
fn py_name_is_sensitive(value: &Bound<'_, PyString>, long_names: &Bound<'_, PyAny>, short_names: &Bound<'_, PyAny>) -> PyResult<bool> {
    let names = compiled_names(long_names, short_names)?;
    Ok(names.matches(&crate::detectors::py_str(value)?))
}

#[pyfunction(name = "split_names")]
fn py_split_names<'py>(py: Python<'py>, names: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyFrozenSet>)> {
    let names: Vec<String> = names.try_iter()?.map(|n| n?.extract()).collect::<PyResult<_>>()?;
    let split = split_names(names.iter().map(String::as_str));
    let mut short: Vec<&String> = split.short.iter().collect();
    short.sort();
    Ok((PyTuple::new(py, &split.long)?, PyFrozenSet::new(py, short)?))
}

#[pyfunction(name = "key_is_secret")]
fn py_key_is_secret(key: &Bound<'_, PyString>) -> PyResult<bool> {
    Ok(key_is_secret(&crate::detectors::py_str(key)?))
}

#[pyfunction(name = "key_is_weak_secret")]
fn py_key_is_weak_secret(key: &Bound<'_, PyString>) -> PyResult<bool> {
    Ok(key_is_weak_secret(&crate::detectors::py_str(key)?))
}

#[pyfunction(name = "class_marks")]
fn py_class_marks(cls: &Bound<'_, PyString>) -> PyResult<u64> {
    Ok(class_marks(&crate::detectors::py_str(cls)?))
}

#[pyfunction(name = "recording_ignore_marks")]
fn py_recording_ignore_marks(marker: &Bound<'_, PyAny>) -> PyResult<u64> {
    match marker.cast::<PyString>() {
        Ok(s) => Ok(recording_ignore_marks(Some(&crate::detectors::py_str(&s)?))),
        Err(_) => Ok(recording_ignore_marks(None)),
    }
}

/// Registers the word rules with the Python module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_name_is_sensitive, m)?)?;
    m.add_function(wrap_pyfunction!(py_split_names, m)?)?;
    m.add_function(wrap_pyfunction!(py_key_is_secret, m)?)?;
    m.add_function(wrap_pyfunction!(py_key_is_weak_secret, m)?)?;
    m.add_function(wrap_pyfunction!(py_class_marks, m)?)?;
    m.add_function(wrap_pyfunction!(py_recording_ignore_marks, m)?)?;
    m.add("MAX_CACHED_NAME_CHARS", MAX_CACHED_NAME_CHARS)?;
    m.add("SECRET_WORDS", SECRET_WORDS.to_vec())?;
    m.add("DEFAULT_SENSITIVE_NAMES", DEFAULT_SENSITIVE_NAMES.clone())?;
    m.add("WHOLE_WORD_NAMES", WHOLE_WORD_NAMES.to_vec())?;
    m.add("WEAK_SECRET_WORDS", WEAK_SECRET_WORDS.to_vec())?;
    m.add("SENSITIVE_AUTOCOMPLETE", SENSITIVE_AUTOCOMPLETE.to_vec())?;
    m.add("SENSITIVE_AUTOCOMPLETE_PREFIX", SENSITIVE_AUTOCOMPLETE_PREFIX)?;
    Ok(())
}
