//! String-level scrubbers (`services/masker/detectors.py` re-exports them):
//! length-keeping masks, PII detectors, query-parameter, JSON-member,
//! header-line and path-segment scrubbing, cards, IBANs, e-mail addresses and
//! generated-token detection.
//!
//! Every function keeps the *character* length of the string it is given (one
//! `*` per masked character) and counts what it replaced in a [`Counts`] whose
//! keys are rule names. Positions are byte offsets inside Rust and code-point
//! offsets on the Python face. Every scan is linear in the text: candidates have
//! a bounded length and each scan resumes after what it consumed.
//!
//! Python's `re` look-arounds are written as explicit checks around a `regex`
//! match or as hand-written scanners; where Python's Unicode classes cannot be
//! matched exactly the rule here masks more (docs/masking.md, "The compiled core").
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFrozenSet, PyList, PyString};
use regex::{Regex, RegexBuilder};

use crate::counts::Counts;
use crate::sensitivity::{key_is_weak_secret, name_is_sensitive, py_isspace, secret_names};
use crate::token_rules::{may_hold_token, token_spans};

pub const MASK_CHAR: char = '*';
/// Every PII candidate is at most this many characters (a bounded cost per start).
pub const MAX_CANDIDATE_CHARS: usize = 16384;
/// What a Scrubber remembers of texts it found clean: at most this many, this long.
pub const MAX_CLEAN_TEXTS: usize = 4096;
pub const MAX_CLEAN_CHARS: usize = 64;
/// Token-alphabet runs this long or longer are data, not a credential.
const MAX_RUN_CHARS: usize = 1024;
const MAX_ENTROPY_CHARS: usize = 4096;
/// The separators of card and IBAN groups: spaces some locales use, and a dash.
const CARD_SEPARATORS: &str = " \u{a0}\u{2007}\u{2009}\u{202f}\u{2002}\u{2003}\u{2005}\u{2006}-";
const SHORTEST_IBAN: usize = 15;

/// Off only in tests: every gate and the clean-text memory skipped, so a test
/// can compare the fast answer with the full scan.
static FAST_PATHS: AtomicBool = AtomicBool::new(true);

fn fast_paths() -> bool {
    FAST_PATHS.load(Ordering::Relaxed)
}

// --- characters as Python's re reads them -------------------------------------

/// `\w`: a letter, digit or underscore (Unicode).
#[inline]
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

static UNICODE_DIGIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\A\d\z").expect("digit"));

/// `\d`: a decimal digit of any script (Unicode Nd).
#[inline]
fn is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    let mut buf = [0u8; 4];
    c.is_numeric() && UNICODE_DIGIT.is_match(c.encode_utf8(&mut buf))
}

#[inline]
fn is_card_separator(c: char) -> bool {
    CARD_SEPARATORS.contains(c)
}

fn char_at(value: &str, i: usize) -> Option<char> {
    value[i..].chars().next()
}

fn char_before(value: &str, i: usize) -> Option<char> {
    value[..i].chars().next_back()
}

/// The byte offset `n` characters after `i` (or the end).
fn advance_chars(value: &str, i: usize, n: usize) -> usize {
    value[i..].char_indices().nth(n).map_or(value.len(), |(j, _)| i + j)
}

fn char_len(value: &str) -> usize {
    if value.is_ascii() {
        value.len()
    } else {
        value.chars().count()
    }
}

fn stars(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(MASK_CHAR, n));
}

/// A Python string's text, borrowed where it can be (a lone surrogate, which
/// UTF-8 cannot hold, becomes one `?`: the same number of characters).
pub fn py_str<'a>(value: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    match value.to_cow() {
        Ok(text) => Ok(text),
        Err(_) => {
            let encoded = value.call_method1(pyo3::intern!(value.py(), "encode"), ("utf-8", "replace"))?;
            let bytes = encoded.cast::<PyBytes>()?;
            Ok(Cow::Owned(String::from_utf8_lossy(bytes.as_bytes()).into_owned()))
        }
    }
}

/// Byte spans of `text` as code-point spans (the Python face's indices).
pub fn byte_to_char_spans(text: &str, spans: &[(usize, usize)]) -> Vec<(usize, usize)> {
    if text.is_ascii() {
        return spans.to_vec();
    }
    let to_char = |b: usize| text[..b].chars().count();
    spans.iter().map(|&(s, e)| (to_char(s), to_char(e))).collect()
}

// --- masks and checksums ------------------------------------------------------

/// Replace every non-whitespace character with `*` (length and spaces kept).
pub fn mask_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_masked(&mut out, value);
    out
}

fn push_masked(out: &mut String, value: &str) {
    if value.is_ascii() {
        out.extend(value.bytes().map(|b| {
            if matches!(b, b' ' | b'\t'..=b'\r' | 0x1c..=0x1f) {
                char::from(b)
            } else {
                MASK_CHAR
            }
        }));
    } else {
        out.extend(value.chars().map(|c| if py_isspace(c) { c } else { MASK_CHAR }));
    }
}

/// The Luhn checksum of payment card numbers (`digits`: ASCII digits only).
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let d = u32::from(b.wrapping_sub(b'0'));
        sum += if i % 2 == 1 { [0, 2, 4, 6, 8, 1, 3, 5, 7, 9][d as usize % 10] } else { d };
    }
    sum % 10 == 0
}

/// Luhn over a candidate's digits; digits of another script are not checked:
/// such a candidate counts as a card (masked).
fn card_checksum(digits: &str) -> bool {
    !digits.is_ascii() || luhn_valid(digits)
}

/// True if the decimal digits of a JSON integer have a card number's length and checksum.
pub fn card_number(digits: &str) -> bool {
    (13..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && luhn_valid(digits)
}

static IBAN_LENGTHS: LazyLock<HashMap<&'static str, usize>> = LazyLock::new(|| {
    [
        ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16), ("BG", 22),
        ("BH", 22), ("BI", 27), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22), ("CY", 28), ("CZ", 24),
        ("DE", 22), ("DJ", 27), ("DK", 18), ("DO", 28), ("EE", 20), ("EG", 29), ("ES", 24), ("FI", 18),
        ("FK", 18), ("FO", 18), ("FR", 27), ("GB", 22), ("GE", 22), ("GI", 23), ("GL", 18), ("GR", 27),
        ("GT", 28), ("HR", 21), ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23), ("IS", 26), ("IT", 27),
        ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32), ("LI", 21), ("LT", 20), ("LU", 20),
        ("LV", 21), ("LY", 25), ("MC", 27), ("MD", 24), ("ME", 22), ("MK", 19), ("MN", 20), ("MR", 27),
        ("MT", 31), ("MU", 30), ("NI", 28), ("NL", 18), ("NO", 15), ("OM", 23), ("PK", 24), ("PL", 28),
        ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("RU", 33), ("SA", 24), ("SC", 31),
        ("SD", 18), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27), ("SO", 23), ("ST", 25), ("SV", 28),
        ("TL", 23), ("TN", 24), ("TR", 26), ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20), ("YE", 30),
    ]
    .into_iter()
    .collect()
});

fn iban_length(country: &str) -> Option<usize> {
    if country.len() != 2 {
        return None;
    }
    IBAN_LENGTHS.get(country.to_ascii_uppercase().as_str()).copied()
}

/// ISO 13616 check: known country length and mod-97 remainder 1 (any letter
/// case). Digits of another script are not checked: such a code counts as valid.
pub fn iban_valid(compact: &str) -> bool {
    let chars: Vec<char> = compact.chars().collect();
    if chars.len() < 4 || !chars.iter().all(|c| c.is_alphanumeric()) {
        return false;
    }
    let country: String = chars[..2].iter().collect();
    if iban_length(&country) != Some(chars.len()) {
        return false;
    }
    let mut remainder = 0u32;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        if c.is_ascii_digit() {
            remainder = (remainder * 10 + (c as u32 - '0' as u32)) % 97;
        } else if c.is_ascii_alphabetic() {
            remainder = (remainder * 100 + (c.to_ascii_uppercase() as u32 - 'A' as u32 + 10)) % 97;
        } else if is_digit(c) {
            return true;
        } else {
            return false; // a letter of another script: no IBAN
        }
    }
    remainder == 1
}

// --- the gate -----------------------------------------------------------------

static ANY_DIGIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d").expect("digit"));

