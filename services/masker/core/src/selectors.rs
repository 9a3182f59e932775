//! The site's CSS selector subset, matched against serialised rrweb element
//! nodes: the one implementation behind `services/masker/selectors.py`.
//!
//! Supported: compound selectors made of a tag (`input`), `*`, `#id`, `.class`
//! and attribute tests `[attr]`, `[attr=v]`, `[attr~=v]`, `[attr^=v]`,
//! `[attr$=v]`, `[attr*=v]`, `[attr|=v]` (values quoted or not, matched
//! case-sensitively except tag names); the descendant combinator (whitespace),
//! with `>` read as a descendant too (a superset: the safe side for masking);
//! selector lists separated by commas. Pseudo-classes and pseudo-elements are
//! dropped from their compound (again a superset). A selector that cannot be
//! parsed compiles to `*`: when unsure, mask.
//!
//! The tokenizer is hand-written to accept exactly what the Python regex of
//! the former implementation accepted, with Python's `\s` (`str.isspace`).
use std::fmt;
use std::hash::{Hash, Hasher};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::json_doc::{obj_get, Json, Pairs};
use crate::py_json::py_attrs;
use pyo3::types::{PyDict, PyFrozenSet, PyString, PyTuple};

pyo3::create_exception!(
    replaypipe_masker_core,
    SelectorError,
    PyValueError,
    "A selector outside the supported subset; the message names the selector."
);

/// The operator of an attribute test (`[name op value]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrOp {
    /// `[name]`: the attribute is present.
    Exists,
    Equals,
    Includes,
    Prefix,
    Suffix,
    Substring,
    DashMatch,
}

impl AttrOp {
    /// The operator as written in CSS (`""` for a bare `[name]`).
    pub fn as_str(self) -> &'static str {
        match self {
            AttrOp::Exists => "",
            AttrOp::Equals => "=",
            AttrOp::Includes => "~=",
            AttrOp::Prefix => "^=",
            AttrOp::Suffix => "$=",
            AttrOp::Substring => "*=",
            AttrOp::DashMatch => "|=",
        }
    }

    /// The operator written `op` (`None` outside the subset).
    pub fn parse(op: &str) -> Option<AttrOp> {
        Some(match op {
            "" => AttrOp::Exists,
            "=" => AttrOp::Equals,
            "~=" => AttrOp::Includes,
            "^=" => AttrOp::Prefix,
            "$=" => AttrOp::Suffix,
            "*=" => AttrOp::Substring,
            "|=" => AttrOp::DashMatch,
            _ => return None,
        })
    }

    /// Whether an attribute's (string) value passes this test.
    pub fn test(self, actual: &str, expected: &str) -> bool {
        match self {
            AttrOp::Exists => true,
            AttrOp::Equals => actual == expected,
            AttrOp::Includes => split_py_whitespace(actual).any(|t| t == expected),
            AttrOp::Prefix => !expected.is_empty() && actual.starts_with(expected),
            AttrOp::Suffix => !expected.is_empty() && actual.ends_with(expected),
            AttrOp::Substring => !expected.is_empty() && actual.contains(expected),
            AttrOp::DashMatch => {
                actual == expected
                    || (actual.len() > expected.len()
                        && actual.starts_with(expected)
                        && actual.as_bytes()[expected.len()] == b'-')
            }
        }
    }
}

/// One attribute test of a compound; `key` is the name as an interned Python
/// string, so matching looks it up in an rrweb `attributes` dict without
/// building a string per element.
#[derive(Debug)]
pub struct AttrTest {
    pub name: String,
    pub op: AttrOp,
    pub value: String,
}

/// One compound selector: every part must hold on the same element.
#[pyclass(frozen, module = "replaypipe_masker_core")]
#[derive(Debug)]
pub struct Compound {
    /// Lower-case tag name; `None` for `*` or no tag.
    pub tag: Option<String>,
    pub element_id: Option<String>,
    pub classes: Vec<String>,
    pub attrs: Vec<AttrTest>,
    /// Attribute names the compound looks at (`class` and `id` included),
    /// deduplicated, with their interned Python strings.
    referenced: Vec<(String, Py<PyString>)>,
}

