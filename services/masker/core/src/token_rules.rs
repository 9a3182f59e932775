//! Known credential formats, each naming the scanner rule it comes from
//! (`services/masker/token_rules.py` re-exports them).
//!
//! Formats with a fixed, distinctive prefix, so a hit in page text is a
//! credential, not a word. Every pattern matches a bounded number of characters
//! and a rule runs only on text holding one of its literal `hints`. Python's
//! look-arounds are written as explicit checks: `\b` is ASCII (`(?-u:\b)`), which
//! finds a boundary wherever Python's Unicode one does and a few more places
//! (a token right after an accented letter is masked too).
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};
use regex::{Regex, RegexBuilder};

use crate::detectors::{byte_to_char_spans, py_str};

/// What is checked after a rule's pattern matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    /// `Basic <value>`: only a value that decodes to printable `user:password`.
    BasicCredentials,
    /// `Bearer <value>`: not a word ("Bearer authentication").
    NotAWord,
    /// The pattern is a PEM header: its body and END line are read by hand.
    PrivateKey,
}

/// One credential format: the group `secret` of `pattern` (or the group `m`,
/// or the whole match) is masked.
#[derive(Debug)]
pub struct TokenRule {
    pub name: &'static str,
    /// The count's rule name, `token_<name>`.
    pub count: &'static str,
    /// The scanner rule this follows (gitleaks id, detect-secrets plugin, Relay rule).
    pub source: &'static str,
    /// Literals one of which every match contains.
    pub hints: Vec<String>,
    pub pattern: Regex,
    check: Check,
}

const WS: &str = r"\s\x1c-\x1f"; // Python's \s inside a class

fn rule(name: &'static str, count: &'static str, source: &'static str, hint: &str, pattern: &str, fold: bool, check: Check) -> TokenRule {
    let mut hints: Vec<String> = Vec::new();
    for h in hint.split('|') {
        let variants = if fold {
            let mut cap = h[..1].to_uppercase();
            cap.push_str(&h[1..].to_lowercase());
            vec![h.to_owned(), h.to_uppercase(), cap]
        } else {
            vec![h.to_owned()]
        };
        for v in variants {
            if !hints.contains(&v) {
                hints.push(v);
            }
        }
    }
    let pattern = pattern.replace("\\s", &format!("[{WS}]"));
    let pattern = RegexBuilder::new(&pattern)
        .size_limit(64 << 20)
        .build()
        .unwrap_or_else(|e| panic!("token rule {name}: {e}"));
    TokenRule { name, count, source, hints, pattern, check }
}