/// Whether [`Scrubber::scrub`] may change `value`: exactly Python's
/// `re.search(r'[@\d="]|%40', value) or any(hint in value for hint in TOKEN_HINTS)`
/// (one byte pass for the ASCII triggers, then the token hints' automaton).
pub fn may_need_scrub(value: &str) -> bool {
    // a table per byte, OR-ed over chunks (the compiler vectorises the chunk)
    const fn triggers() -> [u8; 256] {
        let mut table = [0u8; 256];
        let mut b = b'0';
        while b <= b'9' {
            table[b as usize] = 1;
            b += 1;
        }
        table[b'@' as usize] = 1;
        table[b'=' as usize] = 1;
        table[b'"' as usize] = 1;
        table[b'%' as usize] = 2;
        table
    }
    static TRIGGERS: [u8; 256] = triggers();
    let mut seen = 0u8;
    for chunk in value.as_bytes().chunks(64) {
        seen |= chunk.iter().fold(0u8, |acc, &c| acc | TRIGGERS[c as usize]);
        if seen & 1 != 0 {
            return true;
        }
    }
    if seen & 2 != 0 && value.contains("%40") {
        return true;
    }
    if !value.is_ascii() && ANY_DIGIT.is_match(value) {
        return true;
    }
    may_hold_token(value)
}

/// What one pass over a text's bytes found: enough to prove, for each scan of
/// [`Scrubber::scrub`], that it cannot match (and skip it). Every field is an
/// upper bound of what a scan needs; a character outside ASCII counts as
/// whatever could let a scan match (a digit of another script, a separator).
#[derive(Debug, Clone, Copy, Default)]
struct TextGates {
    /// The ASCII bytes that occur ([`ascii_bytes`](crate::token_rules::ascii_bytes)).
    seen: u128,
    /// The most digits in one chain of digit groups joined by single card
    /// separators: a card is 13+ digits in such a chain (the candidate pattern).
    card_digits: usize,
    /// Two ASCII letters right before a digit: where an IBAN starts.
    iban_start: bool,
    /// A run of 20+ bytes of the random-token alphabet (`[A-Za-z0-9_+/-]`).
    token_run: bool,
}

// The byte classes the gate pass reads.
const G_DIGIT: u8 = 1;
const G_LETTER: u8 = 2;
/// `[A-Za-z0-9_+/-]`, the alphabet of `random_token_spans`.
const G_TOKEN: u8 = 4;
/// The ASCII card separators (space, dash).
const G_CARD_SEP: u8 = 8;
/// The first byte of a character outside ASCII.
const G_WIDE: u8 = 16;
/// A later byte of a character outside ASCII.
const G_CONT: u8 = 32;
/// Bytes read in one block of the gate pass (see [`TextGates::of`]).
const GATE_BLOCK: usize = 8;

/// The classes of UTF-8 bytes.
const fn gate_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut k = 0;
        if c.is_ascii_digit() {
            k |= G_DIGIT | G_TOKEN;
        }
        if c.is_ascii_alphabetic() {
            k |= G_LETTER | G_TOKEN;
        }
        if matches!(c, b'_' | b'+' | b'/' | b'-') {
            k |= G_TOKEN;
        }
        if matches!(c, b' ' | b'-') {
            k |= G_CARD_SEP;
        }
        if c >= 0xC0 {
            k |= G_WIDE;
        } else if c >= 0x80 {
            k |= G_CONT;
        }
        table[b] = k;
        b += 1;
    }
    table
}

static GATE_CLASSES: [u8; 256] = gate_classes();

/// The chain of card digits being read by [`TextGates::of`] in blocks with digits.
#[derive(Default)]
struct DigitChain {
    digits: usize,
    seps: usize,
    letters: usize,
}

impl DigitChain {
    /// Reads one byte (its class `k`) into `gates`.
    #[inline]
    fn read(&mut self, k: u8, gates: &mut TextGates) {
        if k & G_CONT != 0 {
            return; // the character was read at its first byte
        }
        if k & (G_DIGIT | G_WIDE) != 0 {
            // A character outside ASCII may be a digit (the chain goes on, an
            // IBAN may start) or a separator.
            self.digits += 1;
            self.seps = 0;
            gates.iban_start |= self.letters >= 2;
            gates.card_digits = gates.card_digits.max(self.digits);
        } else if k & G_CARD_SEP != 0 {
            self.seps += 1;
            if self.seps > 1 {
                self.digits = 0; // two separators in a row end a chain
            }
        } else {
            self.digits = 0;
            self.seps = 0;
        }
        self.letters = if k & G_LETTER != 0 { self.letters + 1 } else { 0 };
    }
}

/// The OR and the AND of the classes of `block`'s bytes; marks them in `present`.
#[inline(always)]
fn classes_of(block: &[u8], classes: &[u8; 256], present: &mut [u8; 256]) -> (u8, u8) {
    let (mut any, mut all) = (0u8, u8::MAX);
    for &c in block {
        let k = classes[c as usize];
        any |= k;
        all &= k;
        present[c as usize] = 1;
    }
    (any, all)
}

/// The set of bytes below 128 whose `present` entry is 1, as bits (8 at a time:
/// the multiplication gathers the low bit of each of 8 bytes into the top byte).
fn ascii_set(present: &[u8; 256]) -> u128 {
    let mut set = 0u128;
    for (i, eight) in present[..128].chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(eight.try_into().unwrap_or([0; 8]));
        let bits = word.wrapping_mul(0x0102_0408_1020_4080) >> 56;
        set |= u128::from(bits) << (8 * i);
    }
    set
}

impl TextGates {
    /// One pass in blocks of [`GATE_BLOCK`] bytes: the bytes seen and each
    /// block's classes; the card chain and IBAN starts are read byte by byte
    /// only in blocks holding a digit (or a character outside ASCII), since a
    /// block without one ends any chain; a token run is measured only around
    /// a block of token bytes only, since every run of 15+ such bytes holds a
    /// whole block.
    fn of(value: &str) -> Self {
        let b = value.as_bytes();
        let classes = &GATE_CLASSES;
        let mut gates = TextGates::default();
        let mut present = [0u8; 256];
        let mut chain = DigitChain::default();
        let mut chain_at = usize::MAX; // where `chain` stopped reading
        let mut run_checked_to = 0; // runs before this were measured
        let whole = b.len() - b.len() % GATE_BLOCK;
        let blocks = b[..whole].chunks_exact(GATE_BLOCK).chain(std::iter::once(&b[whole..]));
        for (n, block) in blocks.enumerate() {
            let start = n * GATE_BLOCK;
            let (any, all) = if block.len() == GATE_BLOCK {
                classes_of(block, classes, &mut present) // unrolled: a whole block
            } else {
                classes_of(block, classes, &mut present)
            };
            if any & (G_DIGIT | G_WIDE) != 0 {
                if chain_at != start {
                    // the chain starts afresh; the letters before the block count
                    chain = DigitChain::default();
                    for &c in &b[start.saturating_sub(2)..start] {
                        let letter = classes[c as usize] & G_LETTER != 0;
                        chain.letters = if letter { chain.letters + 1 } else { 0 };
                    }
                }
                for &c in block {
                    chain.read(classes[c as usize], &mut gates);
                }
                chain_at = start + block.len();
            }
            if all & G_TOKEN != 0 && block.len() == GATE_BLOCK && !gates.token_run && start >= run_checked_to {
                let token = |c: &u8| classes[*c as usize] & G_TOKEN != 0;
                let left = b[..start].iter().rev().take_while(|c| token(c)).count();
                let right = b[start..].iter().take_while(|c| token(c)).count();
                gates.token_run = left + right >= 20;
                run_checked_to = start + right;
            }
        }
        gates.seen = ascii_set(&present);
        gates
    }

    #[inline]
    fn has(&self, b: u8) -> bool {
        self.seen & (1u128 << b) != 0
    }

    /// False only if the e-mail scan cannot match (it needs `@` or `%40`).
    fn may_hold_email(&self, value: &str) -> bool {
        self.has(b'@') || (self.has(b'%') && value.contains("%40"))
    }
}

// --- e-mail addresses ---------------------------------------------------------

/// `[\w.%+-]`: a character of an address's local part.
#[inline]
fn is_local(c: char) -> bool {
    is_word(c) || matches!(c, '.' | '%' | '+' | '-')
}

/// `[\w-]`: a character of a domain label.
#[inline]
fn is_label(c: char) -> bool {
    is_word(c) || c == '-'
}