impl Compound {
    /// A compound from its parts (the tag already lower-cased, `None` for `*`).
    pub fn new(
        py: Python<'_>,
        tag: Option<String>,
        element_id: Option<String>,
        classes: Vec<String>,
        attrs: Vec<(String, AttrOp, String)>,
    ) -> Compound {
        let attrs: Vec<AttrTest> = attrs
            .into_iter()
            .map(|(name, op, value)| AttrTest {
                name,
                op,
                value,
            })
            .collect();
        let mut referenced: Vec<(String, Py<PyString>)> = Vec::new();
        let extra = [
            (!classes.is_empty()).then_some("class"),
            element_id.is_some().then_some("id"),
        ];
        for name in attrs
            .iter()
            .map(|a| a.name.as_str())
            .chain(extra.into_iter().flatten())
        {
            if !referenced.iter().any(|(r, _)| r == name) {
                referenced.push((name.to_owned(), PyString::intern(py, name).unbind()));
            }
        }
        Compound {
            tag,
            element_id,
            classes,
            attrs,
            referenced,
        }
    }

    /// The compound that matches every element (`*`).
    pub fn any(py: Python<'_>) -> Compound {
        Compound::new(py, None, None, Vec::new(), Vec::new())
    }

    /// Attribute names this compound looks at (`class` and `id` included).
    pub fn referenced_attributes(&self) -> impl Iterator<Item = &str> {
        self.referenced.iter().map(|(name, _)| name.as_str())
    }

    fn same_as(&self, other: &Compound) -> bool {
        self.tag == other.tag
            && self.element_id == other.element_id
            && self.classes == other.classes
            && self.attrs.len() == other.attrs.len()
            && self
                .attrs
                .iter()
                .zip(&other.attrs)
                .all(|(a, b)| a.name == b.name && a.op == b.op && a.value == b.value)
    }

    fn hash_into(&self, state: &mut impl Hasher) {
        self.tag.hash(state);
        self.element_id.hash(state);
        self.classes.hash(state);
        for a in &self.attrs {
            (&a.name, a.op, &a.value).hash(state);
        }
    }
}

#[pymethods]
impl Compound {
    #[new]
    #[pyo3(signature = (tag=None, element_id=None, classes=Vec::new(), attrs=Vec::new()))]
    fn py_new(
        py: Python<'_>,
        tag: Option<String>,
        element_id: Option<String>,
        classes: Vec<String>,
        attrs: Vec<(String, String, String)>,
    ) -> PyResult<Compound> {
        let mut tests = Vec::with_capacity(attrs.len());
        for (name, op, value) in attrs {
            let op = AttrOp::parse(&op).ok_or_else(|| {
                PyValueError::new_err(format!("unknown attribute operator {op:?}"))
            })?;
            tests.push((name, op, value));
        }
        Ok(Compound::new(py, tag, element_id, classes, tests))
    }

    #[getter(tag)]
    fn py_tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    #[getter(element_id)]
    fn py_element_id(&self) -> Option<&str> {
        self.element_id.as_deref()
    }

    #[getter(classes)]
    fn py_classes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.classes)
    }

    /// `(name, operator or "", value)` per attribute test.
    #[getter(attrs)]
    fn py_attrs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            self.attrs
                .iter()
                .map(|a| (a.name.as_str(), a.op.as_str(), a.value.as_str())),
        )
    }

    /// Attribute names this compound looks at (`class` and `id` included).
    #[pyo3(name = "referenced_attributes")]
    fn py_referenced_attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        PyFrozenSet::new(py, self.referenced_attributes())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Compound>()
            .is_ok_and(|o| self.same_as(o.get()))
    }

    fn __hash__(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash_into(&mut h);
        h.finish()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let attrs = self.py_attrs(py)?;
        Ok(format!(
            "Compound(tag={}, element_id={}, classes={}, attrs={})",
            self.tag
                .as_deref()
                .map_or("None".into(), |t| py_repr(py, t)),
            self.element_id
                .as_deref()
                .map_or("None".into(), |t| py_repr(py, t)),
            self.py_classes(py)?.repr()?,
            attrs.repr()?,
        ))
    }
}

/// A chain of compounds joined by descendant combinators (outermost first).
#[pyclass(frozen, module = "replaypipe_masker_core")]
#[derive(Debug)]
pub struct Selector {
    pub source: String,
    /// Never empty; Python objects so `Selector.parts` hands out the same ones.
    pub parts: Vec<Py<Compound>>,
}