/// The table, in the order rules are applied.
pub static TOKEN_RULES: LazyLock<Vec<TokenRule>> = LazyLock::new(|| {
    use Check::*;
    vec![
        rule("jwt", "token_jwt", "gitleaks:jwt", "eyJ",
             r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,2048}\.eyJ[A-Za-z0-9_-]{2,4096}\.[A-Za-z0-9_-]{0,1024}", false, None),
        rule("aws_access_key", "token_aws_access_key", "gitleaks:aws-access-token", "AKIA|ASIA|ABIA|ACCA|A3T",
             r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?-u:\b)", false, None),
        rule("github_token", "token_github_token", "gitleaks:github-pat,github-oauth,github-app-token",
             "ghp_|gho_|ghu_|ghs_|ghr_", r"(?-u:\b)gh[pousr]_[A-Za-z0-9]{36,255}", false, None),
        rule("github_fine_grained_token", "token_github_fine_grained_token", "gitleaks:github-fine-grained-pat",
             "github_pat_", r"(?-u:\b)github_pat_[A-Za-z0-9_]{82}", false, None),
        rule("slack_token", "token_slack_token", "gitleaks:slack-bot-token,slack-user-token", "xox",
             r"(?-u:\b)xox[baprse]-[A-Za-z0-9-]{10,250}", false, None),
        // gitleaks' stripe-access-token is sk_/rk_; publishable pk_ keys too (a
        // "stripe_pk" parameter): public by design, but still an account identifier.
        rule("stripe_key", "token_stripe_key", "gitleaks:stripe-access-token", "_live_|_prod_",
             r"(?-u:\b)(?:sk|rk|pk)_(?:live|prod)_[A-Za-z0-9]{10,250}", false, None),
        rule("stripe_key", "token_stripe_key", "gitleaks:stripe-access-token", "_test_",
             r"(?-u:\b)(?:sk|rk|pk)_test_[A-Za-z0-9]{10,250}", false, None),
        // Stripe's webhook signing secrets (whsec_ + 32+ base62; trufflehog's
        // Stripe detector family): the part after the prefix.
        rule("stripe_webhook_secret", "token_stripe_webhook_secret", "vendor:stripe-webhook-signing-secret",
             "whsec_", r"(?-u:\b)whsec_(?P<secret>[A-Za-z0-9]{24,250})", false, None),
        rule("slack_webhook", "token_slack_webhook", "gitleaks:slack-webhook-url", "hooks.slack.com",
             r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9+/]{20,100})", false, None),
        rule("slack_app_token", "token_slack_app_token", "gitleaks:slack-app-token", "xapp-",
             r"(?-u:\b)xapp-[0-9]-[A-Z0-9]{1,20}-[0-9]{1,20}-[a-z0-9]{10,100}", false, None),
        rule("gitlab_token", "token_gitlab_token", "gitleaks:gitlab-pat,gitlab-ptt,gitlab-rrt",
             "glpat-|glptt-|GR1348941",
             r"(?-u:\b)(?:glpat-[A-Za-z0-9_-]{20,100}|glptt-[0-9a-f]{40}|GR1348941[A-Za-z0-9_-]{20})", false, None),
        rule("npm_token", "token_npm_token", "gitleaks:npm-access-token", "npm_",
             r"(?-u:\b)npm_[A-Za-z0-9]{36}", false, None),
        rule("pypi_token", "token_pypi_token", "gitleaks:pypi-upload-token", "pypi-AgEIcHlwaS5vcmc",
             r"(?-u:\b)pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,1000}", false, None),
        rule("sendgrid_key", "token_sendgrid_key", "gitleaks:sendgrid-api-token", "SG.",
             r"(?-u:\b)SG\.[A-Za-z0-9_-]{20,24}\.[A-Za-z0-9_-]{39,50}", false, None),
        rule("openai_key", "token_openai_key", "gitleaks:openai-api-key", "sk-proj-|sk-svcacct-|sk-admin-|T3BlbkFJ",
             r"(?-u:\b)sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,300}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})", false, None),
        rule("anthropic_key", "token_anthropic_key", "gitleaks:anthropic-api-key,anthropic-admin-api-key", "sk-ant-",
             r"(?-u:\b)sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{20,200}", false, None),
        rule("shopify_token", "token_shopify_token", "gitleaks:shopify-access-token,shopify-shared-secret",
             "shpat_|shpca_|shppa_|shpss_", r"(?-u:\b)shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}", false, None),
        rule("twilio_key", "token_twilio_key", "gitleaks:twilio-api-key", "SK",
             r"(?-u:\b)SK[0-9a-fA-F]{32}(?-u:\b)", false, None),
        rule("mailgun_key", "token_mailgun_key", "gitleaks:mailgun-private-api-token", "key-",
             r"(?-u:\b)key-[a-f0-9]{32}(?-u:\b)", false, None),
        rule("square_token", "token_square_token", "gitleaks:square-access-token,square-secret", "sq0atp-|sq0csp-|EAAA",
             r"(?-u:\b)(?:sq0atp-[A-Za-z0-9_-]{22}|sq0csp-[A-Za-z0-9_-]{43}|EAAA[A-Za-z0-9_-]{60})", false, None),
        rule("digitalocean_token", "token_digitalocean_token", "gitleaks:digitalocean-pat,digitalocean-access-token",
             "dop_v1_|doo_v1_|dor_v1_", r"(?-u:\b)do[opr]_v1_[a-f0-9]{64}", false, None),
        rule("hashicorp_vault_token", "token_hashicorp_vault_token", "gitleaks:vault-service-token,vault-batch-token",
             "hvs.|hvb.", r"(?-u:\b)hv[sb]\.[A-Za-z0-9_-]{24,200}", false, None),
        rule("sentry_token", "token_sentry_token", "gitleaks:sentry-org-token,sentry-user-token", "sntrys_|sntryu_",
             r"(?-u:\b)sntry[su]_[A-Za-z0-9_=+/]{40,300}", false, None),
        rule("postman_key", "token_postman_key", "gitleaks:postman-api-token", "PMAK-",
             r"(?-u:\b)PMAK-[a-f0-9]{24}-[a-f0-9]{34}", false, None),
        rule("linear_key", "token_linear_key", "gitleaks:linear-api-key", "lin_api_",
             r"(?-u:\b)lin_api_[A-Za-z0-9]{40}", false, None),
        rule("age_secret_key", "token_age_secret_key", "gitleaks:age-secret-key", "AGE-SECRET-KEY-1",
             r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", false, None),
        // (?![A-Za-z0-9_-]) as a consumed guard; the span is the group m.
        rule("telegram_bot_token", "token_telegram_bot_token", "gitleaks:telegram-bot-api-token", ":A",
             r"\b(?P<m>\d{5,16}:A[A-Za-z0-9_-]{34})(?:[^A-Za-z0-9_-]|$)", false, None),
        rule("mapbox_token", "token_mapbox_token", "gitleaks:mapbox-api-token", "sk.eyJ|pk.eyJ",
             r"(?-u:\b)[ps]k\.eyJ[A-Za-z0-9_-]{20,2048}\.[A-Za-z0-9_-]{20,256}", false, None),
        rule("google_api_key", "token_google_api_key", "gitleaks:gcp-api-key", "AIza",
             r"(?-u:\b)AIza[0-9A-Za-z_-]{35}", false, None),
        // the body up to its END line (or 8000 characters of a truncated key): read by hand
        rule("private_key", "token_private_key", "gitleaks:private-key", "PRIVATE KEY",
             r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY[ A-Z]{0,10}-----", false, PrivateKey),
        rule("bearer", "token_bearer", "relay:@bearer", "bearer",
             r"(?i:(?-u:\b)bearer)\s{1,4}(?P<secret>[A-Za-z0-9._~+/-]{8,4096}={0,2})", true, NotAWord),
        // (?![A-Za-z0-9+/=]) as a consumed guard after the secret
        rule("basic_auth", "token_basic_auth", "detect-secrets:BasicAuthDetector", "basic",
             r"(?i:(?-u:\b)basic)\s{1,4}(?P<secret>[A-Za-z0-9+/]{8,2048}={0,2})(?:[^A-Za-z0-9+/=]|$)", true, BasicCredentials),
        rule("url_credentials", "token_url_credentials", "detect-secrets:BasicAuthDetector", "://",
             r#"(?-u:\b)[A-Za-z][A-Za-z0-9+.-]{0,19}://[^\s/?#@:"'<>]{1,256}:(?P<secret>[^\s/?#@"'<>]{1,256})@"#, false, None),
    ]
});

/// Every hint of every rule, deduplicated, in rule order (`TOKEN_HINTS`).
pub static TOKEN_HINTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut hints: Vec<String> = Vec::new();
    for rule in TOKEN_RULES.iter() {
        for h in &rule.hints {
            if !hints.contains(h) {
                hints.push(h.clone());
            }
        }
    }
    hints
});

