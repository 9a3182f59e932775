//! A site's element rules, precompiled: which elements are sensitive and
//! which site selectors set which node bits. The one implementation behind
//! `MaskPolicy.element_value` and its siblings in `services/masker/policy.py`.
//!
//! Selector context: a rule `A B C` needs to know, at an element, which of its
//! ancestor prefixes (`A`, `A B`) some ancestor matched. Each such rule owns a
//! run of context bits (one per prefix, `context_base` the first); an
//! element's value carries them above `CONTEXT_SHIFT` for its children. Up to
//! `MAX_CONTEXT_BITS` are handed out (stored ints stay JSON-safe); rules beyond
//! that ignore their ancestors and match on the last compound alone: more
//! masked, never less.
use pyo3::intern;
use pyo3::prelude::*;

use crate::json_doc::{Json, Pairs};
use crate::py_json::py_attrs;
use pyo3::types::{PyDict, PyFrozenSet, PyTuple};

use crate::flags::{
    CONTEXT_SHIFT, FLAG_BITS, F_BLOCK, F_IGNORE, F_INPUT_TEXT, F_MASK, F_MASK_INPUT,
    F_SCRIPT_ELEMENT, F_STYLE_ELEMENT, MAX_CONTEXT_BITS, NOT_INHERITED,
};
use crate::sensitivity::{self, SplitNames};
use crate::selectors::{
    compile_selectors, compound_matches_known, compound_may_match_change, split_py_whitespace,
    str_value, Compound, Selector,
};

/// The attributes the element rules read of every element, looked up once.
#[derive(Default)]
struct OwnAttrs<'a> {
    class: Option<&'a Json<'a>>,
    id: Option<&'a Json<'a>>,
    name: Option<&'a Json<'a>>,
    field_type: Option<&'a Json<'a>>,
    autocomplete: Option<&'a Json<'a>>,
    recording_ignore: Option<&'a Json<'a>>,
    contenteditable: Option<&'a Json<'a>>,
}

impl<'a> OwnAttrs<'a> {
    /// One pass over the attributes (each key is there once: see json_doc).
    fn read(attrs: &'a Pairs<'a>) -> OwnAttrs<'a> {
        let mut own = OwnAttrs::default();
        for (key, value) in attrs {
            let slot = match key.as_ref() {
                "class" => &mut own.class,
                "id" => &mut own.id,
                "name" => &mut own.name,
                "type" => &mut own.field_type,
                "autocomplete" => &mut own.autocomplete,
                "data-recording-ignore" => &mut own.recording_ignore,
                "contenteditable" => &mut own.contenteditable,
                _ => continue,
            };
            *slot = Some(value);
        }
        own
    }
}

/// `cls.contains("rr-")` (where rrweb's marker classes start), read byte by byte:
/// a class attribute is short, and a substring searcher is built per call.
fn holds_rr_mark(cls: &str) -> bool {
    cls.as_bytes().windows(3).any(|w| w == b"rr-")
}

/// A compiled site selector and the bit it sets on matching elements.
#[pyclass(frozen, module = "replaypipe_masker_core")]
pub struct SelectorRule {
    #[pyo3(get)]
    pub selector: Py<Selector>,
    #[pyo3(get)]
    pub flag: u64,
    /// First context bit of its ancestor prefixes; -1: ancestors ignored.
    #[pyo3(get)]
    pub context_base: i64,
}

/// What the hot loops read of a rule, without going through `SelectorRule`.
struct CompiledRule {
    /// Outermost first; never empty.
    parts: Vec<Py<Compound>>,
    flag: u64,
    /// `None`: ancestors ignored (out of context bits).
    base: Option<u32>,
}

impl CompiledRule {
    fn last(&self) -> usize {
        self.parts.len() - 1
    }

    fn part(&self, k: usize) -> &Compound {
        self.parts[k].get()
    }
}

/// Whether ancestor prefix `k` of a rule (its first `k` compounds) is matched
/// above an element whose parent's context is `context`. `k == 0`: nothing to match.
#[inline]
fn reached(context: u64, base: u32, k: usize) -> bool {
    k == 0 || (context >> (base + k as u32 - 1)) & 1 == 1
}