/// End of `[\w-]{1,63}(?:\.[\w-]{1,63}){0,8}\.[A-Za-z]{2,63}(?![\w-])` at `pos`:
/// the domain with the most labels (up to 8 between the first and the last)
/// whose last label is 2-63 ASCII letters.
fn email_domain_end(value: &str, pos: usize) -> Option<usize> {
    // (end, ascii letters only, characters) of each dot-separated label
    let mut labels = [(0usize, false, 0usize); 10];
    let mut count = 0;
    let mut i = pos;
    while count < 10 {
        let mut n = 0;
        let mut letters = true;
        let mut j = i;
        for (k, c) in value[i..].char_indices() {
            if !is_label(c) {
                break;
            }
            n += 1;
            letters &= c.is_ascii_alphabetic();
            j = i + k + c.len_utf8();
            if n > 63 {
                break;
            }
        }
        if n == 0 {
            break;
        }
        labels[count] = (j, letters && n <= 63, n);
        count += 1;
        if n > 63 || !value[j..].starts_with('.') {
            break; // a label too long ends the chain
        }
        i = j + 1;
    }
    // the first label is followed by a dot; the last is the TLD
    for k in (1..count).rev() {
        let (end, letters, n) = labels[k];
        if !(letters && (2..=63).contains(&n)) {
            continue;
        }
        if labels[..k].iter().all(|&(_, _, len)| (1..=63).contains(&len)) {
            return Some(end);
        }
    }
    None
}

/// Spans of e-mail addresses (local part <= 64, labels <= 63: RFC 5321),
/// as Python's `(?<![\w.%+-])[\w.%+-]{1,64}(?:@|%40)<domain>(?![\w-])`.
fn email_spans(value: &str, found: &mut Vec<(usize, usize)>, counts: &mut Counts) {
    let n = value.len();
    let b = value.as_bytes();
    let mut i = 0;
    while i < n {
        // Only a run of local-part characters that holds a `%` or ends at an `@`
        // can match: the next such run is the one around the next `%` or `@`
        // (the runs before it are skipped, as the search would skip them).
        let Some(q) = b[i..].iter().position(|&c| c == b'@' || c == b'%') else { return };
        let q = i + q;
        // the start of the run (not preceded by a local-part character), at or after i
        let r = value[i..q].char_indices().rev().take_while(|&(_, c)| is_local(c)).last().map_or(q, |(k, _)| i + k);
        if b[q] == b'@' && r == q {
            i = q + 1; // no local part before this @
            continue;
        }
        let run_end = value[r..].char_indices().find(|&(_, c)| !is_local(c)).map_or(n, |(k, _)| r + k);
        // separators at most 64 characters in, the rightmost first (greedy):
        // "@" ends the run, "%40" can be inside it
        let limit = if run_end - r <= 64 { run_end } else { advance_chars(value, r, 64) };
        let mut matched = None;
        if run_end <= limit && b.get(run_end) == Some(&b'@') {
            matched = email_domain_end(value, run_end + 1);
        }
        let mut j = run_end.min(limit + 1);
        while matched.is_none() && j > r + 1 {
            let Some(k) = b[r + 1..j].iter().rposition(|&c| c == b'%') else { break };
            j = r + 1 + k;
            if b[j..].starts_with(b"%40") {
                matched = email_domain_end(value, j + 3);
            }
        }
        match matched {
            Some(end) => {
                found.push((r, end));
                counts.inc("pii_email");
                // the next start must follow a character outside the local part
                i = value[end..].char_indices().find(|&(_, c)| !is_local(c)).map_or(n, |(k, _)| end + k);
            }
            None => i = run_end,
        }
    }
}

// --- cards --------------------------------------------------------------------

/// A card number candidate: 13-19 digits in one piece, groups joined by single
/// separators whose first group has 4 digits, or UnionPay's 6-13. Python's
/// `(?<!\d)`/`(?!\d)` are consumed here; the candidate is group `m`.
static CARD_CANDIDATE: LazyLock<Regex> = LazyLock::new(|| {
    let sep = format!("[{}]", regex::escape(CARD_SEPARATORS));
    let pattern = format!(
        r"(?:^|\D)(?:\d{{13,19}}|\d{{6}}{sep}\d{{13}}|\d{{4}}(?:{sep}\d{{1,6}}){{1,5}})(?:\D|$)"
    );
    RegexBuilder::new(&pattern).size_limit(64 << 20).build().expect("card candidate")
});

/// Card numbers (13-19 digits, Luhn-valid) in `value`, as byte spans. A
/// candidate that holds no card is searched again from its next group, so a
/// card after other digit groups ("ref 2024 4111 1111 1111 1111") is found.
fn card_spans(value: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut pos = 0;
    while pos < value.len() {
        // (?<!\d) at pos looks at the character before it
        let from = if pos == 0 { 0 } else { pos - char_before(value, pos).map_or(0, char::len_utf8) };
        let Some(m) = CARD_CANDIDATE.find_at(value, from) else { break };
        // the candidate without the consumed guards (it starts and ends with a digit)
        let (mut start, mut stop) = (m.start(), m.end());
        if let Some(c) = char_at(value, start).filter(|&c| !is_digit(c)) {
            start += c.len_utf8();
        }
        if let Some(c) = char_before(value, stop).filter(|&c| !is_digit(c)) {
            stop -= c.len_utf8();
        }
        let end = card_end(&value[start..stop]);
        if end > 0 {
            found.push((start, start + end));
            pos = start + end;
        } else {
            pos = advance_chars(value, start, 5); // past the first group and its separator
        }
    }
    found
}

/// Byte length of the longest checksum-valid 13-19 digit prefix of whole groups; 0 if none.
fn card_end(candidate: &str) -> usize {
    if !candidate.is_ascii() && candidate.chars().any(|c| !c.is_ascii() && is_digit(c)) {
        // Digits of another script: no checksum, the whole candidate is masked
        // if it holds a card's 13 digits (Python grouped such digits oddly).
        let digits = candidate.chars().filter(|&c| is_digit(c)).count();
        return if digits >= 13 { candidate.len() } else { 0 };
    }
    let mut digits = String::with_capacity(19);
    let mut ends: Vec<(usize, usize)> = Vec::new(); // (byte end, digits so far)
    let mut count = 0;
    let mut in_group = false;
    for (i, c) in candidate.char_indices() {
        if is_card_separator(c) {
            if in_group && count >= 13 {
                ends.push((i, digits.len()));
            }
            in_group = false;
            continue;
        }
        count += 1;
        if count > 19 {
            return best_card_prefix(&digits, &ends);
        }
        digits.push(c);
        in_group = true;
    }
    if count >= 13 && count <= 19 {
        ends.push((candidate.len(), digits.len()));
    }
    best_card_prefix(&digits, &ends)
}

fn best_card_prefix(digits: &str, ends: &[(usize, usize)]) -> usize {
    for &(end, n) in ends.iter().rev() {
        if card_checksum(&digits[..n]) {
            return end;
        }
    }
    0
}

// --- IBANs --------------------------------------------------------------------

/// Where an IBAN can start: `\b[A-Za-z]{2}\d{2}(?=[SEP]?[A-Za-z0-9])`; then the
/// country's number of characters is read from there.
fn iban_spans(value: &str, found: &mut Vec<(usize, usize)>, counts: &mut Counts) {
    let b = value.as_bytes();
    let n = b.len();
    let mut i = 0;
    // \b before a letter: a candidate starts only where a run of word characters does
    while i < n {
        let c = b[i];
        if c < 0x80 && !(c.is_ascii_alphanumeric() || c == b'_') {
            i += 1;
            continue;
        }
        let ch = char_at(value, i).unwrap_or(' ');
        if !is_word(ch) {
            i += ch.len_utf8();
            continue;
        }
        if c.is_ascii_alphabetic() && i + 4 <= n && b[i + 1].is_ascii_alphabetic() {
            if let Some(after_digits) = two_digits(value, i + 2) {
                let mut rest = value[after_digits..].chars();
                let lookahead = match rest.next() {
                    Some(c) if is_card_separator(c) => rest.next().is_some_and(|d| d.is_ascii_alphanumeric()),
                    Some(c) => c.is_ascii_alphanumeric(),
                    None => false,
                };
                if lookahead {
                    if let Some(span) = iban_span(value, i) {
                        found.push(span);
                        counts.inc("pii_iban");
                    }
                }
            }
        }
        // past the run of word characters: no other candidate starts inside it
        let mut j = i + ch.len_utf8();
        while j < n {
            let d = b[j];
            if d < 0x80 {
                if d.is_ascii_alphanumeric() || d == b'_' {
                    j += 1;
                    continue;
                }
                break;
            }
            match char_at(value, j) {
                Some(w) if is_word(w) => j += w.len_utf8(),
                _ => break,
            }
        }
        i = j;
    }
}

fn two_digits(value: &str, i: usize) -> Option<usize> {
    let mut chars = value[i..].char_indices();
    let (_, a) = chars.next()?;
    let (k, d) = chars.next()?;
    (is_digit(a) && is_digit(d)).then_some(i + k + d.len_utf8())
}