impl Selector {
    /// The compound at `index` (outermost first).
    pub fn part(&self, index: usize) -> &Compound {
        self.parts[index].get()
    }
}

#[pymethods]
impl Selector {
    #[new]
    fn py_new(source: String, parts: Vec<Py<Compound>>) -> PyResult<Selector> {
        if parts.is_empty() {
            return Err(PyValueError::new_err(
                "a selector needs at least one compound",
            ));
        }
        Ok(Selector { source, parts })
    }

    #[getter(source)]
    fn py_source(&self) -> &str {
        &self.source
    }

    #[getter(parts)]
    fn py_parts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.parts.iter().map(|p| p.bind(py)))
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Selector>().is_ok_and(|o| {
            let o = o.get();
            self.source == o.source
                && self.parts.len() == o.parts.len()
                && self
                    .parts
                    .iter()
                    .zip(&o.parts)
                    .all(|(a, b)| a.get().same_as(b.get()))
        })
    }

    fn __hash__(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.source.hash(&mut h);
        for p in &self.parts {
            p.get().hash_into(&mut h);
        }
        h.finish()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Selector(source={}, parts={})",
            py_repr(py, &self.source),
            self.py_parts(py)?.repr()?
        ))
    }
}

// --- parsing ---------------------------------------------------------------

/// Why a selector text was refused; `Display` gives the message users see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorProblem {
    /// An empty entry in a comma-separated list (the whole list is kept).
    Empty {
        list: String,
    },
    /// A token outside the subset, at `rest` (the text from there on).
    Unsupported {
        selector: String,
        rest: String,
    },
    TagNotFirst {
        selector: String,
    },
    SelectsNothing {
        selector: String,
    },
}

impl fmt::Display for SelectorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Python's repr() of the texts, as the former messages had them
        // (quote choice and escapes included): attach is cheap, and a problem
        // is only formatted when a site's settings are compiled.
        Python::attach(|py| match self {
            SelectorProblem::Empty { list } => write!(f, "empty selector in {}", py_repr(py, list)),
            SelectorProblem::Unsupported { selector, rest } => write!(
                f,
                "selector {}: unsupported syntax at {} \
                 (supported: tag, #id, .class, [attr], [attr=value], descendant)",
                py_repr(py, selector),
                py_repr(py, rest)
            ),
            SelectorProblem::TagNotFirst { selector } => {
                write!(
                    f,
                    "selector {}: a tag name must come first",
                    py_repr(py, selector)
                )
            }
            SelectorProblem::SelectsNothing { selector } => {
                write!(f, "selector {} selects nothing", py_repr(py, selector))
            }
        })
    }
}

impl From<SelectorProblem> for PyErr {
    fn from(problem: SelectorProblem) -> PyErr {
        SelectorError::new_err(problem.to_string())
    }
}

fn py_repr(py: Python<'_>, text: &str) -> String {
    PyString::new(py, text)
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| format!("{text:?}"))
}

/// Python's `str.isspace()` (what `\s`, `split()` and `strip()` use).
pub use crate::sensitivity::py_isspace as is_py_space;

/// Python's `str.split()` with no arguments.
pub fn split_py_whitespace(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_py_space).filter(|t| !t.is_empty())
}

