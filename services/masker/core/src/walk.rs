//! The batch walk: one pass over a batch of a session's rrweb events, masking
//! each in place by the site's policy and the session's node bits
//! (`services/masker/batch.py` is the thin Python face; docs/masking.md).
//!
//! The events are a parsed raw message ([`Json`], `json_doc.rs`, read as orjson
//! reads it), masked in place with the GIL released: everything the walk holds
//! is native (`walk_deps`), so other Python threads (the masker's event loop:
//! `/healthz`, heartbeats) run meanwhile. It writes a value back only when it
//! changed, and walks trees and payloads with explicit stacks (trees can be
//! 10,000+ deep). Every rule it applies lives elsewhere and is reached through
//! `walk_deps` (the element rules, the scrubber, the node index and tree): what
//! is here is only the walk itself.
//!
//! Type checks reproduce the Python ones the walk was written with, exactly:
//! `isinstance(x, int)` is true for bools, `x == 3` for `3.0` and `True == 1`,
//! and hashing a list or dict (set membership) raises `TypeError`.
use std::borrow::Cow;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyAttributeError, PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::counts::Counts;
use crate::flags::{
    FLAG_BITS, F_BLOCK, F_CSS_TEXT, F_IGNORE, F_INPUT_TEXT, F_MASK, F_MASK_INPUT, F_SCRIPT_ELEMENT,
    F_SCRIPT_TEXT, F_STYLE_ELEMENT, NOT_INHERITED, UNKNOWN_NODE,
};
use crate::json_doc::{self, obj_get, obj_get_mut, obj_set, Json, Pairs, ParseError, Str};
use crate::node_index::SessionNodeIndex;
use crate::py_json::py_to_json;
use crate::walk_deps::{Deps, ScrubKind};

// --- the rrweb vocabulary the walk reads (services/masker/rrweb.py re-states it;
// a unit test checks they agree) ---------------------------------------------------

pub const EVENT_DOM_CONTENT_LOADED: i64 = 0;
pub const EVENT_LOAD: i64 = 1;
pub const EVENT_FULL_SNAPSHOT: i64 = 2;
pub const EVENT_INCREMENTAL: i64 = 3;
pub const EVENT_META: i64 = 4;
pub const EVENT_CUSTOM: i64 = 5;
pub const EVENT_PLUGIN: i64 = 6;
pub const SOURCE_MUTATION: i64 = 0;
pub const SOURCE_INPUT: i64 = 5;
pub const SOURCE_CANVAS: i64 = 9;
pub const SOURCE_LOG: i64 = 11;
/// Sources whose payload is positions, ids, CSS or media state: no visitor text.
pub const PASS_THROUGH_SOURCES: [i64; 13] = [1, 2, 3, 4, 6, 7, 8, 10, 12, 13, 14, 15, 16];
pub const NODE_DOCUMENT: i64 = 0;
pub const NODE_ELEMENT: i64 = 2;
pub const NODE_TEXT: i64 = 3;
pub const NODE_CDATA: i64 = 4;
pub const NODE_COMMENT: i64 = 5;
pub const CONSOLE_PLUGIN: &str = "rrweb/console@1";
pub const SEQUENTIAL_ID_PLUGIN: &str = "rrweb/sequential-id@1";
pub const CONSENT_EVENT_TAG: &str = "replaypipe.consent";
/// What rrweb itself records for script text.
pub const SCRIPT_PLACEHOLDER: &str = "SCRIPT_PLACEHOLDER";
pub const TEXT_ATTRIBUTES: [&str; 8] = [
    "placeholder",
    "title",
    "alt",
    "label",
    "summary",
    "srcdoc",
    "content",
    "abbr",
];
pub const URL_ATTRIBUTES: [&str; 14] = [
    "href",
    "src",
    "action",
    "formaction",
    "srcset",
    "poster",
    "data",
    "cite",
    "background",
    "ping",
    "longdesc",
    "manifest",
    "xlink:href",
    "imagesrcset",
];
pub const ASSET_URL_ATTRIBUTES: [&str; 7] = [
    "src",
    "srcset",
    "poster",
    "data",
    "background",
    "imagesrcset",
    "manifest",
];
pub const UNTOUCHED_ATTRIBUTES: [&str; 3] = ["style", "_cssText", "data-recording-ignore"];
pub const PLACEHOLDER_ATTRIBUTES: [&str; 6] =
    ["class", "style", "width", "height", "rr_width", "rr_height"];
pub const STRUCTURAL_KEYS: [&str; 9] = [
    "type", "source", "tag", "plugin", "level", "tagName", "rootId", "nodeType", "property",
];
pub const FORM_FIELD_TAGS: [&str; 3] = ["input", "textarea", "select"];

// --- consent states (services/masker/state.py) -------------------------------------
pub const CONSENT_GRANTED: &str = "granted";
pub const CONSENT_WITHDRAWN: &str = "withdrawn";
pub const CONSENT_NOT_REQUIRED: &str = "not_required";

/// The marks every descendant shares with its element (what a mark added later spreads).
pub const INHERITED_MARKS: u64 = FLAG_BITS & !NOT_INHERITED;
/// Bits that make `mask_text_content` do more than scrub a text (CSS, script, masked, form text).
pub const TEXT_RULE_BITS: u64 = F_CSS_TEXT | F_SCRIPT_TEXT | F_MASK | F_INPUT_TEXT;
/// Inside one event, the clock is read once per this many DOM nodes or JSON containers.
pub const BUDGET_CHECK_EVERY: u32 = 4096;

pyo3::create_exception!(
    replaypipe_masker_core,
    WalkOverBudget,
    PyException,
    "The walk passed its deadline (batch.py raises BatchOverBudget for it)."
);

// --- Python's type checks, exactly -------------------------------------------------