/// The span of the IBAN at `start` (its country's length), if valid. Reads
/// exactly the country's number of letters and digits (single separators
/// between), so the words after an IBAN never take part in the check.
fn iban_span(value: &str, start: usize) -> Option<(usize, usize)> {
    let expected = iban_length(&value[start..start + 2])?;
    let mut compact = String::with_capacity(expected);
    let mut end = start;
    let mut plain = true;
    for (k, c) in value[start..].char_indices().take(expected) {
        if !c.is_alphanumeric() {
            plain = false;
            break;
        }
        compact.push(c);
        end = start + k + c.len_utf8();
    }
    if !plain || compact.chars().count() < expected {
        // exactly `expected` ASCII letters and digits, single separators between
        compact.clear();
        let mut chars = value[start..].char_indices().peekable();
        end = start;
        while compact.len() < expected {
            let Some((k, c)) = chars.next() else { return None };
            if c.is_ascii_alphanumeric() {
                compact.push(c);
                end = start + k + 1;
            } else if is_card_separator(c) && !compact.is_empty() {
                match chars.peek() {
                    Some(&(k2, d)) if d.is_ascii_alphanumeric() => {
                        compact.push(d);
                        end = start + k2 + 1;
                        chars.next();
                    }
                    _ => return None,
                }
            } else {
                return None;
            }
        }
    }
    if char_at(value, end).is_some_and(char::is_alphanumeric) {
        return None; // longer than the country's IBAN: some other code
    }
    iban_valid(&compact).then_some((start, end))
}

// --- generated tokens ---------------------------------------------------------

/// Shannon entropy in bits per character, as the Python `_entropy` sums it
/// (counts in order of first occurrence).
fn entropy(value: &str) -> f64 {
    let mut order: Vec<char> = Vec::new();
    let mut counts: HashMap<char, usize> = HashMap::new();
    let mut ascii = [0usize; 128];
    let mut n = 0usize;
    for c in value.chars() {
        n += 1;
        if c.is_ascii() {
            let slot = &mut ascii[c as usize];
            if *slot == 0 {
                order.push(c);
            }
            *slot += 1;
        } else {
            let slot = counts.entry(c).or_insert(0);
            if *slot == 0 {
                order.push(c);
            }
            *slot += 1;
        }
    }
    if n == 0 {
        return 0.0;
    }
    let count = |c: char| if c.is_ascii() { ascii[c as usize] } else { counts[&c] };
    let nf = n as f64;
    if n > MAX_ENTROPY_CHARS {
        return -order.iter().map(|&c| count(c) as f64 / nf * (count(c) as f64 / nf).log2()).sum::<f64>();
    }
    let mut total = 0.0;
    for &c in &order {
        let k = count(c) as f64;
        total += k * k.log2();
    }
    nf.log2() - total / nf
}

#[inline]
fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'/' | b'=' | b'-')
}

fn class_of(b: u8) -> u8 {
    if b.is_ascii_lowercase() {
        0
    } else if b.is_ascii_uppercase() {
        1
    } else if b.is_ascii_digit() {
        2
    } else {
        3
    }
}

fn vowels(value: &[u8]) -> usize {
    value.iter().filter(|b| matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'A' | b'E' | b'I' | b'O' | b'U')).count()
}

fn letters(value: &[u8]) -> usize {
    value.iter().filter(|b| b.is_ascii_alphabetic()).count()
}

/// Conservative: a 20+ character run that reads like a generated token, not a word.
///
/// Upper, lower and scattered digits with frequent class changes (base62/base64
/// tokens), or 32+ hex characters with digits and letters (hex tokens, hashes).
/// Slugs ("spring-sale-2024"), words and CamelCase titles stay.
pub fn looks_random(value: &str) -> bool {
    let b = value.as_bytes();
    let n = b.len();
    if !(20..=1024).contains(&n) || !b.iter().all(|&c| token_char(c)) {
        return false;
    }
    let mut switches = 0usize;
    let mut digit_runs = 0usize;
    let (mut lower, mut upper, mut hex) = (false, false, true);
    for (i, &c) in b.iter().enumerate() {
        if i > 0 && class_of(c) != class_of(b[i - 1]) {
            switches += 1;
        }
        if c.is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()) {
            digit_runs += 1;
        }
        lower |= c.is_ascii_lowercase();
        upper |= c.is_ascii_uppercase();
        hex &= c.is_ascii_hexdigit();
    }
    let span = (n - 1) as f64;
    let switches = switches as f64;
    if n >= 32 && digit_runs > 0 && (lower || upper) && hex {
        return entropy(value) >= 3.0 && switches >= 0.15 * span;
    }
    if lower && upper {
        if switches < 0.4 * span || entropy(value) < 3.5 {
            return false;
        }
        // A title ends in "2024"; a token scatters its digits (a long one may
        // hold one run). A token with fewer digits has few vowels.
        if digit_runs >= if n >= 32 { 1 } else { 2 } {
            return true;
        }
        return vowels(b) as f64 <= 0.3 * letters(b) as f64;
    }
    // One letter case (base36 session ids): digits in several places, few
    // vowels, high entropy, no separators.
    if n < 24 || digit_runs < 2 || !b.iter().all(u8::is_ascii_alphanumeric) || entropy(value) < 3.5 {
        return false;
    }
    let few_vowels = vowels(b) as f64 <= 0.3 * letters(b) as f64;
    few_vowels || (digit_runs >= 4 && switches >= 0.3 * span)
}

fn is_uuid(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Byte spans of `[A-Za-z0-9]{20,1024}` pieces (longer runs read 1024 at a time).
fn alnum_pieces(value: &str, mut found: impl FnMut(usize, usize)) {
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && b[j].is_ascii_alphanumeric() {
            j += 1;
        }
        let mut s = i;
        while j - s >= 20 {
            let e = (s + 1024).min(j);
            found(s, e);
            s = e;
        }
        i = j;
    }
}

/// `looks_random` of a run, a UUID, or one of the run's alphanumeric pieces
/// ("whsec_<hex>", Django's "<base36>-<hex>" reset token).
pub fn looks_generated(value: &str) -> bool {
    if looks_random(value) || is_uuid(value) {
        return true;
    }
    if value.chars().all(char::is_alphanumeric) {
        return false;
    }
    let mut any = false;
    alnum_pieces(value, |s, e| any = any || looks_random(&value[s..e]));
    any
}

/// A lower-case word of a path ("api", "services"), which base64 rarely holds.
fn is_path_word(part: &str) -> bool {
    part.len() >= 3 && part.bytes().all(|b| b.is_ascii_lowercase())
}

/// Byte spans of the token-alphabet runs in text that look generated (or of
/// their generated pieces: the words around a token in a path stay).
pub fn random_token_spans(value: &str, spans: &mut Vec<(usize, usize)>) {
    let b = value.as_bytes();
    let n = b.len();
    let alphabet = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'+' | b'/' | b'-');
    let mut i = 0;
    while i < n {
        if !alphabet(b[i]) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < n && alphabet(b[j]) {
            j += 1;
        }
        let run_chars = j - i;
        let start = i;
        i = j;
        if !(20..MAX_RUN_CHARS).contains(&run_chars) {
            continue; // short, or data of 1024+ characters
        }
        let mut end = j;
        while end < n && end - j < 2 && b[end] == b'=' {
            end += 1;
        }
        i = end;
        let run = &value[start..end];
        if run.contains('/') && run.split('/').any(is_path_word) {
            // a path ("com/services/<token>"), not base64: only its generated segments
            let mut s = start;
            for part in run.split('/') {
                if part.len() >= 20 && looks_generated(part) {
                    spans.push((s, s + part.len()));
                }
                s += part.len() + 1;
            }
        } else if looks_random(run) {
            spans.push((start, end));
        } else if !run.bytes().all(|c| c.is_ascii_alphanumeric()) {
            alnum_pieces(run, |s, e| {
                if looks_random(&run[s..e]) {
                    spans.push((start + s, start + e));
                }
            });
        }
    }
}

/// A value under a weak secret word (`key`, `api`...) that reads like a
/// credential: 10-4096 characters, a digit, no spaces, entropy >= 3.5.
pub fn looks_secret_value(value: &str) -> bool {
    let n = char_len(value);
    if !(10..=4096).contains(&n) || !value.chars().any(char::is_numeric) {
        return false;
    }
    if value.chars().any(py_isspace) {
        return false;
    }
    entropy(value) >= 3.5
}

// --- parameters, headers, JSON members, paths ---------------------------------

/// `urllib.parse.unquote_plus`: `+` as a space, `%XX` as a byte, UTF-8 read leniently.
fn unquote_plus(raw: &str) -> Cow<'_, str> {
    if !raw.contains(['%', '+']) {
        return Cow::Borrowed(raw);
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() + 0 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() => {
                let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A key naming a secret word (any casing or compound) or a configured parameter.
fn param_is_sensitive(raw_key: &str, names: &HashSet<String>) -> bool {
    let key = unquote_plus(raw_key);
    let secret = secret_names();
    if name_is_sensitive(&key, &secret.long, &secret.short) {
        return true;
    }
    if names.is_empty() {
        return false;
    }
    let key = key.to_lowercase();
    if names.contains(&key) {
        return true;
    }
    // user[email], reset_token, x-api-key: any word of the key that is a listed name
    key.split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .any(|token| !token.is_empty() && names.contains(token))
}

fn is_masked(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b == b'*')
}

/// Rebuilds a string from replaced pieces only when something was replaced.
struct Rebuild<'a> {
    value: &'a str,
    out: Option<String>,
    last: usize,
}