enum Token<'a> {
    Separator,
    Tag(&'a str),
    Id(&'a str),
    Class(&'a str),
    Attr {
        name: &'a str,
        op: AttrOp,
        value: &'a str,
    },
    Pseudo,
}

fn skip_space(text: &str, pos: usize) -> usize {
    text[pos..]
        .find(|c: char| !is_py_space(c))
        .map_or(text.len(), |n| pos + n)
}

/// End of the longest run from `pos` of ASCII bytes accepted by `accept`.
fn run(text: &str, pos: usize, accept: impl Fn(u8) -> bool) -> usize {
    let bytes = text.as_bytes();
    let mut end = pos;
    while end < bytes.len() && accept(bytes[end]) {
        end += 1;
    }
    end
}

fn id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'\\' || b == b'-'
}

/// The token at `pos` and where it ends, or `None` if no token starts there.
fn next_token(text: &str, pos: usize) -> Option<(Token<'_>, usize)> {
    let bytes = text.as_bytes();
    let after_space = skip_space(text, pos);
    if bytes.get(after_space) == Some(&b'>') {
        return Some((Token::Separator, skip_space(text, after_space + 1)));
    }
    if after_space > pos {
        return Some((Token::Separator, after_space));
    }
    let first = *bytes.get(pos)?;
    match first {
        b'*' => Some((Token::Tag("*"), pos + 1)),
        b if b.is_ascii_alphabetic() => {
            let end = run(text, pos + 1, |b| {
                b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
            });
            Some((Token::Tag(&text[pos..end]), end))
        }
        b'#' | b'.' => {
            let end = run(text, pos + 1, id_char);
            if end == pos + 1 {
                return None;
            }
            let name = &text[pos + 1..end];
            Some((
                if first == b'#' {
                    Token::Id(name)
                } else {
                    Token::Class(name)
                },
                end,
            ))
        }
        b'[' => attribute_token(text, pos),
        b':' => {
            let mut start = pos + 1;
            if bytes.get(start) == Some(&b':') {
                start += 1;
            }
            let end = run(text, start, |b| b.is_ascii_alphabetic() || b == b'-');
            if end == start {
                return None;
            }
            Some((
                Token::Pseudo,
                pseudo_arguments_end(bytes, end).unwrap_or(end),
            ))
        }
        _ => None,
    }
}

/// `(...)` after a pseudo-class, with at most one level of nested parentheses.
fn pseudo_arguments_end(bytes: &[u8], pos: usize) -> Option<usize> {
    if bytes.get(pos) != Some(&b'(') {
        return None;
    }
    let mut i = pos + 1;
    loop {
        match *bytes.get(i)? {
            b')' => return Some(i + 1),
            b'(' => {
                let close = bytes[i + 1..]
                    .iter()
                    .position(|&b| b == b'(' || b == b')')?;
                if bytes[i + 1 + close] != b')' {
                    return None;
                }
                i += close + 2;
            }
            _ => i += 1,
        }
    }
}

/// `[name]` or `[name op value]` (value `"..."`, `'...'` or bare).
fn attribute_token(text: &str, pos: usize) -> Option<(Token<'_>, usize)> {
    let bytes = text.as_bytes();
    let name_start = skip_space(text, pos + 1);
    let b = *bytes.get(name_start)?;
    if !(b.is_ascii_alphabetic() || b == b'_' || b == b':') {
        return None;
    }
    let name_end = run(text, name_start + 1, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'-')
    });
    let name = &text[name_start..name_end];
    let i = skip_space(text, name_end);
    if bytes.get(i) == Some(&b']') {
        return Some((
            Token::Attr {
                name,
                op: AttrOp::Exists,
                value: "",
            },
            i + 1,
        ));
    }
    let op_len = if matches!(bytes.get(i), Some(b'~' | b'^' | b'$' | b'*' | b'|')) {
        2
    } else {
        1
    };
    if bytes.get(i + op_len - 1) != Some(&b'=') {
        return None;
    }
    let op = AttrOp::parse(&text[i..i + op_len])?;
    let value_start = skip_space(text, i + op_len);
    let closed = |end: usize| {
        let j = skip_space(text, end);
        (bytes.get(j) == Some(&b']')).then_some(j + 1)
    };
    // Quoted first; a quoted value not followed by `]` is read as a bare one,
    // as the regex's alternation did (`[a="x"y]` has the value `"x"y`).
    for quote in [b'"', b'\''] {
        if bytes.get(value_start) == Some(&quote) {
            if let Some(len) = bytes[value_start + 1..].iter().position(|&b| b == quote) {
                let value_end = value_start + 1 + len;
                if let Some(end) = closed(value_end + 1) {
                    let value = &text[value_start + 1..value_end];
                    return Some((Token::Attr { name, op, value }, end));
                }
            }
        }
    }
    let value_end = text[value_start..]
        .find(|c: char| c == ']' || is_py_space(c))
        .map_or(text.len(), |n| value_start + n);
    if value_end == value_start {
        return None;
    }
    let end = closed(value_end)?;
    Some((
        Token::Attr {
            name,
            op,
            value: &text[value_start..value_end],
        },
        end,
    ))
}

#[derive(Default)]
struct Building {
    started: bool,
    tag: Option<String>,
    element_id: Option<String>,
    classes: Vec<String>,
    attrs: Vec<(String, AttrOp, String)>,
}