/// One scan for every rule's hints; pattern i belongs to `HINT_RULES[i]`.
static HINT_SCAN: LazyLock<(AhoCorasick, Vec<usize>)> = LazyLock::new(|| {
    let mut hints = Vec::new();
    let mut owners = Vec::new();
    for (i, rule) in TOKEN_RULES.iter().enumerate() {
        for h in &rule.hints {
            hints.push(h.as_str());
            owners.push(i);
        }
    }
    let scan = AhoCorasick::builder()
        .kind(Some(AhoCorasickKind::DFA))
        .build(hints)
        .expect("token hints");
    (scan, owners)
});

/// The ASCII bytes a text holds, as a set: bit `b` is set if byte `b` occurs.
/// A text lacking one byte of a literal cannot hold the literal.
pub fn ascii_bytes(value: &str) -> u128 {
    // Two 64-bit halves, each byte's bit selected without a branch, four bytes
    // at a time into separate sets (no chain of dependent ORs): the gate reads
    // every byte of most texts, and a 128-bit shift per byte was its cost.
    #[inline(always)]
    fn add(b: u8, lo: &mut u64, hi: &mut u64) {
        let bit = 1u64 << (b & 63);
        *lo |= if b < 64 { bit } else { 0 };
        *hi |= if (64..128).contains(&b) { bit } else { 0 };
    }
    let bytes = value.as_bytes();
    let mut sets = [(0u64, 0u64); 4];
    let mut quads = bytes.chunks_exact(4);
    for quad in &mut quads {
        for (set, &b) in sets.iter_mut().zip(quad) {
            add(b, &mut set.0, &mut set.1);
        }
    }
    for &b in quads.remainder() {
        add(b, &mut sets[0].0, &mut sets[0].1);
    }
    sets.iter().fold(0u128, |seen, &(lo, hi)| seen | u128::from(lo) | (u128::from(hi) << 64))
}

/// Every hint with its rule and its bytes (as [`ascii_bytes`] reads them).
static HINT_BYTES: LazyLock<Vec<(&'static str, usize, u128)>> = LazyLock::new(|| {
    TOKEN_RULES
        .iter()
        .enumerate()
        .flat_map(|(i, rule)| rule.hints.iter().map(move |h| (h.as_str(), i, ascii_bytes(h))))
        .collect()
});