impl<'a> Rebuild<'a> {
    fn new(value: &'a str) -> Self {
        Self { value, out: None, last: 0 }
    }

    /// Replaces `value[start..end]` with one `*` per character (spaces too).
    fn stars(&mut self, start: usize, end: usize) {
        let out = self.out.get_or_insert_with(|| String::with_capacity(self.value.len()));
        out.push_str(&self.value[self.last..start]);
        stars(out, char_len(&self.value[start..end]));
        self.last = end;
    }

    /// Replaces `value[start..end]` with `text`.
    fn put(&mut self, start: usize, end: usize, text: &str) {
        let out = self.out.get_or_insert_with(|| String::with_capacity(self.value.len()));
        out.push_str(&self.value[self.last..start]);
        out.push_str(text);
        self.last = end;
    }

    fn finish(self) -> Option<String> {
        let mut out = self.out?;
        out.push_str(&self.value[self.last..]);
        Some(out)
    }
}

/// End of the characters from `i` for which `keep` holds, at most `max` of them.
fn run_end(value: &str, i: usize, max: usize, keep: impl Fn(char) -> bool) -> (usize, usize) {
    let mut n = 0;
    for (k, c) in value[i..].char_indices() {
        if n == max || !keep(c) {
            return (i + k, n);
        }
        n += 1;
    }
    (value.len(), n)
}

fn is_kv_separator(c: char) -> bool {
    py_isspace(c) || matches!(c, '?' | '&' | '#' | ';' | ',' | '(' | '{' | '[')
}

/// key=value at the start, after a space or a URL/list separator (Python's
/// `(^|[\s?&#;,({\[])([^=&#\s?;,"'<>(){}\[]{1,128})=([^&#\s;"'<>),]{0,4096})`):
/// (key start, key end, value end) of the first match at or after `pos`.
fn next_key_value(value: &str, pos: usize) -> Option<(usize, usize, usize, usize)> {
    let key_char = |c: char| !(py_isspace(c) || "=&#?;,\"'<>(){}[".contains(c));
    let value_char = |c: char| !(py_isspace(c) || "&#;\"'<>),".contains(c));
    let at = |k0: usize| -> Option<(usize, usize)> {
        let (key_end, n) = run_end(value, k0, 129, key_char);
        if n == 0 || n > 128 || !value[key_end..].starts_with('=') {
            return None;
        }
        Some((key_end, run_end(value, key_end + 1, 4096, value_char).0))
    };
    if pos == 0 {
        if let Some((key_end, end)) = at(0) {
            return Some((0, 0, key_end, end));
        }
    }
    for (k, c) in value[pos..].char_indices() {
        if is_kv_separator(c) {
            let k0 = pos + k + c.len_utf8();
            if let Some((key_end, end)) = at(k0) {
                return Some((pos + k, k0, key_end, end));
            }
        }
    }
    None
}

static ENCODED_PARAM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(%(?:25)?(?:3[Ff]|26|23))([A-Za-z0-9_.~\-]{1,128})(%(?:25)?3[Dd])").expect("encoded param")
});

/// End of `(?:[A-Za-z0-9_.~+!*()\-]|%(?!(?:25)?2[36])[0-9A-Fa-f]{2}){0,4096}` at `i`.
fn encoded_value_end(value: &str, mut i: usize) -> usize {
    let b = value.as_bytes();
    let mut atoms = 0;
    while atoms < 4096 && i < b.len() {
        let c = b[i];
        if c.is_ascii_alphanumeric() || b"_.~+!*()-".contains(&c) {
            i += 1;
        } else if c == b'%' && i + 2 < b.len() + 0 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
            let rest = &b[i + 1..];
            let separator = |r: &[u8]| r.starts_with(b"26") || r.starts_with(b"23");
            if separator(rest) || (rest.starts_with(b"25") && separator(&rest[2..])) {
                break; // an encoded & or #: the next parameter
            }
            i += 3;
        } else {
            break;
        }
        atoms += 1;
    }
    i
}

/// Mask secret parameters of a URL percent-encoded inside another URL's parameter.
fn scrub_encoded_params(value: &str, names: &HashSet<String>, counts: &mut Counts) -> Option<String> {
    let mut out = Rebuild::new(value);
    let mut pos = 0;
    while let Some(caps) = ENCODED_PARAM.captures_at(value, pos) {
        let key = caps.get(2).expect("key").as_str();
        let start = caps.get(3).expect("=").end();
        let end = encoded_value_end(value, start);
        pos = end;
        let raw = &value[start..end];
        if raw.is_empty()
            || !(param_is_sensitive(key, names) || (key_is_weak_secret(key) && looks_secret_value(raw)))
        {
            continue;
        }
        counts.inc("url_param");
        out.stars(start, end);
    }
    out.finish()
}

/// "Name: value" after a line start, space or separator (header lines in logs),
/// Python's `(^|[\s,;{(\[])([A-Za-z][A-Za-z0-9_.-]{0,63}):[ \t]{0,4}(?![Bb]earer\s|[Bb]asic\s)([^\s,;"'<>]{1,4096})`.
fn scrub_header_lines(value: &str, names: &HashSet<String>, counts: &mut Counts) -> Option<String> {
    let value_char = |c: char| !(py_isspace(c) || ",;\"'<>".contains(c));
    let at = |k0: usize| -> Option<(usize, usize, usize)> {
        let first = char_at(value, k0)?;
        if !first.is_ascii_alphabetic() {
            return None;
        }
        let (name_end, n) =
            run_end(value, k0 + 1, 64, |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if n > 63 || !value[name_end..].starts_with(':') {
            return None;
        }
        let (v0, _) = run_end(value, name_end + 1, 4, |c| c == ' ' || c == '\t');
        let (v1, m) = run_end(value, v0, 4096, value_char);
        if m == 0 {
            return None;
        }
        let word = &value[v0..v1];
        if matches!(word, "Bearer" | "bearer" | "Basic" | "basic") && char_at(value, v1).is_some_and(py_isspace) {
            return None; // left to the token rules (the scheme word is kept)
        }
        Some((name_end, v0, v1))
    };
    let mut out = Rebuild::new(value);
    let mut pos = 0;
    'search: while pos < value.len() {
        let mut found = None;
        if pos == 0 {
            found = at(0).map(|m| (0, m));
        }
        if found.is_none() {
            for (k, c) in value[pos..].char_indices() {
                if py_isspace(c) || matches!(c, ',' | ';' | '{' | '(' | '[') {
                    let k0 = pos + k + c.len_utf8();
                    if let Some(m) = at(k0) {
                        found = Some((k0, m));
                        break;
                    }
                }
            }
        }
        let Some((k0, (name_end, v0, v1))) = found else { break 'search };
        pos = v1;
        let raw = &value[v0..v1];
        if is_masked(raw) || !param_is_sensitive(&value[k0..name_end], names) {
            continue;
        }
        counts.inc("secret_header");
        out.stars(v0, v1);
    }
    out.finish()
}

/// At `pos`: `\\?"([^"\\\n]{1,128})\\?"\s{0,8}<term>\s{0,8}`: (key start, key end, end).
fn quoted_key_at(value: &str, pos: usize, term: u8) -> Option<(usize, usize, usize)> {
    let b = value.as_bytes();
    let mut i = pos;
    if b.get(i) == Some(&b'\\') {
        i += 1;
    }
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let k0 = i + 1;
    let (k1, n) = run_end(value, k0, 129, |c| !matches!(c, '"' | '\\' | '\n'));
    if n == 0 || n > 128 {
        return None;
    }
    let mut j = k1;
    if b.get(j) == Some(&b'\\') {
        j += 1;
    }
    if b.get(j) != Some(&b'"') {
        return None;
    }
    let (j, _) = run_end(value, j + 1, 8, py_isspace);
    if b.get(j) != Some(&term) {
        return None;
    }
    let (end, _) = run_end(value, j + 1, 8, py_isspace);
    Some((k0, k1, end))
}

/// The next `"key":` at or after `pos` (also escaped, `\"key\":`).
fn next_json_key(value: &str, mut pos: usize) -> Option<(usize, usize, usize)> {
    while let Some(q) = value[pos..].find('"') {
        let q = pos + q;
        if let Some(m) = quoted_key_at(value, q, b':') {
            return Some(m);
        }
        pos = q + 1;
    }
    None
}

/// End of `-?\d{1,64}(?:\.\d{1,64})?(?:[eE][+-]?\d{1,4})?` at `pos`.
fn json_number_end(value: &str, pos: usize) -> Option<usize> {
    let mut i = pos;
    if value[i..].starts_with('-') {
        i += 1;
    }
    let (e, n) = run_end(value, i, 64, is_digit);
    if n == 0 {
        return None;
    }
    i = e;
    if value[i..].starts_with('.') {
        let (e, n) = run_end(value, i + 1, 64, is_digit);
        if n > 0 {
            i = e;
        }
    }
    if value[i..].starts_with(['e', 'E']) {
        let mut j = i + 1;
        if value[j..].starts_with(['+', '-']) {
            j += 1;
        }
        let (e, n) = run_end(value, j, 4, is_digit);
        if n > 0 {
            i = e;
        }
    }
    Some(i)
}

/// Index of the closing quote of a JSON string starting at `start` (or the end).
fn string_end(value: &str, start: usize) -> usize {
    let b = value.as_bytes();
    let mut pos = start;
    loop {
        let Some(q) = value[pos..].find('"') else { return value.len() };
        let quote = pos + q;
        let mut backslashes = 0;
        while quote >= start + backslashes + 1 && b[quote - backslashes - 1] == b'\\' {
            backslashes += 1;
        }
        if backslashes % 2 == 0 {
            return quote;
        }
        pos = quote + 1;
    }
}

/// End of the JSON object/array opening at `start` (or of `value`), one pass.
fn container_end(value: &str, start: usize) -> usize {
    let b = value.as_bytes();
    let mut depth = 0i64;
    let mut pos = start;
    while pos < b.len() {
        match b[pos] {
            b'"' => pos = string_end(value, pos + 1),
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return pos + 1;
                }
            }
            _ => {}
        }
        pos += 1;
    }
    b.len()
}