impl Building {
    fn finish(&mut self, py: Python<'_>) -> Py<Compound> {
        let done = std::mem::take(self);
        let tag = done.tag.filter(|t| t != "*");
        let compound = Compound::new(py, tag, done.element_id, done.classes, done.attrs);
        Py::new(py, compound).expect("allocating a Compound")
    }
}

fn parse_one(py: Python<'_>, text: &str) -> Result<Selector, SelectorProblem> {
    let mut parts: Vec<Py<Compound>> = Vec::new();
    let mut current = Building::default();
    let mut pos = 0;
    while pos < text.len() {
        let Some((token, end)) = next_token(text, pos) else {
            return Err(SelectorProblem::Unsupported {
                selector: text.to_owned(),
                rest: text[pos..].to_owned(),
            });
        };
        pos = end;
        match token {
            Token::Separator => {
                if current.started {
                    parts.push(current.finish(py));
                }
                continue;
            }
            Token::Tag(tag) => {
                if current.started {
                    return Err(SelectorProblem::TagNotFirst {
                        selector: text.to_owned(),
                    });
                }
                current.tag = Some(tag.to_ascii_lowercase());
            }
            Token::Id(id) => current.element_id = Some(id.replace('\\', "")),
            Token::Class(cls) => current.classes.push(cls.replace('\\', "")),
            Token::Attr { name, op, value } => {
                current
                    .attrs
                    .push((name.to_ascii_lowercase(), op, value.to_owned()))
            }
            // dropped, so the compound matches a superset
            Token::Pseudo => {}
        }
        current.started = true;
    }
    if current.started {
        parts.push(current.finish(py));
    }
    if parts.is_empty() {
        return Err(SelectorProblem::SelectsNothing {
            selector: text.to_owned(),
        });
    }
    Ok(Selector {
        source: text.to_owned(),
        parts,
    })
}

/// Parses a comma-separated selector list.
pub fn parse_selector_list(py: Python<'_>, text: &str) -> Result<Vec<Selector>, SelectorProblem> {
    text.split(',')
        .map(|chunk| {
            let chunk = chunk.trim_matches(is_py_space);
            if chunk.is_empty() {
                return Err(SelectorProblem::Empty {
                    list: text.to_owned(),
                });
            }
            parse_one(py, chunk)
        })
        .collect()
}

/// Compiles selector texts; an unparseable one becomes `*` and is reported.
///
/// Returns the selectors and one human-readable problem per unusable input.
pub fn compile_selectors<S: AsRef<str>>(
    py: Python<'_>,
    texts: &[S],
) -> (Vec<Selector>, Vec<String>) {
    let mut selectors = Vec::new();
    let mut problems = Vec::new();
    for text in texts {
        let text = text.as_ref();
        match parse_selector_list(py, text) {
            Ok(parsed) => selectors.extend(parsed),
            Err(problem) => {
                problems.push(format!("{problem}; treated as '*' (matches every element)"));
                let any = Py::new(py, Compound::any(py)).expect("allocating a Compound");
                selectors.push(Selector {
                    source: text.to_owned(),
                    parts: vec![any],
                });
            }
        }
    }
    (selectors, problems)
}

// --- matching --------------------------------------------------------------

/// A string attribute value as text (`None` for any other type, as the
/// `isinstance(value, str)` checks had it).
#[inline]
pub fn str_value<'v>(value: &'v Json<'_>) -> Option<&'v str> {
    value.as_str()
}

fn has_classes(cls: &str, wanted: &[String]) -> bool {
    // the substring search (memchr-fast) turns most elements away before any split
    wanted
        .iter()
        .all(|w| cls.contains(w.as_str()) && split_py_whitespace(cls).any(|t| t == w))
}

/// True if an element with this (lower-case) tag and attributes matches `part`.
pub fn compound_matches(part: &Compound, tag: &str, attrs: &Pairs<'_>) -> bool {
    if part.tag.as_deref().is_some_and(|t| t != tag) {
        return false;
    }
    let id = match part.element_id {
        Some(_) => obj_get(attrs, "id"),
        None => None,
    };
    let class = match part.classes.is_empty() {
        false => obj_get(attrs, "class"),
        true => None,
    };
    compound_matches_known(part, tag, attrs, class, id)
}