/// How common a byte is in page text (higher: more common); a hint is filed
/// under its rarest byte. Only speed depends on it: every hint is still checked
/// whole wherever it is filed.
fn commonness(b: u8) -> u32 {
    match b {
        b' ' | b'.' => 40,
        b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'h' | b'r' => 30,
        b'a'..=b'z' => 20,
        b'0'..=b'9' => 15,
        b'A'..=b'Z' => 10,
        b'-' | b'/' | b':' => 8,
        _ => 1,
    }
}

/// [`HINT_BYTES`] filed by each hint's rarest byte: `keys` has a bit per byte
/// that files a hint, `filed[b]` the positions (in `HINT_BYTES`) filed under `b`.
struct HintIndex {
    keys: u128,
    filed: Vec<Vec<usize>>,
}

static HINT_INDEX: LazyLock<HintIndex> = LazyLock::new(|| {
    let mut index = HintIndex { keys: 0, filed: vec![Vec::new(); 128] };
    for (at, &(hint, _, _)) in HINT_BYTES.iter().enumerate() {
        // hints are ASCII; the rarest byte, the first of equals
        let key = hint.bytes().filter(u8::is_ascii).min_by_key(|b| commonness(*b)).expect("a hint");
        index.keys |= 1 << key;
        index.filed[usize::from(key)].push(at);
    }
    index
});

/// Calls `hinted` with the position in [`HINT_BYTES`] of every hint whose bytes all
/// occur in a text whose [`ascii_bytes`] are `seen` (each hint is filed under one of
/// its bytes, so only hints filed under a byte of the text are read); stops when
/// `hinted` returns true.
fn possible_hints(seen: u128, mut hinted: impl FnMut(usize) -> bool) -> bool {
    let index = &*HINT_INDEX;
    let mut keys = seen & index.keys;
    while keys != 0 {
        let key = keys.trailing_zeros() as usize;
        keys &= keys - 1;
        for &at in &index.filed[key] {
            if HINT_BYTES[at].2 & !seen == 0 && hinted(at) {
                return true;
            }
        }
    }
    false
}

/// Exactly `any(hint in value for hint in TOKEN_HINTS)`.
pub fn may_hold_token(value: &str) -> bool {
    may_hold_token_with(value, ascii_bytes(value))
}

/// [`may_hold_token`] given `seen`, the [`ascii_bytes`] of `value`: a hint is
/// searched only if all its bytes occur (most text lacks most hints' capitals
/// and punctuation).
pub fn may_hold_token_with(value: &str, seen: u128) -> bool {
    possible_hints(seen, |at| value.contains(HINT_BYTES[at].0))
}

/// Bit i set: rule i has a hint in `value` (at most 64 rules); `seen`: the
/// [`ascii_bytes`] of `value`, or None for the one automaton pass over every
/// hint (the scan the byte gate stands for; tests compare the two).
fn rules_hinted(value: &str, seen: Option<u128>) -> u64 {
    let mut bits = 0u64;
    match seen {
        Some(seen) => {
            possible_hints(seen, |at| {
                let (hint, rule, _) = HINT_BYTES[at];
                if bits & (1 << rule) == 0 && value.contains(hint) {
                    bits |= 1 << rule;
                }
                false // every hinted rule, not only the first
            });
        }
        None => {
            let (scan, owners) = &*HINT_SCAN;
            for m in scan.find_overlapping_iter(value) {
                bits |= 1 << owners[m.pattern().as_usize()];
            }
        }
    }
    bits
}

static BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Printable as Python's `str.isprintable` reads it, or close to it on the
/// permissive side (a value read as printable is masked).
fn printable(c: char) -> bool {
    c == ' '
        || !(c.is_control()
            || c.is_whitespace()
            || matches!(c, '\u{ad}' | '\u{600}'..='\u{605}' | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

/// A `Basic` value is a credential only if it decodes to printable `user:password`.
/// Python's `b64decode(padded, validate=True)` accepts any padding after the
/// data, so only the data characters are decoded (their count mod 4 is never 1).
fn basic_credentials(candidate: &str) -> bool {
    let data = candidate.trim_end_matches('=');
    if data.len() % 4 == 1 {
        return false;
    }
    let Ok(decoded) = BASE64.decode(data.as_bytes()) else {
        return false;
    };
    let text = String::from_utf8_lossy(&decoded);
    text.contains(':') && text.chars().all(printable)
}

/// End of a PEM private key's body (and END line) starting at `pos`.
fn private_key_end(value: &str, pos: usize) -> usize {
    static END_LINE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^-----END[ A-Z0-9]{0,40}PRIVATE KEY[ A-Z]{0,10}-----").expect("END line")
    });
    let mut end = pos;
    for (taken, (i, c)) in value[pos..].char_indices().enumerate() {
        if taken == 8000 {
            break;
        }
        let body = c.is_ascii_alphanumeric()
            || matches!(c, '+' | '/' | '=' | ':' | ',')
            || crate::sensitivity::py_isspace(c)
            || (c == '-' && !value[pos + i + 1..].starts_with("----END"));
        if !body {
            break;
        }
        end = pos + i + c.len_utf8();
    }
    match END_LINE.find(&value[end..]) {
        Some(m) => end + m.end(),
        None => end,
    }
}

/// (count name, byte span to mask) of every known credential format in `value`.
///
/// `seen`: the [`ascii_bytes`] of `value` (None: every hint searched in one
/// automaton pass instead of the byte gate).
pub fn token_spans(value: &str, seen: Option<u128>, found: &mut Vec<(&'static str, (usize, usize))>) {
    let hinted = rules_hinted(value, seen);
    if hinted == 0 {
        return;
    }
    for (i, rule) in TOKEN_RULES.iter().enumerate() {
        if hinted & (1 << i) != 0 {
            rule_spans(rule, value, found);
        }
    }
}

fn rule_spans(rule: &TokenRule, value: &str, found: &mut Vec<(&'static str, (usize, usize))>) {
    let re = &rule.pattern;
    let secret = re.capture_names().any(|n| n == Some("secret"));
    let group_m = re.capture_names().any(|n| n == Some("m"));
    let mut pos = 0;
    while pos <= value.len() {
        if rule.check == Check::PrivateKey {
            let Some(m) = re.find_at(value, pos) else { break };
            let end = private_key_end(value, m.end());
            found.push((rule.count, (m.start(), end)));
            pos = end.max(m.start() + 1);
            continue;
        }
        if !secret && !group_m {
            let Some(m) = re.find_at(value, pos) else { break };
            found.push((rule.count, (m.start(), m.end())));
            pos = m.end().max(m.start() + 1);
            continue;
        }
        let Some(caps) = re.captures_at(value, pos) else { break };
        let whole = caps.get(0).expect("group 0");
        if group_m {
            let m = caps.name("m").expect("group m");
            found.push((rule.count, (m.start(), m.end())));
            pos = m.end();
            continue;
        }
        let s = caps.name("secret").expect("group secret");
        // the guard consumed after the secret belongs to the next search
        pos = s.end().max(whole.start() + 1);
        let keep = match rule.check {
            Check::BasicCredentials => basic_credentials(s.as_str()),
            Check::NotAWord => !s.as_str().bytes().all(|b| b.is_ascii_alphabetic()),
            _ => true,
        };
        if rule.check != Check::BasicCredentials {
            pos = whole.end();
        }
        if keep {
            found.push((rule.count, (s.start(), s.end())));
        }
    }
}

// --- the Python face ---------------------------------------------------------

#[pyfunction(name = "token_spans")]
fn py_token_spans<'py>(py: Python<'py>, value: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyList>> {
    let text = py_str(value)?;
    let mut found = Vec::new();
    token_spans(&text, Some(ascii_bytes(&text)), &mut found);
    let spans: Vec<(usize, usize)> = found.iter().map(|(_, s)| *s).collect();
    let spans = byte_to_char_spans(&text, &spans);
    let items: Vec<(&str, (usize, usize))> =
        found.iter().zip(spans).map(|((count, _), span)| (&count["token_".len()..], span)).collect();
    PyList::new(py, items)
}

#[pyfunction(name = "may_hold_token")]
fn py_may_hold_token(value: &Bound<'_, PyString>) -> PyResult<bool> {
    Ok(may_hold_token(&py_str(value)?))
}

/// (name, source, hints, pattern source) of every rule, in order.
#[pyfunction(name = "token_rule_table")]
fn py_token_rule_table() -> Vec<(&'static str, &'static str, Vec<String>, String)> {
    TOKEN_RULES
        .iter()
        .map(|r| (r.name, r.source, r.hints.clone(), r.pattern.as_str().to_owned()))
        .collect()
}

/// Registers the token rules with the Python module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_token_spans, m)?)?;
    m.add_function(wrap_pyfunction!(py_may_hold_token, m)?)?;
    m.add_function(wrap_pyfunction!(py_token_rule_table, m)?)?;
    m.add("TOKEN_HINTS", TOKEN_HINTS.clone())?;
    Ok(())
}