/// The element rules of one site's settings (with the deployment's sensitive names).
#[pyclass(frozen, module = "replaypipe_masker_core")]
pub struct ElementRules {
    rules: Vec<CompiledRule>,
    /// The same rules as `SelectorRule`s, for Python readers.
    py_rules: Py<PyTuple>,
    names: SplitNames,
    problems: Vec<String>,
    selector_key: String,
}

impl ElementRules {
    /// Compiles the site's selectors (block, then mask-text, then ignore-input:
    /// context bits are handed out in that order) and splits the sensitive names.
    pub fn compile<S: AsRef<str>>(
        py: Python<'_>,
        mask_text_selectors: &[S],
        block_selectors: &[S],
        ignore_input_selectors: &[S],
        sensitive_names: &[S],
    ) -> PyResult<ElementRules> {
        let mut rules = Vec::new();
        let mut py_rules = Vec::new();
        let mut problems = Vec::new();
        let mut next_bit: u32 = 0;
        for (texts, flag) in [
            (block_selectors, F_BLOCK),
            (mask_text_selectors, F_MASK),
            (ignore_input_selectors, F_IGNORE),
        ] {
            let (selectors, found) = compile_selectors(py, texts);
            problems.extend(found);
            for selector in selectors {
                let needed = (selector.parts.len() - 1) as u32;
                let base = if needed == 0 {
                    Some(0)
                } else if next_bit + needed <= MAX_CONTEXT_BITS {
                    next_bit += needed;
                    Some(next_bit - needed)
                } else {
                    None
                };
                let parts = selector.parts.iter().map(|p| p.clone_ref(py)).collect();
                rules.push(CompiledRule { parts, flag, base });
                py_rules.push(SelectorRule {
                    selector: Py::new(py, selector)?,
                    flag,
                    context_base: base.map_or(-1, i64::from),
                });
            }
        }
        let names = sensitivity::split_names(sensitive_names.iter().map(AsRef::as_ref));
        let join = |texts: &[S]| {
            texts
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<&str>>()
                .join("\x1e")
        };
        let key_source = [
            join(block_selectors),
            join(mask_text_selectors),
            join(ignore_input_selectors),
        ]
        .join("\x1f");
        let digest = sha1_smol::Sha1::from(key_source.as_bytes())
            .digest()
            .to_string();
        Ok(ElementRules {
            rules,
            py_rules: PyTuple::new(py, py_rules)?.unbind(),
            names,
            problems,
            selector_key: digest[..12].to_owned(),
        })
    }