/// Mask the value of every JSON member whose name says it is a secret, whatever
/// its type, and the `value` of a `{"name": <secret name>, "value": …}` pair.
fn scrub_json_members(value: &str, names: &HashSet<String>, counts: &mut Counts) -> Option<String> {
    let mut out = Rebuild::new(value);
    let mut pos = 0;
    let mut pair_names_secret = false; // the member just read was "name": "<secret name>"
    while let Some((k0, k1, end)) = next_json_key(value, pos) {
        pos = end;
        let key = &value[k0..k1];
        let pair_value = pair_names_secret && key == "value";
        pair_names_secret = false;
        if key == "name" {
            if let Some((q0, q1, qend)) = quoted_key_at(value, pos, b',') {
                pair_names_secret = param_is_sensitive(&value[q0..q1], names);
                pos = qend;
                continue;
            }
        }
        if !pair_value && !param_is_sensitive(key, names) {
            if key_is_weak_secret(key) && value[pos..].starts_with('"') {
                let s_end = string_end(value, pos + 1);
                if looks_secret_value(&value[pos + 1..s_end]) {
                    out.stars(pos + 1, s_end);
                    counts.inc("secret_json");
                    pos = s_end;
                }
            }
            continue;
        }
        let rest = &value[pos..];
        let (start, stop) = if rest.starts_with("\\\"") {
            let start = pos + 2;
            (start, value[start..].find("\\\"").map_or(value.len(), |e| start + e))
        } else if rest.starts_with('"') {
            (pos + 1, string_end(value, pos + 1))
        } else if let Some(number_end) = json_number_end(value, pos) {
            // a number becomes a string of the same length, so the JSON still parses
            let width = char_len(&value[pos..number_end]);
            let mut text = String::with_capacity(width);
            if width >= 2 {
                text.push('"');
                stars(&mut text, width - 2);
                text.push('"');
            } else {
                text.push('0');
            }
            out.put(pos, number_end, &text);
            counts.inc("secret_json");
            pos = number_end;
            continue;
        } else if rest.starts_with(['{', '[']) {
            (pos, container_end(value, pos)) // everything inside, brackets included
        } else {
            continue; // true/false/null, or not JSON
        };
        if stop > start {
            out.stars(start, stop);
            counts.inc("secret_json");
            pos = stop;
        }
    }
    out.finish()
}

/// Mask path segments that look like random tokens (reset and magic links):
/// `(?<=/)[A-Za-z0-9_-]{20,256}(?=[/?#;]|$|[^A-Za-z0-9_.~%-])` before `?`/`#`.
fn scrub_path_segments(url: &str, counts: &mut Counts) -> Option<String> {
    let path_end = url.find(['?', '#']).unwrap_or(url.len());
    let b = &url.as_bytes()[..path_end];
    let mut out = Rebuild::new(url);
    let segment_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut i = 0;
    while let Some(slash) = b[i..].iter().position(|&c| c == b'/') {
        let s = i + slash + 1;
        let mut e = s;
        while e < b.len() && segment_char(b[e]) {
            e += 1;
        }
        i = e.max(s);
        let followed_ok = e == b.len() || !matches!(b[e], b'.' | b'~' | b'%');
        if (20..=256).contains(&(e - s)) && followed_ok && looks_generated(&url[s..e]) {
            counts.inc("url_path_secret");
            out.stars(s, e);
        }
        if i >= b.len() {
            break;
        }
    }
    out.finish()
}

/// `(?:https?:)?//[^\s"'<>]{1,2048}`: (start, end) of each URL in text.
fn urls_in_text(value: &str, mut found: impl FnMut(usize, usize)) {
    let mut pos = 0;
    while let Some(k) = value[pos..].find("//") {
        let j = pos + k;
        let (end, n) = run_end(value, j + 2, 2048, |c| !(py_isspace(c) || "\"'<>".contains(c)));
        if n == 0 {
            pos = j + 1;
            continue;
        }
        let b = value.as_bytes();
        let start = if j >= pos + 6 && &b[j - 6..j] == b"https:" {
            j - 6
        } else if j >= pos + 5 && &b[j - 5..j] == b"http:" {
            j - 5
        } else {
            j
        };
        found(start, end);
        pos = end;
    }
}

// --- the scrubber -------------------------------------------------------------

/// How [`Scrubber::scrub`] reads a string (today's defaults: [`ScrubOptions::TEXT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubOptions {
    /// A whole URL: its path segments are checked for random tokens.
    pub url: bool,
    /// A string leaf of a custom event or log: `Name: value` is a header line.
    pub payload: bool,
    /// No path segment is masked as a random token (asset URLs).
    pub keep_paths: bool,
    /// Outside URLs, runs that look generated are masked (False for class/id).
    pub random_tokens: bool,
}

impl ScrubOptions {
    pub const TEXT: Self = Self { url: false, payload: false, keep_paths: false, random_tokens: true };
}

/// The string scrubbers enabled for one site (built once per settings version).
#[pyclass(frozen, eq, hash, module = "replaypipe_masker_core")]
pub struct Scrubber {
    pub email: bool,
    pub card: bool,
    pub iban: bool,
    /// Configured parameter names, lower-case.
    query_params: HashSet<String>,
    /// Short texts `scrub` (default options) returned unchanged without counting
    /// anything: class names, labels, prices repeat across pages and sessions.
    /// `scrub` is a pure function of the fields and the text; bounded, cleared when full.
    clean: Mutex<HashSet<CleanText>>,
}

/// Bytes of a remembered clean text, kept in the memory's own slot (a longer
/// text is not remembered).
const CLEAN_TEXT_BYTES: usize = 63;

/// A clean text stored inline: a look-up reads the table's slot and nothing else
/// (a `String` there sent every comparison to another cache line for the bytes).
#[derive(Clone, PartialEq, Eq)]
struct CleanText {
    len: u8,
    bytes: [u8; CLEAN_TEXT_BYTES],
}

impl CleanText {
    fn new(value: &str) -> Option<Self> {
        let len = value.len();
        if len > CLEAN_TEXT_BYTES {
            return None;
        }
        let mut bytes = [0u8; CLEAN_TEXT_BYTES];
        bytes[..len].copy_from_slice(value.as_bytes());
        Some(Self { len: len as u8, bytes })
    }
}

impl std::borrow::Borrow<[u8]> for CleanText {
    fn borrow(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Hash for CleanText {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // as the borrowed form hashes, so a look-up by `&[u8]` finds it
        std::borrow::Borrow::<[u8]>::borrow(self).hash(state);
    }
}

impl PartialEq for Scrubber {
    fn eq(&self, other: &Self) -> bool {
        (self.email, self.card, self.iban) == (other.email, other.card, other.iban)
            && self.query_params == other.query_params
    }
}

impl Hash for Scrubber {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.email, self.card, self.iban).hash(state);
        let mut params: Vec<&String> = self.query_params.iter().collect();
        params.sort();
        params.hash(state);
    }
}