/// `isinstance(x, int)` (bools included) as an id; None for other types and for
/// ints beyond `i64` (no page has those: unknown, so masked). The node index's rule.
#[inline]
fn int_id(value: Option<&Json<'_>>) -> Option<i64> {
    match value? {
        Json::Int(v) => Some(*v),
        Json::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

/// A snapshot shape's id (the shape's own rule: a non-negative exact int, not a
/// bool); None for anything else, which the shape records as a placeholder.
#[inline]
fn shape_id(value: Option<&Json<'_>>) -> Option<i64> {
    match value? {
        Json::Int(v) if *v >= 0 => Some(*v),
        _ => None,
    }
}

/// A JSON value as Python's `==` compares it with an int: read once, compared often.
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
    Other,
}

impl Num {
    fn of(value: Option<&Json<'_>>) -> Num {
        match value {
            // bools are ints (`True == 1`); an int beyond 64 bits equals no constant
            Some(Json::Int(v)) => Num::Int(*v),
            Some(Json::Bool(b)) => Num::Int(i64::from(*b)),
            Some(Json::Float(f)) => Num::Float(*f),
            _ => Num::Other,
        }
    }

    /// Python's `value == n` (`3.0 == 3`, `True == 1`).
    fn is(self, n: i64) -> bool {
        match self {
            Num::Int(v) => v == n,
            Num::Float(f) => f == n as f64,
            Num::Other => false,
        }
    }
}

/// The `TypeError` Python raises when a list or dict is looked up in a set.
fn unhashable(value: &Json<'_>) -> PyErr {
    let kind = if matches!(value, Json::Array(_)) { "list" } else { "dict" };
    PyTypeError::new_err(format!("unhashable type: '{kind}'"))
}

/// Python's `value in {ints}`: equality as [`Num::is`], and `TypeError` for an
/// unhashable value (a list or dict), as the set lookup raises.
fn in_int_set(value: Option<&Json<'_>>, set: &[i64]) -> PyResult<bool> {
    match value {
        Some(v @ (Json::Array(_) | Json::Object(_))) => Err(unhashable(v)),
        _ => {
            let n = Num::of(value);
            Ok(set.iter().any(|c| n.is(*c)))
        }
    }
}

/// Python's `value == "text"`.
#[inline]
fn eq_str(value: Option<&Json<'_>>, text: &str) -> bool {
    matches!(value, Some(Json::Str(s)) if s == text)
}

/// `value is True`.
#[inline]
fn is_true(value: Option<&Json<'_>>) -> bool {
    matches!(value, Some(Json::Bool(true)))
}

/// A string or number leaf (booleans and null say nothing secret).
#[inline]
fn is_value(value: &Json<'_>) -> bool {
    matches!(value, Json::Str(_) | Json::Int(_) | Json::UInt(_) | Json::Float(_))
}

/// A non-empty string.
#[inline]
fn nonempty_str<'v>(value: Option<&'v Json<'_>>) -> Option<&'v str> {
    match value {
        Some(Json::Str(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Python's `str(value)` of a JSON leaf (`repr` for floats: `1e+16`, `100.0`).
fn py_str(value: &Json<'_>) -> String {
    match value {
        Json::Str(s) => s.to_string(),
        Json::Int(v) => v.to_string(),
        Json::UInt(v) => v.to_string(),
        Json::Float(f) => json_doc::py_float_repr(*f),
        Json::Bool(true) => "True".to_owned(),
        Json::Bool(false) => "False".to_owned(),
        Json::Null => "None".to_owned(),
        // not a leaf: never asked
        Json::Array(_) | Json::Object(_) => String::new(),
    }
}

/// `key in STRUCTURAL_KEYS`.
#[inline]
fn structural(key: &str) -> bool {
    STRUCTURAL_KEYS.contains(&key)
}

/// A node's parent id as the walk asks about it (`parent_id in vacated`, the
/// tree's pointer), read once from the JSON value.
#[derive(Clone, Copy)]
enum UpId {
    Absent,
    /// An int (or bool) id.
    Int(i64),
    Float(f64),
    /// A string, null or an int beyond 64 bits: hashable, in no set of ids.
    Hashable,
    /// A list or dict: looking it up raises `TypeError`.
    Unhashable(bool),
}

impl UpId {
    fn of(value: Option<&Json<'_>>) -> UpId {
        match value {
            None => UpId::Absent,
            Some(Json::Int(v)) => UpId::Int(*v),
            Some(Json::Bool(b)) => UpId::Int(i64::from(*b)),
            Some(Json::Float(f)) => UpId::Float(*f),
            Some(Json::Array(_)) => UpId::Unhashable(true),
            Some(Json::Object(_)) => UpId::Unhashable(false),
            Some(_) => UpId::Hashable,
        }
    }

    fn int(self) -> Option<i64> {
        match self {
            UpId::Int(v) => Some(v),
            _ => None,
        }
    }
}

/// The budget check, read between events and every [`BUDGET_CHECK_EVERY`]
/// nodes or containers: past the deadline the walk stops. (The GIL is not held:
/// no hand-over to other threads is needed.)
fn check_deadline(deadline: Option<Instant>) -> PyResult<()> {
    if let Some(deadline) = deadline {
        if Instant::now() > deadline {
            return Err(WalkOverBudget::new_err("masking took longer than its budget"));
        }
    }
    Ok(())
}

/// Nodes or containers walked since the clock was last read: inside one event the
/// budget is checked once per [`BUDGET_CHECK_EVERY`] of them.
#[derive(Default)]
struct Ticks(u32);

impl Ticks {
    #[inline]
    fn tick(&mut self, deadline: Option<Instant>) -> PyResult<()> {
        self.0 += 1;
        if self.0 == BUDGET_CHECK_EVERY {
            self.0 = 0;
            check_deadline(deadline)?;
        }
        Ok(())
    }
}

/// Where the fields of a serialised node that the walk reads stand in its object.
#[derive(Default)]
struct NodeFields {
    id: Option<usize>,
    node_type: Option<usize>,
    child_nodes: Option<usize>,
    tag_name: Option<usize>,
    attributes: Option<usize>,
    text_content: Option<usize>,
    is_style: Option<usize>,
}

impl NodeFields {
    /// One pass over the node's keys (each is there once: json_doc normalises).
    fn read(node: &Pairs<'_>) -> NodeFields {
        let mut fields = NodeFields::default();
        for (at, (key, _)) in node.iter().enumerate() {
            let slot = match key.as_ref() {
                "id" => &mut fields.id,
                "type" => &mut fields.node_type,
                "childNodes" => &mut fields.child_nodes,
                "tagName" => &mut fields.tag_name,
                "attributes" => &mut fields.attributes,
                "textContent" => &mut fields.text_content,
                "isStyle" => &mut fields.is_style,
                _ => continue,
            };
            *slot = Some(at);
        }
        fields
    }
}

/// `node[field]` by its position.
#[inline]
fn at<'p, 'a>(node: &'p Pairs<'a>, field: Option<usize>) -> Option<&'p Json<'a>> {
    field.map(|i| &node[i].1)
}

/// A tree frame: the node, its parent's bits, its depth, its parent's id.
struct Frame<'f, 'a> {
    node: &'f mut Json<'a>,
    parent: u64,
    depth: u32,
    up: UpId,
}

/// How `mask_tree` is called: for a full snapshot or for a mutation's add.
struct TreeMode<'a> {
    sticky: bool,
    previous: Option<&'a SessionNodeIndex>,
    shape: bool,
}

/// What a batch's walk hands back: which events are kept, the consent after it, the drops.
pub struct WalkOutcome {
    pub kept: Vec<usize>,
    pub consent_state: String,
    pub dropped: u64,
}

/// One batch's masking pass: the handles of its policy and state, and its counts.
pub struct BatchWalk<'d> {
    deps: &'d mut Deps,
    /// What the walk and the rules it called counted (added to the Python Counter after).
    pub counts: Counts,
    dropped: u64,
    consent_mask: bool,
    /// Parents a sensitive field was just removed from (by the mutation being masked).
    vacated: HashSet<i64>,
    deadline: Option<Instant>,
    text_rule_bits: u64,
}

/// The deadline `budget_s` from now (None: none; negative: already past).
fn deadline_after(budget_s: Option<f64>) -> Option<Instant> {
    budget_s.and_then(|b| {
        let now = Instant::now();
        if b < 0.0 {
            Some(now)
        } else {
            Duration::try_from_secs_f64(b).ok().and_then(|d| now.checked_add(d))
        }
    })
}

impl<'d> BatchWalk<'d> {
    /// A walk with these handles; `deadline` None: none. `text_rule_bits`
    /// is [`TEXT_RULE_BITS`] (all bits: no fast path, for the tests that compare).
    pub fn new(deps: &'d mut Deps, deadline: Option<Instant>, text_rule_bits: u64) -> Self {
        Self {
            deps,
            counts: Counts::new(),
            dropped: 0,
            consent_mask: false,
            vacated: HashSet::new(),
            deadline,
            text_rule_bits,
        }
    }

    // --- batch and consent -----------------------------------------------------------

    /// Masks the batch in order (the consent modes of the policy), as `mask_batch`.
    pub fn run(&mut self, events: &mut [Json], consent: Option<bool>) -> PyResult<WalkOutcome> {
        let mut kept = Vec::with_capacity(events.len());
        let mode = self.deps.policy.consent_mode.clone();
        if mode == "none" {
            for (i, event) in events.iter_mut().enumerate() {
                self.check_budget()?;
                if self.mask_event(event)? {
                    kept.push(i);
                }
            }
            return self.result(kept, CONSENT_NOT_REQUIRED.to_owned());
        }
        let in_stream = events.iter().any(|e| consent_signal(e).is_some());
        let consent_of = |granted: bool| if granted { CONSENT_GRANTED } else { CONSENT_WITHDRAWN };
        if let (Some(granted), false) = (consent, in_stream) {
            self.deps.state.consent = consent_of(granted).to_owned();
        }
        let mut granted_now = self.deps.state.consent == CONSENT_GRANTED;
        for (i, event) in events.iter_mut().enumerate() {
            self.check_budget()?;
            if let Some(signal) = consent_signal(event) {
                self.deps.state.consent = consent_of(signal).to_owned();
                granted_now = signal;
                self.consent_mask = false;
                if let Json::Object(pairs) = event {
                    if let Some(data) = obj_get_mut(pairs, "data") {
                        self.scrub_leaves(data)?;
                    }
                }
                kept.push(i);
                continue;
            }
            let before_consent = !granted_now;
            if mode == "required" && before_consent {
                // Nothing is kept, but snapshots and mutations still feed the node
                // index so masking is right once consent arrives.
                if feeds_node_index(event)? {
                    self.mask_event(event)?;
                }
                self.dropped += 1;
                self.counts.inc("consent_drop");
                continue;
            }
            self.consent_mask = mode == "mask_until_consent" && before_consent;
            if self.mask_event(event)? {
                kept.push(i);
            }
        }
        if let (Some(granted), true) = (consent, in_stream) {
            self.deps.state.consent = consent_of(granted).to_owned();
        }
        let consent_state = self.deps.state.consent.clone();
        self.result(kept, consent_state)
    }

    fn result(&mut self, kept: Vec<usize>, consent_state: String) -> PyResult<WalkOutcome> {
        let evicted = self.deps.tree.trim()?;
        if !evicted.is_empty() {
            // their place in the tree is forgotten: a later mark might miss them
            self.deps.index.add_bits(&evicted, UNKNOWN_NODE);
            self.counts.add("state_trimmed", evicted.len() as u64);
        }
        let trimmed = self.deps.index.trim(self.deps.max_node_runs);
        self.counts.add("state_trimmed", trimmed as u64);
        Ok(WalkOutcome { kept, consent_state, dropped: self.dropped })
    }

    fn check_budget(&self) -> PyResult<()> {
        check_deadline(self.deadline)
    }

    fn drop_event(&mut self, reason: &'static str) -> PyResult<bool> {
        self.dropped += 1;
        self.counts.inc(reason);
        Ok(false)
    }

    #[inline]
    fn bits_of(&self, id: Option<&Json<'_>>) -> Option<u64> {
        int_id(id).and_then(|id| self.deps.index.get(id))
    }

    // --- events ----------------------------------------------------------------------

    /// Masks one event in place; false if it must not be published.
    fn mask_event(&mut self, event: &mut Json<'_>) -> PyResult<bool> {
        let Json::Object(event) = event else {
            return self.drop_event("malformed_event");
        };
        let etype = Num::of(obj_get(event, "type"));
        let Some(data) = obj_get_mut(event, "data") else {
            if etype.is(EVENT_DOM_CONTENT_LOADED) || etype.is(EVENT_LOAD) {
                return Ok(true);
            }
            // An event shape this masker does not know: keep it, text masked.
            self.counts.inc("unknown_event");
            return Ok(true);
        };
        if let Json::Object(dict) = data {
            if etype.is(EVENT_INCREMENTAL) {
                let source = obj_get(dict, "source");
                if in_int_set(source, &PASS_THROUGH_SOURCES)? {
                    return Ok(true);
                }
                let source = Num::of(source);
                if source.is(SOURCE_MUTATION) {
                    self.mask_mutation(dict)?;
                    return Ok(true);
                }
                if source.is(SOURCE_INPUT) {
                    return self.mask_input(dict);
                }
                if source.is(SOURCE_LOG) {
                    self.scrub_leaves(data)?;
                    return Ok(true);
                }
                if source.is(SOURCE_CANVAS) {
                    return self.mask_canvas(data);
                }
            } else if etype.is(EVENT_FULL_SNAPSHOT) {
                if let Some(node @ Json::Object(_)) = obj_get_mut(dict, "node") {
                    // rrweb keeps a node's id across the full snapshots of one page (a
                    // checkout) and starts again at 1 on a new page, so only the mark
                    // that can be lost without a trace is carried over: a sensitive
                    // input (a password shown as text by now) stays masked at the same
                    // id. On a new page this may over-mask an input at the same id,
                    // never leak.
                    let previous = self.deps.index.take();
                    self.deps.tree.start_snapshot();
                    let mode = TreeMode { sticky: false, previous: Some(&previous), shape: true };
                    self.mask_tree(node, 0, &mode, UpId::Absent)?;
                    self.deps.tree.end_snapshot()?;
                    return Ok(true);
                }
            } else if etype.is(EVENT_META) {
                if let Some(Json::Str(href)) = obj_get_mut(dict, "href") {
                    if let Some(masked) = self.deps.rules.scrub_url(href, &mut self.counts, false)? {
                        *href = Str::from(masked);
                    }
                }
                return Ok(true);
            } else if etype.is(EVENT_CUSTOM) {
                self.scrub_leaves(data)?;
                return Ok(true);
            } else if etype.is(EVENT_PLUGIN) {
                let plugin = obj_get(dict, "plugin");
                if eq_str(plugin, CONSOLE_PLUGIN) || eq_str(plugin, SEQUENTIAL_ID_PLUGIN) {
                    self.scrub_leaves(data)?;
                } else {
                    // network and other plugins carry bodies, headers, URLs: mask them
                    self.counts.inc("unknown_event");
                    self.mask_leaves(data, false)?;
                }
                return Ok(true);
            } else if (etype.is(EVENT_DOM_CONTENT_LOADED) || etype.is(EVENT_LOAD)) && dict.is_empty() {
                return Ok(true);
            }
        } else if (etype.is(EVENT_DOM_CONTENT_LOADED) || etype.is(EVENT_LOAD)) && *data == Json::Null {
            return Ok(true);
        }
        // An event shape this masker does not know: keep it, text masked.
        self.counts.inc("unknown_event");
        self.mask_leaves(data, false)?;
        Ok(true)
    }

    fn mask_input(&mut self, data: &mut Pairs<'_>) -> PyResult<bool> {
        let value = self.bits_of(obj_get(data, "id"));
        if let Some(v) = value {
            if v & F_BLOCK != 0 {
                return self.drop_event("block");
            }
            if v & F_IGNORE != 0 {
                return self.drop_event("ignore");
            }
        }
        let reason = self.input_mask_reason(value);
        if let Some(Json::Str(text)) = obj_get_mut(data, "text") {
            if let Some(reason) = reason {
                *text = Str::from(self.deps.rules.mask_text(text));
                self.counts.inc(reason);
            } else if let Some(scrubbed) = self.deps.rules.scrub(text, &mut self.counts, ScrubKind::Text)? {
                *text = Str::from(scrubbed);
            }
        }
        Ok(true)
    }

    fn mask_canvas(&mut self, data: &mut Json<'_>) -> PyResult<bool> {
        let value = self.bits_of(data.get("id"));
        if value.is_some_and(|v| v & F_BLOCK != 0) {
            return self.drop_event("block");
        }
        if value.is_none_or(|v| v & F_MASK != 0) || self.consent_mask {
            // drawn pixels of a masked canvas are content: not kept
            return self.drop_event("mask");
        }
        // Text drawn in the clear is visible text: PII-scanned like any other.
        let mut stack: Vec<&mut Json> = vec![data];
        let mut ticks = Ticks::default();
        while let Some(current) = stack.pop() {
            ticks.tick(self.deadline)?;
            match current {
                Json::Object(pairs) => {
                    let property = obj_get(pairs, "property");
                    if eq_str(property, "fillText") || eq_str(property, "strokeText") {
                        if let Some(Json::Array(args)) = obj_get_mut(pairs, "args") {
                            if let Some(Json::Str(text)) = args.first_mut() {
                                if let Some(scrubbed) =
                                    self.deps.rules.scrub(text, &mut self.counts, ScrubKind::Text)?
                                {
                                    *text = Str::from(scrubbed);
                                }
                            }
                        }
                    }
                    stack.extend(pairs.iter_mut().map(|(_, v)| v).filter(|v| v.is_container()));
                }
                Json::Array(items) => {
                    stack.extend(items.iter_mut().filter(|v| v.is_container()));
                }
                _ => {}
            }
        }
        Ok(true)
    }

    fn mask_mutation(&mut self, data: &mut Pairs<'_>) -> PyResult<()> {
        let has_changes = matches!(obj_get(data, "attributes"), Some(Json::Array(c)) if !c.is_empty());
        if has_changes {
            // Marks first, so nodes added in this mutation under a newly marked
            // element inherit them.
            if let Some(Json::Array(changes)) = obj_get(data, "attributes") {
                self.apply_change_marks(changes)?;
            }
        }

        if let Some(Json::Array(removes)) = obj_get_mut(data, "removes") {
            // Node ids are never reused by rrweb, so removed nodes stay in the
            // index (forgetting them would fragment the runs and grow the state).
            let mut keep = Vec::with_capacity(removes.len());
            for remove in removes.iter() {
                let Json::Object(entry) = remove else {
                    keep.push(true);
                    continue;
                };
                let parent_id = obj_get(entry, "parentId");
                let parent = self.bits_of(parent_id);
                let removed_id = int_id(obj_get(entry, "id"));
                if let Some(removed) = removed_id {
                    self.deps.tree.remove(removed)?;
                }
                let removed_bits = removed_id.and_then(|r| self.deps.index.get(r)).unwrap_or(0);
                if removed_bits & F_MASK_INPUT != 0 {
                    if let Some(parent_id) = int_id(parent_id) {
                        // a show-password toggle may put a new field in its place
                        self.vacated.insert(parent_id);
                    }
                }
                if parent.is_some_and(|p| p & F_BLOCK != 0) {
                    self.counts.inc("block");
                    keep.push(false);
                } else {
                    keep.push(true);
                }
            }
            keep_only(removes, &keep);
        }

        if let Some(Json::Array(adds)) = obj_get_mut(data, "adds") {
            let mut keep = Vec::with_capacity(adds.len());
            let mode = TreeMode { sticky: true, previous: None, shape: false };
            for add in adds.iter_mut() {
                let Json::Object(entry) = add else {
                    keep.push(false);
                    continue;
                };
                let up = UpId::of(obj_get(entry, "parentId"));
                let parent = match self.bits_of(obj_get(entry, "parentId")) {
                    Some(parent) => parent,
                    None => {
                        if !matches!(obj_get(entry, "node"), Some(Json::Object(_))) {
                            keep.push(false);
                            continue;
                        }
                        self.counts.inc("unknown_node");
                        UNKNOWN_NODE
                    }
                };
                let Some(node @ Json::Object(_)) = obj_get_mut(entry, "node") else {
                    keep.push(false);
                    continue;
                };
                // under a block this only remembers the ids: the add is dropped
                self.mask_tree(node, parent, &mode, up)?;
                if parent & F_BLOCK != 0 {
                    self.counts.inc("block");
                    keep.push(false);
                    continue;
                }
                keep.push(true);
            }
            keep_only(adds, &keep);
        }
        self.vacated.clear();

        if has_changes {
            if let Some(Json::Array(changes)) = obj_get(data, "attributes") {
                self.apply_change_marks(changes)?; // again: for nodes added just now
            }
            if let Some(Json::Array(changes)) = obj_get_mut(data, "attributes") {
                let mut keep = Vec::with_capacity(changes.len());
                for change in changes.iter_mut() {
                    let Json::Object(entry) = change else {
                        keep.push(false);
                        continue;
                    };
                    let Some(value) = self.bits_unless_blocked(obj_get(entry, "id")) else {
                        keep.push(false);
                        continue;
                    };
                    if let Some(Json::Object(attrs)) = obj_get_mut(entry, "attributes") {
                        self.mask_attributes(attrs, value)?;
                    }
                    keep.push(true);
                }
                keep_only(changes, &keep);
            }
        }

        if let Some(Json::Array(texts)) = obj_get_mut(data, "texts") {
            let mut keep = Vec::with_capacity(texts.len());
            for text_change in texts.iter_mut() {
                let Json::Object(entry) = text_change else {
                    keep.push(false);
                    continue;
                };
                let Some(value) = self.bits_unless_blocked(obj_get(entry, "id")) else {
                    keep.push(false);
                    continue;
                };
                if let Some(Json::Str(text)) = obj_get_mut(entry, "value") {
                    if !text.is_empty() {
                        if let Some(masked) = self.mask_text_content(text, value)? {
                            *text = Str::from(masked);
                        }
                    }
                }
                keep.push(true);
            }
            keep_only(texts, &keep);
        }
        Ok(())
    }

    /// The node's bits for a mutation entry; None (entry dropped) inside a blocked
    /// element. A node the state does not know is treated as masked, never passed through.
    fn bits_unless_blocked(&mut self, id: Option<&Json<'_>>) -> Option<u64> {
        match self.bits_of(id) {
            None => {
                self.counts.inc("unknown_node");
                Some(UNKNOWN_NODE)
            }
            Some(value) if value & F_BLOCK != 0 => {
                self.counts.inc("block");
                None
            }
            Some(value) => Some(value),
        }
    }

    fn apply_change_marks(&mut self, changes: &[Json]) -> PyResult<()> {
        for change in changes {
            let Json::Object(change) = change else {
                continue;
            };
            let Some(node_id) = int_id(obj_get(change, "id")) else {
                continue;
            };
            let Some(attrs) = obj_get(change, "attributes") else {
                continue;
            };
            let Some(value) = self.deps.index.get(node_id) else {
                continue;
            };
            let Json::Object(attrs) = attrs else {
                continue;
            };
            let mut marks = self.deps.rules.change_marks(attrs, value);
            if (obj_get(attrs, "name").is_some() || obj_get(attrs, "id").is_some())
                && self.field_name_remembered(attrs)
            {
                marks |= F_MASK_INPUT; // renamed to the name of a former password field
            }
            if marks & F_MASK_INPUT != 0 {
                self.remember_field(attrs);
            }
            let (below, context) = if self.deps.policy.has_selector_rules {
                self.deps.rules.change_ancestor_marks(attrs, value)
            } else {
                (0, 0)
            };
            if (marks | context) & !value != 0 {
                self.deps.index.set(node_id, value | marks | context);
            }
            // From this event on, everything inside the element is marked too,
            // including what was already there (a mark that arrives later).
            let inherited = (marks | below) & INHERITED_MARKS & !value;
            if inherited != 0 {
                self.mark_descendants(node_id, inherited)?;
            }
        }
        Ok(())
    }

    /// ORs a mark just added to `node_id` into every node under it.
    fn mark_descendants(&mut self, node_id: i64, bits: u64) -> PyResult<()> {
        match self.deps.tree.descendants(node_id)? {
            None => {
                // The tree is unknown (older state, oversized snapshot): any known
                // node may be below. All of them are masked; a block masks rather
                // than drops, so the replay keeps its page.
                let bits = if bits & F_BLOCK != 0 { (bits & !F_BLOCK) | F_MASK } else { bits };
                self.deps.index.add_bits_everywhere(bits);
                self.counts.inc("late_mark");
            }
            Some(under) if !under.is_empty() => {
                self.deps.index.add_bits(&under, bits);
                self.counts.inc("late_mark");
            }
            Some(_) => {}
        }
        Ok(())
    }

    // --- sensitive fields by name (show-password toggles) ------------------------------

    fn remember_field(&mut self, attrs: &Pairs<'_>) {
        for key in ["name", "id"] {
            if let Some(name) = nonempty_str(obj_get(attrs, key)) {
                let fingerprint = self.deps.state.field_fingerprint(name);
                self.deps.state.remember_field_name(fingerprint);
            }
        }
    }

    fn field_name_remembered(&self, attrs: &Pairs<'_>) -> bool {
        if self.deps.state.no_field_names() {
            return false;
        }
        ["name", "id"].into_iter().any(|key| {
            nonempty_str(obj_get(attrs, key))
                .is_some_and(|name| self.deps.state.has_field_name(self.deps.state.field_fingerprint(name)))
        })
    }

    /// `parent_id in self.vacated` as Python answers it (`1.0` is `1`; a list raises).
    fn vacated_holds(&self, up: UpId) -> PyResult<bool> {
        Ok(match up {
            UpId::Int(id) => self.vacated.contains(&id),
            UpId::Float(f) => {
                let whole = f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64;
                whole && self.vacated.contains(&(f as i64))
            }
            UpId::Unhashable(list) => {
                let kind = if list { "list" } else { "dict" };
                return Err(PyTypeError::new_err(format!("unhashable type: '{kind}'")));
            }
            UpId::Absent | UpId::Hashable => false,
        })
    }

    /// A form field's bits: sensitive if it takes a sensitive field's place.
    ///
    /// A show-password toggle may replace `<input type=password>` by a new
    /// `type=text` input rather than flip `type`: the new field is sensitive if it
    /// has the name or id of a sensitive field seen in the session, or is added
    /// where one was just removed. Its own name and id are remembered in turn (not
    /// those of fields that only inherit the bit from a container).
    fn field_value(&mut self, mut value: u64, attrs: &Pairs<'_>, parent: u64, up: UpId) -> PyResult<u64> {
        if value & F_MASK_INPUT == 0 && (self.vacated_holds(up)? || self.field_name_remembered(attrs)) {
            value |= F_MASK_INPUT;
        }
        if value & F_MASK_INPUT != 0 && parent & F_MASK_INPUT == 0 {
            self.remember_field(attrs);
        }
        Ok(value)
    }

    // --- nodes -----------------------------------------------------------------------

    /// Masks a serialised subtree in place and records its nodes' bits.
    ///
    /// `sticky`: union with bits already known for the same id (rrweb re-adds a
    /// moved node under its old id; a field that was a password stays masked).
    /// `previous`: the index before a new full snapshot; a form field at an id that
    /// was a sensitive input there stays one. `shape`: records the snapshot's tree;
    /// otherwise (mutation adds under `parent_id`) each node's parent is
    /// remembered. Either way a mark added later finds the subtree.
    fn mask_tree(&mut self, root: &mut Json<'_>, parent_value: u64, mode: &TreeMode<'_>, parent_id: UpId) -> PyResult<()> {
        let mut stack = vec![Frame { node: root, parent: parent_value, depth: 0, up: parent_id }];
        let mut ticks = Ticks::default();
        while let Some(Frame { node, parent, depth, up }) = stack.pop() {
            ticks.tick(self.deadline)?;
            let Json::Object(node) = node else { continue };
            let fields = NodeFields::read(node);
            let node_id = at(node, fields.id);
            let id = int_id(node_id);
            let node_up = UpId::of(node_id);
            self.record_node(mode, shape_id(node_id), id, up, depth)?;
            let node_type = Num::of(at(node, fields.node_type));
            // the children of a blocked element, taken out of the output
            let mut blocked_children: Option<Json> = None;
            let value;
            if parent & F_BLOCK != 0 {
                // inside a blocked element: the node is gone from the output, only
                // its id is remembered so later events on it are dropped
                value = parent & !NOT_INHERITED;
            } else if node_type.is(NODE_ELEMENT) {
                let tag = match at(node, fields.tag_name) {
                    Some(Json::Str(t)) => lowercase(t),
                    _ => Cow::Borrowed(""),
                };
                let empty: Vec<(Str<'_>, Json<'_>)> = Vec::new();
                let attrs: &Pairs<'_> = match at(node, fields.attributes) {
                    Some(Json::Object(a)) => a,
                    _ => &empty,
                };
                let mut v = self.deps.rules.element_value(&tag, attrs, parent);
                let form_field = FORM_FIELD_TAGS.contains(&tag.as_ref());
                if let Some(previous) = mode.previous {
                    if form_field || v & F_INPUT_TEXT != 0 {
                        let before = id.and_then(|id| previous.get(id)).unwrap_or(0);
                        if before & F_MASK_INPUT != 0 {
                            v |= F_MASK_INPUT;
                        }
                    }
                }
                if mode.sticky {
                    if let Some(old) = id.and_then(|id| self.deps.index.get(id)) {
                        v |= old & FLAG_BITS;
                    }
                }
                if form_field {
                    v = self.field_value(v, attrs, parent, up)?;
                }
                if v & F_BLOCK != 0 {
                    self.counts.inc("block");
                    let kept: Vec<(Str<'_>, Json<'_>)> = PLACEHOLDER_ATTRIBUTES
                        .iter()
                        .filter_map(|key| obj_get(attrs, key).map(|item| (Str::Borrowed(*key), item.clone())))
                        .collect();
                    obj_set(node, "attributes", Json::Object(kept));
                    let children = fields.child_nodes.map(|i| std::mem::replace(&mut node[i].1, Json::Array(Vec::new())));
                    if fields.child_nodes.is_none() {
                        node.push((Str::Borrowed("childNodes"), Json::Array(Vec::new())));
                    }
                    blocked_children = children;
                } else if let Some(Json::Object(attrs)) = fields.attributes.map(|i| &mut node[i].1) {
                    if !attrs.is_empty() {
                        self.mask_attributes(attrs, v)?;
                    }
                }
                value = v;
            } else if node_type.is(NODE_TEXT) || node_type.is(NODE_CDATA) || node_type.is(NODE_COMMENT) {
                let mut v = parent & !NOT_INHERITED;
                if parent & F_STYLE_ELEMENT != 0 || is_true(at(node, fields.is_style)) {
                    v |= F_CSS_TEXT;
                } else if parent & F_SCRIPT_ELEMENT != 0 {
                    v |= F_SCRIPT_TEXT;
                }
                if let Some(Json::Str(text)) = fields.text_content.map(|i| &mut node[i].1) {
                    if !text.is_empty() {
                        if let Some(masked) = self.mask_text_content(text, v)? {
                            *text = Str::from(masked);
                        }
                    }
                }
                value = v;
            } else {
                value = parent & !NOT_INHERITED;
                if !node_type.is(NODE_DOCUMENT) && !node_type.is(1) {
                    // unknown node type: hide its strings, keep its structure
                    self.counts.inc("unknown_node_type");
                    for (key, item) in node.iter_mut() {
                        if let Json::Str(text) = item {
                            if !structural(key) {
                                *text = Str::from(self.deps.rules.mask_text(text));
                            }
                        }
                    }
                }
            }
            if let Some(id) = id {
                self.deps.index.set(id, value);
            }
            if let Some(children) = blocked_children {
                // still walked (in document order, before the node's siblings): their
                // ids are remembered as blocked
                self.remember_blocked(&children, value, depth + 1, node_up, mode, &mut ticks)?;
                continue;
            }
            if let Some(Json::Array(children)) = fields.child_nodes.map(|i| &mut node[i].1) {
                // reversed: pop in document order, so ids arrive ascending and
                // the index appends instead of inserting
                for child in children.iter_mut().rev() {
                    if matches!(child, Json::Object(_)) {
                        stack.push(Frame { node: child, parent: value, depth: depth + 1, up: node_up });
                    }
                }
            }
        }
        Ok(())
    }

    /// The shape's visit (full snapshot) or the node's parent pointer (mutation add).
    #[inline]
    fn record_node(&mut self, mode: &TreeMode<'_>, shape: Option<i64>, id: Option<i64>, up: UpId, depth: u32) -> PyResult<()> {
        if mode.shape {
            self.deps.tree.visit(shape, depth);
        } else if let (Some(id), Some(up_id)) = (id, up.int()) {
            self.deps.tree.add_parent(id, up_id)?;
        }
        Ok(())
    }

    /// The nodes under a blocked element, taken out of the output: each records
    /// its place and is remembered with the block's bits, as `mask_tree` does
    /// for every node under a block.
    fn remember_blocked(
        &mut self,
        children: &Json<'_>,
        parent: u64,
        depth: u32,
        up: UpId,
        mode: &TreeMode<'_>,
        ticks: &mut Ticks,
    ) -> PyResult<()> {
        let Json::Array(children) = children else { return Ok(()) };
        let mut stack: Vec<(&Json, u32, UpId)> = children
            .iter()
            .rev()
            .filter(|c| matches!(c, Json::Object(_)))
            .map(|c| (c, depth, up))
            .collect();
        let value = parent & !NOT_INHERITED;
        while let Some((node, depth, up)) = stack.pop() {
            ticks.tick(self.deadline)?;
            let node_id = node.get("id");
            let id = int_id(node_id);
            self.record_node(mode, shape_id(node_id), id, up, depth)?;
            if let Some(id) = id {
                self.deps.index.set(id, value);
            }
            if let Some(Json::Array(grandchildren)) = node.get("childNodes") {
                let node_up = UpId::of(node_id);
                for child in grandchildren.iter().rev() {
                    if matches!(child, Json::Object(_)) {
                        stack.push((child, depth + 1, node_up));
                    }
                }
            }
        }
        Ok(())
    }

    fn text_masked_reason(&self, value: u64) -> Option<&'static str> {
        if self.consent_mask {
            Some("consent")
        } else if value & F_MASK != 0 {
            Some("mask")
        } else {
            None
        }
    }

    /// Why an input value on a node with these bits is masked; None to keep it.
    fn input_mask_reason(&self, value: Option<u64>) -> Option<&'static str> {
        let Some(value) = value else {
            return Some("unknown_node");
        };
        if self.consent_mask {
            Some("consent")
        } else if value & F_MASK != 0 {
            Some("mask")
        } else if value & F_MASK_INPUT != 0 {
            Some("sensitive_field")
        } else if value & F_IGNORE != 0 {
            Some("ignore")
        } else if !self.deps.policy.record_inputs {
            Some("input")
        } else {
            None
        }
    }

    /// A text node's (or text mutation's) text, masked by its bits; None: unchanged.
    fn mask_text_content(&mut self, text: &str, value: u64) -> PyResult<Option<String>> {
        if value & self.text_rule_bits == 0 && !self.consent_mask {
            // fast path: none of the rules below applies, only the scrubber does
            return self.deps.rules.scrub(text, &mut self.counts, ScrubKind::Text);
        }
        if value & F_CSS_TEXT != 0 {
            return Ok(None); // stylesheets stay intact: the replay needs them
        }
        if value & F_SCRIPT_TEXT != 0 {
            if text == SCRIPT_PLACEHOLDER {
                return Ok(None);
            }
            // never executed by the replayer; inline JSON state can hold anything
            self.counts.inc("script");
            return Ok(Some(self.deps.rules.mask_text(text)));
        }
        let mut reason = self.text_masked_reason(value);
        if reason.is_none() && value & F_INPUT_TEXT != 0 {
            reason = self.input_mask_reason(Some(value));
        }
        if let Some(reason) = reason {
            self.counts.inc(reason);
            return Ok(Some(self.deps.rules.mask_text(text)));
        }
        self.deps.rules.scrub(text, &mut self.counts, ScrubKind::Text)
    }

    fn mask_attributes(&mut self, attrs: &mut Pairs<'_>, value: u64) -> PyResult<()> {
        let mut text_reason: Option<Option<&'static str>> = None; // computed once, if needed
        for (name, item) in attrs.iter_mut() {
            let Json::Str(item) = item else { continue };
            if item.is_empty() {
                continue;
            }
            let name = name.as_ref();
            let masked: Option<String> = if name == "value" {
                match self.input_mask_reason(Some(value)) {
                    Some(reason) => {
                        self.counts.inc(reason);
                        Some(self.deps.rules.mask_text(item))
                    }
                    None => self.deps.rules.scrub(item, &mut self.counts, ScrubKind::Text)?,
                }
            } else if UNTOUCHED_ATTRIBUTES.contains(&name) || name.starts_with("rr_") {
                continue;
            } else if name == "srcdoc" {
                // HTML of an iframe whose document rrweb records (and masks) anyway
                self.counts.inc("srcdoc");
                Some(self.deps.rules.mask_text(item))
            } else if self.attribute_names_secret(name, item) {
                // data-api-key, data-csrf, x-auth-token: the name says what it holds
                self.counts.inc("secret_attribute");
                Some(self.deps.rules.mask_text(item))
            } else if name == "content" && value & F_MASK_INPUT != 0 {
                // <meta name="csrf-token" content=...>: the name makes it sensitive
                self.counts.inc("sensitive_field");
                Some(self.deps.rules.mask_text(item))
            } else if URL_ATTRIBUTES.contains(&name) {
                let asset = ASSET_URL_ATTRIBUTES.contains(&name);
                self.deps.rules.scrub_url(item, &mut self.counts, asset)?
            } else if TEXT_ATTRIBUTES.contains(&name) || name.starts_with("data-") || name.starts_with("aria-") {
                let mut reason = *text_reason.get_or_insert_with(|| self.text_masked_reason(value));
                if reason.is_none() && name == "placeholder" && value & F_MASK_INPUT != 0 {
                    reason = Some("sensitive_field");
                }
                match reason {
                    Some(reason) => {
                        self.counts.inc(reason);
                        Some(self.deps.rules.mask_text(item))
                    }
                    None => self.deps.rules.scrub(item, &mut self.counts, ScrubKind::Text)?,
                }
            } else {
                // class and id are read by CSS: a random-looking class is a build hash
                let kind = if name != "class" && name != "id" { ScrubKind::Text } else { ScrubKind::NoRandomTokens };
                self.deps.rules.scrub(item, &mut self.counts, kind)?
            };
            if let Some(masked) = masked {
                *item = Str::from(masked);
            }
        }
        Ok(())
    }

    fn attribute_names_secret(&mut self, key: &str, item: &str) -> bool {
        let rules = &mut self.deps.rules;
        rules.key_is_secret(key) || (rules.key_is_weak_secret(key) && rules.looks_secret_value(item))
    }

    // --- free-form payloads ------------------------------------------------------------

    /// PII- and secret-scans every leaf (custom events, console logs).
    ///
    /// A value under a key that names a secret (any depth) is masked whatever it
    /// is, numbers included; a number that is a card number is masked too. So is
    /// the value of a name/value pair that names a secret (HAR headers
    /// `{"name": "X-Api-Key", "value": …}`, `["Authorization", …]`, as Relay's
    /// pair lists).
    fn scrub_leaves(&mut self, root: &mut Json<'_>) -> PyResult<()> {
        let mut stack: Vec<&mut Json> = vec![root];
        let mut ticks = Ticks::default();
        while let Some(current) = stack.pop() {
            ticks.tick(self.deadline)?;
            match current {
                Json::Object(pairs) => {
                    if self.pair_names_secret(obj_get(pairs, "name")) {
                        if let Some(value) = obj_get_mut(pairs, "value") {
                            if is_value(value) {
                                self.counts.inc("secret_key");
                                *value = Json::Str(Str::from(self.masked_leaf(value)));
                            }
                        }
                    }
                    for (key, item) in pairs.iter_mut() {
                        if item.is_container() {
                            if self.deps.rules.key_is_secret(key) {
                                self.counts.inc("secret_key");
                                self.mask_leaves(item, true)?;
                            } else {
                                stack.push(item);
                            }
                        } else if is_value(item) && self.secret_under(key, item) {
                            self.counts.inc("secret_key");
                            *item = Json::Str(Str::from(self.masked_leaf(item)));
                        } else if let Some(scrubbed) = self.scrub_leaf(item)? {
                            *item = scrubbed;
                        }
                    }
                }
                Json::Array(items) => {
                    if items.len() == 2 && self.pair_names_secret(items.first()) && is_value(&items[1]) {
                        self.counts.inc("secret_key");
                        items[1] = Json::Str(Str::from(self.masked_leaf(&items[1])));
                    }
                    for item in items.iter_mut() {
                        if item.is_container() {
                            stack.push(item);
                        } else if let Some(scrubbed) = self.scrub_leaf(item)? {
                            *item = scrubbed;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A payload leaf scrubbed; None: unchanged.
    fn scrub_leaf(&mut self, item: &Json<'_>) -> PyResult<Option<Json<'static>>> {
        match item {
            Json::Str(text) => {
                Ok(self.deps.rules.scrub(text, &mut self.counts, ScrubKind::Payload)?.map(|s| Json::Str(Str::Owned(s))))
            }
            Json::Int(_) | Json::UInt(_) if self.deps.rules.card_number(&py_str(item)) => {
                self.counts.inc("pii_card");
                Ok(Some(Json::Str(Str::from(self.masked_leaf(item)))))
            }
            _ => Ok(None),
        }
    }

    /// Masks every string leaf except structural keys (unknown event shapes);
    /// `numbers`: numbers too (everything under a secret-named key).
    fn mask_leaves(&mut self, root: &mut Json<'_>, numbers: bool) -> PyResult<()> {
        let mut stack: Vec<&mut Json> = vec![root];
        let mut ticks = Ticks::default();
        while let Some(current) = stack.pop() {
            ticks.tick(self.deadline)?;
            match current {
                Json::Object(pairs) => {
                    for (key, item) in pairs.iter_mut() {
                        if let Json::Str(text) = item {
                            if !structural(key) {
                                *text = Str::from(self.deps.rules.mask_text(text));
                            }
                        } else if item.is_container() {
                            stack.push(item);
                        } else if numbers && is_value(item) {
                            *item = Json::Str(Str::from(self.masked_leaf(item)));
                        }
                    }
                }
                Json::Array(items) => {
                    for item in items.iter_mut() {
                        if let Json::Str(text) = item {
                            *text = Str::from(self.deps.rules.mask_text(text));
                        } else if item.is_container() {
                            stack.push(item);
                        } else if numbers && is_value(item) {
                            *item = Json::Str(Str::from(self.masked_leaf(item)));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The name of a name/value pair (a header, a cookie, a log's first argument),
    /// possibly JSON-quoted as the console plugin writes strings, names a secret.
    fn pair_names_secret(&mut self, name: Option<&Json<'_>>) -> bool {
        let Some(Json::Str(name)) = name else { return false };
        let chars = name.chars().count(); // code points, as Python's len
        chars > 0 && chars <= 128 && self.deps.rules.key_is_secret(name)
    }

    /// A leaf under a secret-named key, or a generated-looking one under a weak word.
    fn secret_under(&mut self, key: &str, item: &Json<'_>) -> bool {
        let rules = &mut self.deps.rules;
        if rules.key_is_secret(key) {
            return true;
        }
        rules.key_is_weak_secret(key) && rules.looks_secret_value(&py_str(item))
    }

    /// A masked string as long as the leaf's text (a number becomes `*` digits).
    fn masked_leaf(&self, item: &Json<'_>) -> String {
        match item {
            Json::Str(text) => self.deps.rules.mask_text(text),
            _ => self.deps.rules.mask_text(&py_str(item)),
        }
    }
}

/// Keeps the entries of `list` whose flag is set (the list is left alone if all are).
fn keep_only(list: &mut Vec<Json>, keep: &[bool]) {
    if keep.iter().all(|k| *k) {
        return;
    }
    let mut flags = keep.iter();
    list.retain(|_| *flags.next().unwrap_or(&true));
}

/// `tag.lower()`: ASCII directly; other text by Unicode's full lower-case mapping
/// (final sigma included), as Python's `str.lower`.
fn lowercase(tag: &str) -> Cow<'_, str> {
    if !tag.is_ascii() {
        Cow::Owned(tag.to_lowercase())
    } else if tag.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(tag.to_ascii_lowercase())
    } else {
        Cow::Borrowed(tag)
    }
}

fn feeds_node_index(event: &Json<'_>) -> PyResult<bool> {
    let Json::Object(event) = event else {
        // Python's `event.get` on a non-dict
        return Err(PyAttributeError::new_err("an event is not an object"));
    };
    let etype = Num::of(obj_get(event, "type"));
    if etype.is(EVENT_FULL_SNAPSHOT) {
        return Ok(true);
    }
    if !etype.is(EVENT_INCREMENTAL) {
        return Ok(false);
    }
    Ok(match obj_get(event, "data") {
        Some(Json::Object(data)) => Num::of(obj_get(data, "source")).is(SOURCE_MUTATION),
        _ => false,
    })
}

/// `granted` of a `replaypipe.consent` custom event, None for other events.
/// Anything but `granted: true` counts as a refusal: when unsure, mask.
fn consent_signal(event: &Json<'_>) -> Option<bool> {
    let Json::Object(event) = event else { return None };
    if !Num::of(obj_get(event, "type")).is(EVENT_CUSTOM) {
        return None;
    }
    let Some(Json::Object(data)) = obj_get(event, "data") else { return None };
    if !eq_str(obj_get(data, "tag"), CONSENT_EVENT_TAG) {
        return None;
    }
    Some(match obj_get(data, "payload") {
        Some(Json::Object(payload)) => is_true(obj_get(payload, "granted")),
        _ => false,
    })
}

// --- the Python face -------------------------------------------------------------

/// A raw message's events, parsed (`parse_envelope`, or `events_from_objects`):
/// the walk masks them in place, and the kept ones are written to JSON from here.
#[pyclass(module = "replaypipe_masker_core")]
pub struct ParsedEvents {
    // SAFETY: the strings of `events` may borrow from `raw`'s buffer (the 'static
    // is not true). `raw` is an immutable Python bytes object this struct keeps
    // alive, so the buffer neither moves nor changes, and `events` is declared
    // first, so it is dropped first; no `Json` is handed out of this struct.
    events: Vec<Json<'static>>,
    #[allow(dead_code)] // only kept alive
    raw: Option<Py<PyBytes>>,
    /// How deep the parsed document nested (None: built from Python objects,
    /// which may nest deeper than a recursive drop or writer may go).
    depth: Option<usize>,
}

impl Drop for ParsedEvents {
    fn drop(&mut self) {
        if self.depth.is_none() {
            for event in self.events.drain(..) {
                json_doc::dispose(event);
            }
        }
    }
}

/// `value` as JSON and how deep it nests; no JSON when the envelope around it
/// (`envelope_levels`) would nest past what orjson writes (the caller raises
/// `BatchTooDeep`).
fn write_checked(py: Python<'_>, value: &Json<'_>, envelope_levels: usize) -> (Option<Vec<u8>>, usize) {
    py.detach(|| {
        let depth = json_doc::depth(value);
        if depth + envelope_levels >= json_doc::MAX_WRITE_DEPTH {
            return (None, depth);
        }
        (Some(json_doc::to_vec(value)), depth)
    })
}

#[pymethods]
impl ParsedEvents {
    fn __len__(&self) -> usize {
        self.events.len()
    }

    /// Every event (as masked so far) as Python objects.
    fn to_objects<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self.events.iter().map(|event| json_to_py(py, event)).collect()
    }

    /// Takes the events at the positions `kept` out, as a JSON array for an
    /// envelope (`envelope_levels` around it), with how deep the array nests (or
    /// a bound above it, when it cannot be too deep); no bytes when it nests too
    /// deep for orjson to write the envelope.
    fn kept_json<'py>(
        &mut self,
        py: Python<'py>,
        kept: Vec<usize>,
        envelope_levels: usize,
    ) -> PyResult<(Option<Bound<'py, PyBytes>>, usize)> {
        let mut chosen = Vec::with_capacity(kept.len());
        for i in kept {
            let Some(event) = self.events.get_mut(i) else {
                return Err(PyValueError::new_err("kept index out of range"));
            };
            chosen.push(std::mem::replace(event, Json::Null));
        }
        let array = Json::Array(chosen);
        // A parsed document's events nest less deep than the document, and the
        // walk adds at most one level (a blocked element's placeholder attributes):
        // when that cannot reach orjson's limit, the depth need not be counted.
        let (bytes, depth) = match self.depth {
            Some(depth) if depth + envelope_levels < json_doc::MAX_WRITE_DEPTH => {
                // written and freed with the GIL released
                let bytes = py.detach(move || json_doc::to_vec(&array));
                (Some(bytes), depth)
            }
            _ => {
                let written = write_checked(py, &array, envelope_levels);
                json_doc::dispose(array);
                written
            }
        };
        Ok((bytes.map(|b| PyBytes::new(py, &b)), depth))
    }
}

/// Python events (orjson's objects, or a test's dicts) as the walk reads
/// them, without recursion (a test's DOM may be 20,000 levels deep): dicts,
/// lists and tuples are containers, a key that is not a `str` is left out,
/// other leaves as [`py_to_json`] reads them.
#[pyfunction]
fn events_from_objects(events: &Bound<'_, PyList>) -> PyResult<ParsedEvents> {
    /// A container being filled: its items still to read (reversed) and what is read.
    struct Building<'py> {
        todo: Vec<(Option<String>, Bound<'py, PyAny>)>,
        array: Option<Vec<Json<'static>>>,
        object: Vec<(Str<'static>, Json<'static>)>,
        key: Option<String>,
    }
    fn open<'py>(value: &Bound<'py, PyAny>, key: Option<String>) -> Option<Building<'py>> {
        let (todo, array) = if let Ok(d) = value.cast::<PyDict>() {
            let todo = d
                .iter()
                .filter_map(|(k, v)| k.cast::<pyo3::types::PyString>().ok().map(|k| (Some(k.to_string_lossy().into_owned()), v)))
                .collect::<Vec<_>>();
            (todo, None)
        } else if let Ok(l) = value.cast::<PyList>() {
            (l.iter().map(|v| (None, v)).collect(), Some(Vec::with_capacity(l.len())))
        } else if let Ok(t) = value.cast::<pyo3::types::PyTuple>() {
            (t.iter().map(|v| (None, v)).collect(), Some(Vec::with_capacity(t.len())))
        } else {
            return None;
        };
        let mut todo = todo;
        todo.reverse();
        Some(Building { todo, array, object: Vec::new(), key })
    }
    let root = events.clone().into_any();
    let mut stack = vec![open(&root, None).expect("a list")];
    loop {
        let top = stack.last_mut().expect("the root is popped last");
        match top.todo.pop() {
            Some((key, value)) => match open(&value, key.clone()) {
                Some(child) => stack.push(child),
                None => {
                    let leaf = py_to_json(&value, 0, 0)?;
                    match (&mut top.array, key) {
                        (Some(items), _) => items.push(leaf),
                        (None, Some(key)) => top.object.push((Str::Owned(key), leaf)),
                        (None, None) => {}
                    }
                }
            },
            None => {
                let mut done = stack.pop().expect("not empty");
                let value = match done.array.take() {
                    Some(items) => Json::Array(items),
                    None => Json::Object(std::mem::take(&mut done.object)),
                };
                let Some(parent) = stack.last_mut() else {
                    let mut value = value;
                    let events = match &mut value {
                        Json::Array(items) => std::mem::take(items),
                        _ => Vec::new(), // the root is a list
                    };
                    return Ok(ParsedEvents { events, raw: None, depth: None });
                };
                match (&mut parent.array, done.key.take()) {
                    (Some(items), _) => items.push(value),
                    (None, Some(key)) => {
                        // a dict's keys are distinct already
                        parent.object.push((Str::Owned(key), value));
                    }
                    (None, None) => {}
                }
            }
        }
    }
}

/// A [`Json`] value as Python objects (what `orjson.loads` makes), without recursion.
fn json_to_py<'py>(py: Python<'py>, value: &Json<'_>) -> PyResult<Bound<'py, PyAny>> {
    fn leaf<'py>(py: Python<'py>, value: &Json<'_>) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(Some(match value {
            Json::Null => py.None().into_bound(py),
            Json::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
            Json::Int(v) => v.into_pyobject(py)?.into_any(),
            Json::UInt(v) => v.into_pyobject(py)?.into_any(),
            Json::Float(v) => pyo3::types::PyFloat::new(py, *v).into_any(),
            Json::Str(s) => pyo3::types::PyString::new(py, s).into_any(),
            Json::Array(_) | Json::Object(_) => return Ok(None),
        }))
    }
    fn empty<'py>(py: Python<'py>, value: &Json<'_>) -> Bound<'py, PyAny> {
        match value {
            Json::Array(_) => PyList::empty(py).into_any(),
            _ => PyDict::new(py).into_any(),
        }
    }
    if let Some(single) = leaf(py, value)? {
        return Ok(single);
    }
    let root = empty(py, value);
    let mut stack: Vec<(&Json, Bound<'py, PyAny>)> = vec![(value, root.clone())];
    while let Some((json, target)) = stack.pop() {
        match json {
            Json::Array(items) => {
                let list = target.cast::<PyList>()?;
                for item in items {
                    match leaf(py, item)? {
                        Some(v) => list.append(v)?,
                        None => {
                            let child = empty(py, item);
                            list.append(&child)?;
                            stack.push((item, child));
                        }
                    }
                }
            }
            Json::Object(pairs) => {
                let dict = target.cast::<PyDict>()?;
                for (key, item) in pairs {
                    match leaf(py, item)? {
                        Some(v) => dict.set_item(key, v)?,
                        None => {
                            let child = empty(py, item);
                            dict.set_item(key, &child)?;
                            stack.push((item, child));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(root)
}

/// Splits an envelope into its header (every field, the events replaced by
/// `[]` when they are a list) and the events: `events`, or `batch.events`
/// when `events` is absent or null (as `BatchEnvelope.from_dict` finds them).
fn split_envelope(mut doc: Json) -> (Json, Option<Vec<Json>>) {
    let Json::Object(pairs) = &mut doc else {
        return (Json::Null, None); // not an object: from_dict says so
    };
    let top = pairs.iter().position(|(k, v)| k == "events" && *v != Json::Null);
    let slot = match top {
        Some(i) => Some(&mut pairs[i].1),
        None => match obj_get_mut(pairs, "batch") {
            Some(Json::Object(batch)) => obj_get_mut(batch, "events"),
            _ => None,
        },
    };
    // the list is taken, an empty one left in its place
    let events = match slot {
        Some(Json::Array(events)) => Some(std::mem::take(events)),
        _ => None,
    };
    (doc, events)
}

/// A raw envelope parsed with the GIL released: `(header JSON, events)` (the
/// events None when they are not a list: the header then says why), or None
/// when this parser cannot read the value as orjson does (not JSON at all,
/// nested deeper than `MAX_PARSE_DEPTH`, or a negative zero): the caller
/// takes orjson's way.
#[pyfunction]
fn parse_envelope<'py>(
    py: Python<'py>,
    raw: &Bound<'py, PyBytes>,
) -> PyResult<Option<(Bound<'py, PyBytes>, Option<ParsedEvents>)>> {
    let bytes = raw.as_bytes();
    let split = py.detach(|| {
        // a panic (a bug) takes orjson's way too
        crate::detectors::guarded("parse", || {
            json_doc::parse(bytes).ok().map(|doc| {
                let (header, events) = split_envelope(doc.value);
                (json_doc::to_vec(&header), events, doc.depth)
            })
        })
        .ok()
        .flatten()
    });
    Ok(split.map(|(header, events, depth)| {
        let events = events.map(|events| ParsedEvents {
            // SAFETY: see `ParsedEvents`: it keeps `raw`, whose buffer these borrow.
            events: unsafe { std::mem::transmute::<Vec<Json<'_>>, Vec<Json<'static>>>(events) },
            raw: Some(raw.clone().unbind()),
            depth: Some(depth),
        });
        (PyBytes::new(py, &header), events)
    }))
}

/// Parses and writes back one JSON document (the tests' check that the
/// parser means what orjson means); None where the fallback is taken.
#[pyfunction]
fn json_roundtrip<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Option<Bound<'py, PyBytes>>> {
    match py.detach(|| json_doc::parse(raw).map(|doc| json_doc::to_vec(&doc.value))) {
        Ok(bytes) => Ok(Some(PyBytes::new(py, &bytes))),
        Err(ParseError::Fallback) => Ok(None),
        Err(err) => Err(PyValueError::new_err(err.to_string())),
    }
}

/// Masks parsed events in place with the GIL released: `(kept positions,
/// consent state, dropped)`; the counts are added into `counts` (a `Counter`).
#[pyfunction]
#[pyo3(signature = (events, state, policy, consent, counts, *, budget_s, text_rule_bits, max_node_runs, max_field_names))]
#[allow(clippy::too_many_arguments)]
fn mask_events(
    py: Python<'_>,
    events: &Bound<'_, ParsedEvents>,
    state: &Bound<'_, PyAny>,
    policy: &Bound<'_, PyAny>,
    consent: Option<&Bound<'_, PyAny>>,
    counts: &Bound<'_, PyAny>,
    budget_s: Option<f64>,
    text_rule_bits: i64,
    max_node_runs: usize,
    max_field_names: usize,
) -> PyResult<(Vec<usize>, String, u64)> {
    let consent = match consent {
        Some(c) if !c.is_none() => Some(c.is_truthy()?),
        _ => None,
    };
    let mut deps = Deps::take(policy, state, max_node_runs, max_field_names)?;
    let mut list = std::mem::take(&mut events.try_borrow_mut()?.events);
    let deadline = deadline_after(budget_s);
    let (outcome, walked) = py.detach(|| {
        let mut walk = BatchWalk::new(&mut deps, deadline, text_rule_bits as u64);
        // a panic (a bug) is a RuntimeError, a DLQ pointer (`mask_error`), not
        // a BaseException that would stop the worker
        let outcome = crate::detectors::guarded("walk", || walk.run(&mut list, consent))
            .and_then(|outcome| outcome);
        (outcome, std::mem::take(&mut walk.counts))
    });
    events.try_borrow_mut()?.events = list;
    deps.put_back(state)?;
    let outcome = outcome?;
    walked.add_to_py(counts)?;
    Ok((outcome.kept, outcome.consent_state, outcome.dropped))
}

/// Registers the walk's names in the core module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<ParsedEvents>()?;
    m.add_function(wrap_pyfunction!(events_from_objects, m)?)?;
    m.add_function(wrap_pyfunction!(parse_envelope, m)?)?;
    m.add_function(wrap_pyfunction!(json_roundtrip, m)?)?;
    m.add_function(wrap_pyfunction!(mask_events, m)?)?;
    m.add("WalkOverBudget", py.get_type::<WalkOverBudget>())?;
    m.add("INHERITED_MARKS", INHERITED_MARKS)?;
    m.add("TEXT_RULE_BITS", TEXT_RULE_BITS)?;
    m.add("BUDGET_CHECK_EVERY", BUDGET_CHECK_EVERY)?;
    m.add("MAX_PARSE_DEPTH", json_doc::MAX_PARSE_DEPTH)?;
    m.add("MAX_WRITE_DEPTH", json_doc::MAX_WRITE_DEPTH)?;
    let vocab = PyDict::new(py);
    vocab.set_item("EVENT_DOM_CONTENT_LOADED", EVENT_DOM_CONTENT_LOADED)?;
    vocab.set_item("EVENT_LOAD", EVENT_LOAD)?;
    vocab.set_item("EVENT_FULL_SNAPSHOT", EVENT_FULL_SNAPSHOT)?;
    vocab.set_item("EVENT_INCREMENTAL", EVENT_INCREMENTAL)?;
    vocab.set_item("EVENT_META", EVENT_META)?;
    vocab.set_item("EVENT_CUSTOM", EVENT_CUSTOM)?;
    vocab.set_item("EVENT_PLUGIN", EVENT_PLUGIN)?;
    vocab.set_item("SOURCE_MUTATION", SOURCE_MUTATION)?;
    vocab.set_item("SOURCE_INPUT", SOURCE_INPUT)?;
    vocab.set_item("SOURCE_CANVAS", SOURCE_CANVAS)?;
    vocab.set_item("SOURCE_LOG", SOURCE_LOG)?;
    vocab.set_item("PASS_THROUGH_SOURCES", PASS_THROUGH_SOURCES.to_vec())?;
    vocab.set_item("NODE_DOCUMENT", NODE_DOCUMENT)?;
    vocab.set_item("NODE_ELEMENT", NODE_ELEMENT)?;
    vocab.set_item("NODE_TEXT", NODE_TEXT)?;
    vocab.set_item("NODE_CDATA", NODE_CDATA)?;
    vocab.set_item("NODE_COMMENT", NODE_COMMENT)?;
    vocab.set_item("CONSOLE_PLUGIN", CONSOLE_PLUGIN)?;
    vocab.set_item("SEQUENTIAL_ID_PLUGIN", SEQUENTIAL_ID_PLUGIN)?;
    vocab.set_item("CONSENT_EVENT_TAG", CONSENT_EVENT_TAG)?;
    vocab.set_item("SCRIPT_PLACEHOLDER", SCRIPT_PLACEHOLDER)?;
    vocab.set_item("TEXT_ATTRIBUTES", TEXT_ATTRIBUTES.to_vec())?;
    vocab.set_item("URL_ATTRIBUTES", URL_ATTRIBUTES.to_vec())?;
    vocab.set_item("ASSET_URL_ATTRIBUTES", ASSET_URL_ATTRIBUTES.to_vec())?;
    vocab.set_item("UNTOUCHED_ATTRIBUTES", UNTOUCHED_ATTRIBUTES.to_vec())?;
    vocab.set_item("PLACEHOLDER_ATTRIBUTES", PLACEHOLDER_ATTRIBUTES.to_vec())?;
    vocab.set_item("STRUCTURAL_KEYS", STRUCTURAL_KEYS.to_vec())?;
    vocab.set_item("FORM_FIELD_TAGS", FORM_FIELD_TAGS.to_vec())?;
    vocab.set_item("CONSENT_GRANTED", CONSENT_GRANTED)?;
    vocab.set_item("CONSENT_WITHDRAWN", CONSENT_WITHDRAWN)?;
    vocab.set_item("CONSENT_NOT_REQUIRED", CONSENT_NOT_REQUIRED)?;
    m.add("WALK_VOCABULARY", vocab)?;
    Ok(())
}