    /// The rules a Python `MaskPolicy` holds (its `rules` field), for native
    /// callers such as the walk: `ElementRules::of_policy(policy)?.get()`.
    pub fn of_policy<'py>(policy: &Bound<'py, PyAny>) -> PyResult<Bound<'py, ElementRules>> {
        Ok(policy
            .getattr(intern!(policy.py(), "rules"))?
            .cast_into::<ElementRules>()?)
    }

    /// Whether the site has any selector rule (else the selector steps are no-ops).
    pub fn has_selector_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// A short fingerprint of the site's selectors: node bits stored under
    /// another key were computed with other selectors.
    pub fn selector_key(&self) -> &str {
        &self.selector_key
    }

    /// One human-readable problem per selector that fell back to `*`.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// True if a field name/id matches the sensitive-name list.
    pub fn name_is_sensitive(&self, value: &str) -> bool {
        self.names.matches(value)
    }

    /// Password type, card/OTP/password autocomplete, or a sensitive name or id.
    pub fn field_is_sensitive(&self, attrs: &Pairs<'_>) -> bool {
        self.own_field_is_sensitive(&OwnAttrs::read(attrs))
    }

    fn own_field_is_sensitive(&self, own: &OwnAttrs<'_>) -> bool {
        // ASCII case folding is Python's lower() here: no other character
        // lower-cases into the letters of "password".
        if own
            .field_type
            .and_then(str_value)
            .is_some_and(|t| t.eq_ignore_ascii_case("password"))
        {
            return true;
        }
        if let Some(autocomplete) = own.autocomplete.and_then(str_value) {
            if split_py_whitespace(autocomplete).any(autocomplete_token_is_sensitive) {
                return true;
            }
        }
        [own.name, own.id].into_iter().any(|value| {
            value
                .and_then(str_value)
                .is_some_and(|v| !v.is_empty() && self.name_is_sensitive(v))
        })
    }

    /// Marks an element's own attributes carry, whether snapshotted or changed
    /// later: rrweb classes, `data-recording-ignore`, sensitive fields, contenteditable.
    pub fn attribute_marks(&self, attrs: &Pairs<'_>) -> u64 {
        if attrs.is_empty() {
            return 0;
        }
        self.own_marks(&OwnAttrs::read(attrs))
    }

    fn own_marks(&self, own: &OwnAttrs<'_>) -> u64 {
        let mut bits = 0;
        if let Some(cls) = own.class.and_then(str_value) {
            if holds_rr_mark(cls) {
                bits |= sensitivity::class_marks(cls);
            }
        }
        if let Some(marker) = own.recording_ignore.filter(|m| **m != Json::Null) {
            bits |= sensitivity::recording_ignore_marks(str_value(marker));
        }
        if self.own_field_is_sensitive(own) {
            bits |= F_MASK_INPUT;
        }
        if let Some(editable) = own.contenteditable.filter(|e| **e != Json::Null) {
            if str_value(editable).is_none_or(|e| e != "false") {
                bits |= F_INPUT_TEXT;
            }
        }
        bits
    }

    /// Bits of an element (own marks + inherited) with its children's selector
    /// context; `tag` lower-case, `parent_value` the parent's value.
    pub fn element_value(
        &self,
        tag: &str,
        attrs: &Pairs<'_>,
        parent_value: u64,
    ) -> u64 {
        let own = OwnAttrs::read(attrs);
        let mut bits = (parent_value & !NOT_INHERITED & FLAG_BITS) | self.own_marks(&own);
        let matches = |part: &Compound| {
            compound_matches_known(part, tag, attrs, own.class, own.id)
        };
        match tag {
            "textarea" | "select" => bits |= F_INPUT_TEXT,
            "style" => bits |= F_STYLE_ELEMENT,
            "script" => bits |= F_SCRIPT_ELEMENT,
            _ => {}
        }
        let context = parent_value >> CONTEXT_SHIFT;
        let mut child_context = context;
        for rule in &self.rules {
            let last = rule.last();
            let Some(base) = rule.base else {
                if matches(rule.part(last)) {
                    bits |= rule.flag;
                }
                continue;
            };
            if bits & rule.flag == 0 && reached(context, base, last) && matches(rule.part(last)) {
                bits |= rule.flag;
            }
            for k in 0..last {
                let bit = 1u64 << (base + k as u32);
                if child_context & bit == 0 && reached(context, base, k) && matches(rule.part(k)) {
                    child_context |= bit;
                }
            }
        }
        bits | (child_context << CONTEXT_SHIFT)
    }

    /// Marks an attribute mutation adds to an element (marks are never removed).
    pub fn change_marks(&self, changed: &Pairs<'_>, value: u64) -> u64 {
        let mut bits = self.attribute_marks(changed);
        let context = value >> CONTEXT_SHIFT;
        for rule in &self.rules {
            let last = rule.last();
            if let Some(base) = rule.base {
                if !reached(context, base, last) {
                    continue;
                }
            }
            if compound_may_match_change(rule.part(last), changed) {
                bits |= rule.flag;
            }
        }
        bits
    }

    /// What an attribute mutation means for an element's descendants through
    /// descendant-combinator selectors (`.vault span` when `vault` is added).
    ///
    /// Returns `(flags, context)`: `context` are the selector-progress bits the
    /// element's children inherit from now on, so nodes added under it are
    /// matched exactly; `flags` are the bits of the rules that may now match
    /// somewhere below, for the descendants that already exist. Their tags and
    /// attributes are not kept, so they all get the flag: more masked, never less.
    pub fn change_ancestor_marks(
        &self,
        changed: &Pairs<'_>,
        value: u64,
    ) -> (u64, u64) {
        let mut flags = 0;
        let mut context_bits = 0u64;
        let context = value >> CONTEXT_SHIFT;
        for rule in &self.rules {
            let last = rule.last();
            // no ancestor part, or ancestors ignored: matched where it applies
            let Some(base) = rule.base.filter(|_| last > 0) else {
                continue;
            };
            for k in 0..last {
                if reached(context, base, k) && compound_may_match_change(rule.part(k), changed) {
                    flags |= rule.flag;
                    context_bits |= 1 << (base + k as u32);
                }
            }
        }
        (flags, context_bits << CONTEXT_SHIFT)
    }
}