impl Scrubber {
    pub fn new(email: bool, card: bool, iban: bool, query_params: impl IntoIterator<Item = String>) -> Self {
        Self { email, card, iban, query_params: query_params.into_iter().collect(), clean: Mutex::default() }
    }

    /// From a site's `pii_detectors` and `scrub_query_params`.
    pub fn build<'a>(detectors: impl IntoIterator<Item = &'a str>, query_params: impl IntoIterator<Item = &'a str>) -> Self {
        let enabled: HashSet<&str> = detectors.into_iter().collect();
        let params = query_params
            .into_iter()
            .map(|p| p.trim_matches(py_isspace))
            .filter(|p| !p.is_empty())
            .map(str::to_lowercase);
        Self::new(enabled.contains("email"), enabled.contains("card"), enabled.contains("iban"), params)
    }

    /// Mask PII spans, known token formats and secret-named values, keeping the
    /// length; `None`: unchanged (the caller keeps its string).
    pub fn scrub(&self, value: &str, counts: &mut Counts, opts: ScrubOptions) -> Option<String> {
        let fast = fast_paths();
        // only texts scrubbed with the default rules are remembered: a value found
        // clean as a class or id (no random-token rule) may not be clean as text
        let plain = fast && opts == ScrubOptions::TEXT && value.len() <= 4 * MAX_CLEAN_CHARS && char_len(value) <= MAX_CLEAN_CHARS;
        if plain && value.len() <= CLEAN_TEXT_BYTES && self.clean.lock().expect("clean texts").contains(value.as_bytes()) {
            return None;
        }
        // the cheap gate first (one vectorised pass, left at the first digit):
        // most text has no trigger and needs no more than this
        if !may_need_scrub(value) {
            if plain {
                self.remember_clean(value);
            }
            return None;
        }
        let gates = TextGates::of(value);
        let before = counts.total();
        let result = self.scrub_all(value, counts, opts, fast, gates).filter(|r| r != value);
        if plain && result.is_none() && counts.total() == before {
            self.remember_clean(value);
        }
        result
    }

    fn remember_clean(&self, value: &str) {
        let Some(text) = CleanText::new(value) else { return };
        let mut clean = self.clean.lock().expect("clean texts");
        if clean.len() >= MAX_CLEAN_TEXTS {
            clean.clear();
        }
        clean.insert(text);
    }

    /// How many clean texts the scrubber remembers.
    pub fn clean_texts(&self) -> usize {
        self.clean.lock().expect("clean texts").len()
    }

    /// Every scan in order on `value`, whose [`TextGates`] are `gates`: with
    /// `fast`, a scan the gates prove cannot match is skipped.
    fn scrub_all(&self, value: &str, counts: &mut Counts, opts: ScrubOptions, fast: bool, gates: TextGates) -> Option<String> {
        let mut cur: Cow<'_, str> = Cow::Borrowed(value);
        // the gates of `cur`: read again after a scan changed it
        let mut gates = gates;
        let replace = |cur: &mut Cow<'_, str>, gates: &mut TextGates, new: Option<String>| {
            if let Some(s) = new {
                *gates = TextGates::of(&s);
                *cur = Cow::Owned(s);
            }
        };
        if gates.has(b'=') {
            let new = self.scrub_query(&cur, counts);
            replace(&mut cur, &mut gates, new);
            if gates.has(b'%') {
                let new = scrub_encoded_params(&cur, &self.query_params, counts);
                replace(&mut cur, &mut gates, new);
            }
        }
        if gates.has(b'"') && gates.has(b':') {
            let new = scrub_json_members(&cur, &self.query_params, counts);
            replace(&mut cur, &mut gates, new);
        }
        if opts.payload && gates.has(b':') {
            let new = scrub_header_lines(&cur, &self.query_params, counts);
            replace(&mut cur, &mut gates, new);
        }
        if opts.keep_paths {
        } else if opts.url {
            let new = scrub_path_segments(&cur, counts);
            replace(&mut cur, &mut gates, new);
        } else if gates.has(b'/') && cur.contains("//") {
            let text: &str = &cur;
            let mut out = Rebuild::new(text);
            urls_in_text(text, |s, e| {
                if let Some(scrubbed) = scrub_path_segments(&text[s..e], counts) {
                    out.put(s, e, &scrubbed);
                }
            });
            let new = out.finish();
            replace(&mut cur, &mut gates, new);
        }
        let fast_gates = fast.then_some(&gates);
        let text: &str = &cur;
        let mut spans = self.pii_spans(text, counts, fast_gates);
        // token_spans runs only the rules whose hints occur
        let mut found = Vec::new();
        token_spans(text, fast_gates.map(|g| g.seen), &mut found);
        for (count, span) in found {
            counts.inc(count);
            spans.push(span);
        }
        // a random token is a run of 20+ characters of its alphabet
        if opts.random_tokens && !opts.url && text.len() >= 20 && fast_gates.is_none_or(|g| g.token_run) {
            let before = spans.len();
            random_token_spans(text, &mut spans);
            counts.add("text_random_token", (spans.len() - before) as u64);
        }
        if spans.is_empty() {
            return match cur {
                Cow::Borrowed(_) => None,
                Cow::Owned(s) => Some(s),
            };
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (start, end) in spans {
            let start = start.max(last);
            if end <= start {
                continue;
            }
            out.push_str(&text[last..start]);
            push_masked(&mut out, &text[start..end]);
            last = end;
        }
        out.push_str(&text[last..]);
        Some(out)
    }

    /// Scrub a URL; `data:` URIs are left alone (base64 would give false PII hits).
    /// `asset`: the URL loads an image or media the replay shows, so its path
    /// segments are kept (content hashes look random); parameters are scrubbed.
    pub fn scrub_url(&self, value: &str, counts: &mut Counts, asset: bool) -> Option<String> {
        if value.len() >= 5 && value.as_bytes()[..5].eq_ignore_ascii_case(b"data:") {
            return None;
        }
        self.scrub(value, counts, ScrubOptions { url: true, payload: false, keep_paths: asset, random_tokens: true })
    }

    /// Mask `key=value` values whose key names a secret (or a configured
    /// parameter), and random-looking URL parameter values.
    pub fn scrub_query(&self, value: &str, counts: &mut Counts) -> Option<String> {
        let mut out = Rebuild::new(value);
        let mut pos = 0;
        while let Some((sep, k0, k1, end)) = next_key_value(value, pos) {
            pos = end;
            let raw = &value[k1 + 1..end];
            if raw.is_empty() || is_masked(raw) {
                continue;
            }
            let key = &value[k0..k1];
            if param_is_sensitive(key, &self.query_params) || (key_is_weak_secret(key) && looks_secret_value(raw)) {
                counts.inc("url_param");
            } else if k0 > sep && matches!(value.as_bytes()[sep], b'?' | b'&' | b'#') && looks_random(raw) {
                counts.inc("url_random_value");
            } else {
                continue;
            }
            out.stars(k1 + 1, end);
        }
        out.finish()
    }

    /// Sorted byte spans of every enabled detector's matches in `value`.
    pub fn find_pii(&self, value: &str, counts: &mut Counts) -> Vec<(usize, usize)> {
        let gates = fast_paths().then(|| TextGates::of(value));
        self.pii_spans(value, counts, gates.as_ref())
    }

    /// `gates`: [`TextGates`] of `value`, to skip the scans they prove cannot
    /// match (None: every enabled scan runs).
    fn pii_spans(&self, value: &str, counts: &mut Counts, gates: Option<&TextGates>) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        let may_hold_email = match gates {
            Some(g) => g.may_hold_email(value),
            None => value.contains('@') || value.contains("%40"),
        };
        if self.email && may_hold_email {
            email_spans(value, &mut spans, counts);
        }
        if self.card && value.len() >= 13 && gates.is_none_or(|g| g.card_digits >= 13) {
            let found = card_spans(value);
            counts.add("pii_card", found.len() as u64);
            spans.extend(found);
        }
        if self.iban && value.len() >= SHORTEST_IBAN && gates.is_none_or(|g| g.iban_start) {
            iban_spans(value, &mut spans, counts);
        }
        if spans.len() > 1 {
            spans.sort_unstable();
        }
        spans
    }
}

// --- the Python face ---------------------------------------------------------

fn strings(items: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    items.try_iter()?.map(|item| item?.extract::<String>()).collect()
}

/// Runs a rule for the Python face; a panic (a bug) becomes a `RuntimeError`
/// the masker's error path handles (dead-letter queue), not a
/// `BaseException` that would stop the worker. The message names no content.
pub(crate) fn guarded<T>(rule: &str, run: impl FnOnce() -> T) -> PyResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .map_err(|_| PyRuntimeError::new_err(format!("masker core: {rule} failed (a bug; the text is not shown)")))
}