/// `compound_matches` with the element's `class` and `id` values already
/// looked up (`None`: absent), as the element rules have them: an element is
/// matched against every rule, and these are read once.
pub fn compound_matches_known(
    part: &Compound,
    tag: &str,
    attrs: &Pairs<'_>,
    class: Option<&Json<'_>>,
    id: Option<&Json<'_>>,
) -> bool {
    if part.tag.as_deref().is_some_and(|t| t != tag) {
        return false;
    }
    if let Some(wanted) = &part.element_id {
        if id.and_then(str_value).is_none_or(|id| id != wanted.as_str()) {
            return false;
        }
    }
    if !part.classes.is_empty()
        && class.and_then(str_value).is_none_or(|cls| !has_classes(cls, &part.classes))
    {
        return false;
    }
    for test in &part.attrs {
        let Some(actual) = obj_get(attrs, &test.name) else {
            return false;
        };
        if str_value(actual).is_none_or(|a| !test.op.test(a, &test.value)) {
            return false;
        }
    }
    true
}

/// Whether an attribute mutation can make an element match `part`.
///
/// Only the changed attributes are known (not the tag, not the other
/// attributes), so unknown parts count as matching; the change must touch at
/// least one attribute the compound looks at, otherwise nothing new is learnt.
pub fn compound_may_match_change(part: &Compound, changed: &Pairs<'_>) -> bool {
    let touched = part.referenced.iter().any(|(name, _)| obj_get(changed, name).is_some());
    if !touched {
        return false;
    }
    if let Some(wanted) = &part.element_id {
        if let Some(id) = obj_get(changed, "id") {
            if str_value(id).is_none_or(|id| id != wanted.as_str()) {
                return false;
            }
        }
    }
    if !part.classes.is_empty() {
        if let Some(cls) = obj_get(changed, "class") {
            let cls = str_value(cls).unwrap_or_default();
            if !has_classes(cls, &part.classes) {
                return false;
            }
        }
    }
    for test in &part.attrs {
        if let Some(actual) = obj_get(changed, &test.name) {
            if str_value(actual).is_none_or(|a| !test.op.test(a, &test.value)) {
                return false;
            }
        }
    }
    true
}

// --- Python face -----------------------------------------------------------

/// Parses a comma-separated selector list; raises `SelectorError`.
#[pyfunction(name = "parse_selector_list")]
fn py_parse_selector_list(py: Python<'_>, text: &str) -> PyResult<Vec<Selector>> {
    Ok(parse_selector_list(py, text)?)
}

/// Compiles selector strings; unparseable ones become `*` and are reported.
#[pyfunction(name = "compile_selectors")]
fn py_compile_selectors(
    py: Python<'_>,
    texts: &Bound<'_, PyAny>,
) -> PyResult<(Vec<Selector>, Vec<String>)> {
    let texts: Vec<String> = texts
        .try_iter()?
        .map(|t| t?.extract())
        .collect::<PyResult<_>>()?;
    Ok(compile_selectors(py, &texts))
}

/// True if an element with this (lower-case) tag and attributes matches `part`.
#[pyfunction(name = "compound_matches")]
fn py_compound_matches(
    part: &Bound<'_, Compound>,
    tag: &str,
    attrs: &Bound<'_, PyDict>,
) -> PyResult<bool> {
    Ok(compound_matches(part.get(), tag, &py_attrs(attrs)?))
}

/// Whether an attribute mutation can make an element match `part`.
#[pyfunction(name = "compound_may_match_change")]
fn py_compound_may_match_change(
    part: &Bound<'_, Compound>,
    changed: &Bound<'_, PyDict>,
) -> PyResult<bool> {
    Ok(compound_may_match_change(part.get(), &py_attrs(changed)?))
}

/// Adds the selector classes and functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SelectorError", m.py().get_type::<SelectorError>())?;
    m.add_class::<Compound>()?;
    m.add_class::<Selector>()?;
    m.add_function(wrap_pyfunction!(py_parse_selector_list, m)?)?;
    m.add_function(wrap_pyfunction!(py_compile_selectors, m)?)?;
    m.add_function(wrap_pyfunction!(py_compound_matches, m)?)?;
    m.add_function(wrap_pyfunction!(py_compound_may_match_change, m)?)?;
    Ok(())
}