/// An autocomplete token (any case) of a card, one-time-code or password field.
/// ASCII case folding is Python's lower() on these words: the only non-ASCII
/// characters lower-casing into ASCII are U+0130 (adds U+0307) and U+212A ("k").
fn autocomplete_token_is_sensitive(token: &str) -> bool {
    let prefix = sensitivity::SENSITIVE_AUTOCOMPLETE_PREFIX;
    sensitivity::SENSITIVE_AUTOCOMPLETE
        .iter()
        .any(|w| token.eq_ignore_ascii_case(w))
        || token
            .as_bytes()
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

#[pymethods]
impl ElementRules {
    #[new]
    fn py_new(
        py: Python<'_>,
        mask_text_selectors: Vec<String>,
        block_selectors: Vec<String>,
        ignore_input_selectors: Vec<String>,
        sensitive_names: Vec<String>,
    ) -> PyResult<ElementRules> {
        ElementRules::compile(
            py,
            &mask_text_selectors,
            &block_selectors,
            &ignore_input_selectors,
            &sensitive_names,
        )
    }

    #[getter(selector_rules)]
    fn py_selector_rules<'py>(&self, py: Python<'py>) -> Bound<'py, PyTuple> {
        self.py_rules.bind(py).clone()
    }

    #[getter(selector_key)]
    fn py_selector_key(&self) -> &str {
        &self.selector_key
    }

    #[getter(problems)]
    fn py_problems<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.problems)
    }

    #[getter(long_sensitive_names)]
    fn py_long_sensitive_names<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.names.long)
    }

    #[getter(short_sensitive_names)]
    fn py_short_sensitive_names<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        PyFrozenSet::new(py, &self.names.short)
    }

    #[pyo3(name = "name_is_sensitive")]
    fn py_name_is_sensitive(&self, value: &str) -> bool {
        self.name_is_sensitive(value)
    }

    #[pyo3(name = "field_is_sensitive")]
    fn py_field_is_sensitive(&self, attrs: &Bound<'_, PyDict>) -> PyResult<bool> {
        Ok(self.field_is_sensitive(&py_attrs(attrs)?))
    }

    #[pyo3(name = "attribute_marks")]
    fn py_attribute_marks(&self, attrs: &Bound<'_, PyDict>) -> PyResult<u64> {
        Ok(self.attribute_marks(&py_attrs(attrs)?))
    }

    #[pyo3(name = "element_value")]
    fn py_element_value(
        &self,
        tag: &str,
        attrs: &Bound<'_, PyDict>,
        parent_value: u64,
    ) -> PyResult<u64> {
        Ok(self.element_value(tag, &py_attrs(attrs)?, parent_value))
    }

    #[pyo3(name = "change_marks")]
    fn py_change_marks(&self, changed: &Bound<'_, PyDict>, value: u64) -> PyResult<u64> {
        Ok(self.change_marks(&py_attrs(changed)?, value))
    }

    #[pyo3(name = "change_ancestor_marks")]
    fn py_change_ancestor_marks(
        &self,
        changed: &Bound<'_, PyDict>,
        value: u64,
    ) -> PyResult<(u64, u64)> {
        Ok(self.change_ancestor_marks(&py_attrs(changed)?, value))
    }
}

/// Adds the element-rule classes to the module.
/// Registers the selectors too (`crate::selectors::register`): one line in lib.rs.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    crate::selectors::register(m)?;
    m.add_class::<SelectorRule>()?;
    m.add_class::<ElementRules>()?;
    Ok(())
}