/// Reports where a panic happened, never its message: messages of slicing
/// errors quote the text, which is client content.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("replaypipe_masker_core: panic at {at}");
    }));
}

/// The Python string for a scrub result: the same object when unchanged.
fn result_str<'py>(value: &Bound<'py, PyString>, result: Option<String>) -> Bound<'py, PyString> {
    match result {
        None => value.clone(),
        Some(text) => PyString::new(value.py(), &text),
    }
}

#[pymethods]
impl Scrubber {
    #[new]
    #[pyo3(signature = (email = true, card = true, iban = true, query_params = None))]
    fn py_new(email: bool, card: bool, iban: bool, query_params: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let params = match query_params {
            Some(p) => strings(p)?,
            None => Vec::new(),
        };
        Ok(Self::new(email, card, iban, params))
    }

    /// From a site's `pii_detectors` and `scrub_query_params`.
    #[staticmethod]
    #[pyo3(name = "build")]
    fn py_build(detectors: &Bound<'_, PyAny>, query_params: &Bound<'_, PyAny>) -> PyResult<Self> {
        let detectors = strings(detectors)?;
        let params = strings(query_params)?;
        Ok(Self::build(detectors.iter().map(String::as_str), params.iter().map(String::as_str)))
    }

    #[getter(email)]
    fn py_email(&self) -> bool {
        self.email
    }

    #[getter(card)]
    fn py_card(&self) -> bool {
        self.card
    }

    #[getter(iban)]
    fn py_iban(&self) -> bool {
        self.iban
    }

    #[getter(query_params)]
    fn py_query_params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        PyFrozenSet::new(py, &self.query_params)
    }

    #[pyo3(name = "scrub", signature = (value, counts, *, url = false, payload = false, keep_paths = false, random_tokens = true))]
    #[allow(clippy::too_many_arguments)]
    fn py_scrub<'py>(
        &self,
        value: &Bound<'py, PyString>,
        counts: &Bound<'py, PyAny>,
        url: bool,
        payload: bool,
        keep_paths: bool,
        random_tokens: bool,
    ) -> PyResult<Bound<'py, PyString>> {
        let text = py_str(value)?;
        let mut found = Counts::new();
        let opts = ScrubOptions { url, payload, keep_paths, random_tokens };
        let result = guarded("scrub", || self.scrub(&text, &mut found, opts))?;
        found.add_to_py(counts)?;
        Ok(result_str(value, result))
    }

    #[pyo3(name = "scrub_url", signature = (value, counts, *, asset = false))]
    fn py_scrub_url<'py>(&self, value: &Bound<'py, PyString>, counts: &Bound<'py, PyAny>, asset: bool) -> PyResult<Bound<'py, PyString>> {
        let text = py_str(value)?;
        let mut found = Counts::new();
        let result = guarded("scrub_url", || self.scrub_url(&text, &mut found, asset))?;
        found.add_to_py(counts)?;
        Ok(result_str(value, result))
    }

    #[pyo3(name = "scrub_query")]
    fn py_scrub_query<'py>(&self, value: &Bound<'py, PyString>, counts: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
        let text = py_str(value)?;
        let mut found = Counts::new();
        let result = guarded("scrub_query", || self.scrub_query(&text, &mut found))?;
        found.add_to_py(counts)?;
        Ok(result_str(value, result))
    }

    #[pyo3(name = "find_pii")]
    fn py_find_pii(&self, value: &Bound<'_, PyString>, counts: &Bound<'_, PyAny>) -> PyResult<Vec<(usize, usize)>> {
        let text = py_str(value)?;
        let mut found = Counts::new();
        let spans = guarded("find_pii", || self.find_pii(&text, &mut found))?;
        found.add_to_py(counts)?;
        Ok(byte_to_char_spans(&text, &spans))
    }

    /// How many clean texts the scrubber remembers (at most `MAX_CLEAN_TEXTS`).
    #[pyo3(name = "clean_texts")]
    fn py_clean_texts(&self) -> usize {
        self.clean_texts()
    }

    fn __repr__(&self) -> String {
        let mut params: Vec<&String> = self.query_params.iter().collect();
        params.sort();
        format!("Scrubber(email={}, card={}, iban={}, query_params={:?})", py_bool(self.email), py_bool(self.card), py_bool(self.iban), params)
    }
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

#[pyfunction(name = "mask_text")]
fn py_mask_text(value: &Bound<'_, PyString>) -> PyResult<String> {
    Ok(mask_text(&py_str(value)?))
}

#[pyfunction(name = "luhn_valid")]
fn py_luhn_valid(digits: &Bound<'_, PyString>) -> PyResult<bool> {
    let digits = py_str(digits)?;
    Ok(digits.bytes().all(|b| b.is_ascii_digit()) && luhn_valid(&digits))
}

#[pyfunction(name = "iban_valid")]
fn py_iban_valid(compact: &Bound<'_, PyString>) -> PyResult<bool> {
    Ok(iban_valid(&py_str(compact)?))
}

/// True if a JSON integer has a card number's length and checksum.
#[pyfunction(name = "card_number")]
fn py_card_number(number: &Bound<'_, PyAny>) -> PyResult<bool> {
    let digits = number.str()?;
    Ok(card_number(&py_str(&digits)?))
}

#[pyfunction(name = "looks_random")]
fn py_looks_random(value: &Bound<'_, PyString>) -> PyResult<bool> {
    Ok(looks_random(&py_str(value)?))
}

#[pyfunction(name = "looks_generated")]
fn py_looks_generated(value: &Bound<'_, PyString>) -> PyResult<bool> {
    Ok(looks_generated(&py_str(value)?))
}

#[pyfunction(name = "looks_secret_value")]
fn py_looks_secret_value(value: &Bound<'_, PyString>) -> PyResult<bool> {
    Ok(looks_secret_value(&py_str(value)?))
}

#[pyfunction(name = "random_token_spans")]
fn py_random_token_spans<'py>(py: Python<'py>, value: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyList>> {
    let text = py_str(value)?;
    let mut spans = Vec::new();
    random_token_spans(&text, &mut spans);
    PyList::new(py, byte_to_char_spans(&text, &spans))
}

#[pyfunction(name = "may_need_scrub")]
fn py_may_need_scrub(value: &Bound<'_, PyString>) -> PyResult<bool> {
    Ok(may_need_scrub(&py_str(value)?))
}

/// Card candidate spans (code points) in `value`, without the gate (tests).
#[pyfunction(name = "card_spans")]
fn py_card_spans(value: &Bound<'_, PyString>) -> PyResult<Vec<(usize, usize)>> {
    let text = py_str(value)?;
    Ok(byte_to_char_spans(&text, &card_spans(&text)))
}

/// Tests only: False runs every scan a gate or the clean-text memory would skip.
#[pyfunction(name = "set_fast_paths")]
fn py_set_fast_paths(enabled: bool) {
    FAST_PATHS.store(enabled, Ordering::Relaxed);
}

/// Registers the string rules with the Python module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    quiet_panics();
    m.add_class::<Scrubber>()?;
    m.add_function(wrap_pyfunction!(py_mask_text, m)?)?;
    m.add_function(wrap_pyfunction!(py_luhn_valid, m)?)?;
    m.add_function(wrap_pyfunction!(py_iban_valid, m)?)?;
    m.add_function(wrap_pyfunction!(py_card_number, m)?)?;
    m.add_function(wrap_pyfunction!(py_looks_random, m)?)?;
    m.add_function(wrap_pyfunction!(py_looks_generated, m)?)?;
    m.add_function(wrap_pyfunction!(py_looks_secret_value, m)?)?;
    m.add_function(wrap_pyfunction!(py_random_token_spans, m)?)?;
    m.add_function(wrap_pyfunction!(py_may_need_scrub, m)?)?;
    m.add_function(wrap_pyfunction!(py_card_spans, m)?)?;
    m.add_function(wrap_pyfunction!(py_set_fast_paths, m)?)?;
    m.add("MASK_CHAR", MASK_CHAR.to_string())?;
    m.add("MAX_CANDIDATE_CHARS", MAX_CANDIDATE_CHARS)?;
    m.add("MAX_CLEAN_TEXTS", MAX_CLEAN_TEXTS)?;
    m.add("MAX_CLEAN_CHARS", MAX_CLEAN_CHARS)?;
    let lengths: HashMap<&str, usize> = IBAN_LENGTHS.iter().map(|(k, v)| (*k, *v)).collect();
    m.add("IBAN_LENGTHS", lengths)?;
    crate::token_rules::register(m)?;
    crate::sensitivity::register(m)?;
    Ok(())
}
