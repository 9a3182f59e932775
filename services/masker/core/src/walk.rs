//! The batch walk: one pass over a batch of a session's rrweb events, masking
//! each in place by the site's policy and the session's node bits
//! (`services/masker/batch.py` is the thin Python face; docs/masking.md).
//!
//! The events are the Python objects orjson made (dicts, lists, strings): the
//! walk reads them with the key objects orjson made (a node's dict in one pass,
//! [`NodeReader`]; events' fields with keys learned once, [`EventKeys`]) or
//! interned keys, borrows strings, writes a value back only when it changed,
//! and walks trees and payloads with explicit stacks
//! (trees can be 10,000+ deep). Every rule it applies lives elsewhere and is
//! reached through `walk_deps` (the element rules, the scrubber, the node index
//! and tree, all native): what is here is only the walk itself.
//!
//! Type checks reproduce the Python ones exactly: `isinstance(x, int)` is true
//! for bools, `x == 3` for `3.0` and `True == 1`, and hashing a list or dict
//! (set membership) raises `TypeError` as it does in Python.
use std::cell::Cell;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyAttributeError, PyException};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString};

use crate::counts::Counts;
use crate::flags::{
    FLAG_BITS, F_BLOCK, F_CSS_TEXT, F_IGNORE, F_INPUT_TEXT, F_MASK, F_MASK_INPUT, F_SCRIPT_ELEMENT,
    F_SCRIPT_TEXT, F_STYLE_ELEMENT, NOT_INHERITED, UNKNOWN_NODE,
};
use crate::walk_deps::{Deps, NodeIndex, ScrubKind, SnapshotShape};
use crate::{node_index, node_tree};

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

// --- Python's type checks, exactly ---------------------------------------------------

/// `isinstance(x, int)` (bools included) as an id; None for other types and for
/// ints beyond 64 bits (no page has those: unknown, so masked). The node index's rule.
fn int_id(obj: Option<&Bound<'_, PyAny>>) -> Option<i64> {
    obj.and_then(node_index::int_id)
}

/// A snapshot shape's id (the shape's own rule: a non-negative exact int); None
/// for anything else, which the shape records as a placeholder.
fn shape_id(obj: Option<&Bound<'_, PyAny>>) -> Option<i64> {
    obj.map(node_tree::shape_id).filter(|id| *id >= 0)
}

/// A JSON value as Python's `==` compares it with an int: read once, compared often.
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
    Other,
}

impl Num {
    fn of(obj: Option<&Bound<'_, PyAny>>) -> Num {
        let Some(obj) = obj else { return Num::Other };
        if obj.is_instance_of::<PyInt>() {
            // bools are ints (`True == 1`); an int beyond 64 bits equals no constant
            return obj.extract::<i64>().map_or(Num::Other, Num::Int);
        }
        match obj.cast::<PyFloat>() {
            Ok(f) => Num::Float(f.value()),
            Err(_) => Num::Other,
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

/// Python's `obj == n` for JSON values.
fn eq_int(obj: Option<&Bound<'_, PyAny>>, n: i64) -> bool {
    Num::of(obj).is(n)
}

/// Python's `obj in {ints}`: equality as [`eq_int`], and `TypeError` for an
/// unhashable value (a list or dict), as the set lookup raises.
fn in_int_set(obj: Option<&Bound<'_, PyAny>>, set: &[i64]) -> PyResult<bool> {
    let Some(o) = obj else { return Ok(false) };
    if o.is_instance_of::<PyInt>() || o.is_instance_of::<PyFloat>() {
        let value = Num::of(obj);
        return Ok(set.iter().any(|n| value.is(*n)));
    }
    if !(o.is_none() || o.is_instance_of::<PyString>()) {
        o.hash()?;
    }
    Ok(false)
}

/// Python's `obj == "text"`.
fn eq_str(obj: Option<&Bound<'_, PyAny>>, text: &str) -> PyResult<bool> {
    match obj.and_then(|o| o.cast::<PyString>().ok()) {
        Some(s) => Ok(s.to_str()? == text),
        None => Ok(false),
    }
}

/// `obj is True`.
fn is_true(obj: Option<&Bound<'_, PyAny>>) -> bool {
    obj.and_then(|o| o.cast::<PyBool>().ok())
        .is_some_and(|b| b.is_true())
}

/// `isinstance(x, dict | list)`.
fn is_container(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyDict>() || obj.is_instance_of::<PyList>()
}

/// A string or number leaf (booleans and null say nothing secret).
fn is_value(obj: Option<&Bound<'_, PyAny>>) -> bool {
    let Some(o) = obj else { return false };
    (o.is_instance_of::<PyString>() || o.is_instance_of::<PyInt>() || o.is_instance_of::<PyFloat>())
        && !o.is_instance_of::<PyBool>()
}

/// A non-empty Python string, borrowed.
fn nonempty_str<'a, 'py>(obj: Option<&'a Bound<'py, PyAny>>) -> Option<&'a Bound<'py, PyString>> {
    // the length in code points, without reading the text
    obj.and_then(|o| o.cast::<PyString>().ok())
        .filter(|s| s.len().map_or(true, |n| n > 0))
}

/// A JSON key as a string; a non-string key is only possible in hand-made
/// dicts, where Python's `name.startswith` would raise too.
fn key_str<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    match key.cast::<PyString>() {
        Ok(s) => s.to_str(),
        Err(_) => Err(PyAttributeError::new_err(
            "an attribute name is not a string",
        )),
    }
}

/// A long walk hands the GIL to other threads at least this often, as Python
/// code does (`sys.getswitchinterval()`): the masker's event loop (`/healthz`,
/// heartbeats) keeps answering while a big batch is masked in its thread.
const GIL_SWITCH_INTERVAL: Duration = Duration::from_millis(5);

thread_local! {
    static LAST_GIL_SWITCH: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Lets other Python threads run if this thread has held the GIL for a switch interval.
fn switch_gil(py: Python<'_>, now: Instant) {
    LAST_GIL_SWITCH.with(|last| match last.get() {
        Some(at) if now.duration_since(at) < GIL_SWITCH_INTERVAL => {}
        Some(_) => {
            py.detach(|| ());
            last.set(Some(Instant::now()));
        }
        None => last.set(Some(now)),
    });
}

/// The budget check, read between events and every [`BUDGET_CHECK_EVERY`]
/// nodes or containers: past the deadline the walk stops; otherwise other
/// threads may get the GIL.
fn check_deadline(py: Python<'_>, deadline: Option<Instant>) -> PyResult<()> {
    let now = Instant::now();
    if let Some(deadline) = deadline {
        if now > deadline {
            return Err(WalkOverBudget::new_err("masking took longer than its budget"));
        }
    }
    switch_gil(py, now);
    Ok(())
}

/// Nodes or containers walked since the clock was last read: inside one event the
/// budget is checked once per [`BUDGET_CHECK_EVERY`] of them.
#[derive(Default)]
struct Ticks(u32);

impl Ticks {
    fn tick(&mut self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<()> {
        self.0 += 1;
        if self.0 == BUDGET_CHECK_EVERY {
            self.0 = 0;
            check_deadline(py, deadline)?;
        }
        Ok(())
    }
}

/// The fields of a serialised node that the walk reads (`node.get(...)` of each).
#[derive(Default)]
struct NodeFields<'py> {
    id: Option<Bound<'py, PyAny>>,
    node_type: Option<Bound<'py, PyAny>>,
    child_nodes: Option<Bound<'py, PyAny>>,
    tag_name: Option<Bound<'py, PyAny>>,
    attributes: Option<Bound<'py, PyAny>>,
    text_content: Option<Bound<'py, PyAny>>,
    is_style: Option<Bound<'py, PyAny>>,
}

/// The keys of [`NodeFields`], in its order.
const NODE_FIELDS: [&str; 7] =
    ["id", "type", "childNodes", "tagName", "attributes", "textContent", "isStyle"];
/// Up to this many keys, one pass over a node's dict beats a look-up per field.
const SCAN_NODE_KEYS_UP_TO: usize = 8;
/// Other keys (`rootId`, `isSVG`...) remembered as not being fields.
const OTHER_NODE_KEYS: usize = 8;

/// Reads nodes' fields in one pass over each dict (a node has 3 to 6 keys).
///
/// orjson makes one string object per key text, so a key is recognised by the
/// object it is (remembered the first time its text was read) and only a key
/// never seen is compared by text. A dict with more keys, or with a key that is
/// not exactly a `str`, is read by look-ups, as Python's `node.get` would.
struct NodeReader<'py> {
    fields: [Option<Bound<'py, PyString>>; 7],
    others: Vec<Bound<'py, PyString>>,
}

impl<'py> NodeReader<'py> {
    fn new() -> Self {
        Self { fields: Default::default(), others: Vec::with_capacity(OTHER_NODE_KEYS) }
    }

    fn read(&mut self, node: &Bound<'py, PyDict>) -> PyResult<NodeFields<'py>> {
        if node.len() <= SCAN_NODE_KEYS_UP_TO {
            if let Some(fields) = self.scan(node)? {
                return Ok(fields);
            }
        }
        let py = node.py();
        Ok(NodeFields {
            id: node.get_item(intern!(py, "id"))?,
            node_type: node.get_item(intern!(py, "type"))?,
            child_nodes: node.get_item(intern!(py, "childNodes"))?,
            tag_name: node.get_item(intern!(py, "tagName"))?,
            attributes: node.get_item(intern!(py, "attributes"))?,
            text_content: node.get_item(intern!(py, "textContent"))?,
            is_style: node.get_item(intern!(py, "isStyle"))?,
        })
    }

    /// The fields in one pass; None if a key is not exactly a `str`.
    fn scan(&mut self, node: &Bound<'py, PyDict>) -> PyResult<Option<NodeFields<'py>>> {
        let mut read = NodeFields::default();
        for (key, value) in node.iter() {
            let field = match self.fields.iter().position(|k| k.as_ref().is_some_and(|k| k.is(&key))) {
                Some(field) => field,
                None if self.others.iter().any(|k| k.is(&key)) => continue,
                None => {
                    if !key.is_exact_instance_of::<PyString>() {
                        return Ok(None);
                    }
                    let key = key.cast_into::<PyString>()?;
                    // text with lone surrogates equals no field name
                    let field = key.to_str().ok().and_then(|text| NODE_FIELDS.iter().position(|f| *f == text));
                    match field {
                        Some(field) => {
                            self.fields[field] = Some(key);
                            field
                        }
                        None => {
                            if self.others.len() < OTHER_NODE_KEYS {
                                self.others.push(key);
                            }
                            continue;
                        }
                    }
                }
            };
            let slot = match field {
                0 => &mut read.id,
                1 => &mut read.node_type,
                2 => &mut read.child_nodes,
                3 => &mut read.tag_name,
                4 => &mut read.attributes,
                5 => &mut read.text_content,
                _ => &mut read.is_style,
            };
            *slot = Some(value);
        }
        Ok(Some(read))
    }
}

/// Event-level keys the walk looks up, by [`EventKeys`] slot.
#[derive(Clone, Copy)]
#[repr(usize)]
enum Key {
    Data,
    Type,
    Source,
    Id,
    Text,
    ParentId,
    Node,
    Value,
    Attributes,
    Adds,
    Removes,
    Texts,
}

const EVENT_KEY_NAMES: [&str; 12] = [
    "data", "type", "source", "id", "text", "parentId", "node", "value", "attributes", "adds",
    "removes", "texts",
];
/// Dicts read to learn a key's object before the walk stops trying (per batch).
const KEY_LEARNING_TRIES: u8 = 8;

/// The key objects to look events' fields up with: the ones orjson made.
///
/// A dict look-up whose key is the very object stored in the dict skips the text
/// comparison, and orjson makes one object per key text, which is not the interned
/// string `intern!` gives. So each name's object is learned the first time a dict
/// holding it is read, and used for every later look-up. A look-up with it is the
/// same look-up (an exact `str` of the same text: same hash, equal), so this only
/// changes how fast a key is found.
struct EventKeys<'py> {
    learned: [Option<Bound<'py, PyString>>; 12],
    tries: [u8; 12],
}

impl<'py> EventKeys<'py> {
    fn new() -> Self {
        Self { learned: Default::default(), tries: [0; 12] }
    }

    /// `dict.get(name)`, with the learned key object when there is one.
    fn get(&mut self, dict: &Bound<'py, PyDict>, key: Key) -> PyResult<Option<Bound<'py, PyAny>>> {
        let slot = key as usize;
        if self.learned[slot].is_none() && self.tries[slot] < KEY_LEARNING_TRIES {
            self.tries[slot] += 1;
            self.learned[slot] = learn_key(dict, EVENT_KEY_NAMES[slot]);
        }
        match &self.learned[slot] {
            Some(known) => dict.get_item(known),
            None => dict.get_item(interned(dict.py(), key)),
        }
    }
}

/// The interned string of a key (made once per process).
fn interned(py: Python<'_>, key: Key) -> &Bound<'_, PyString> {
    match key {
        Key::Data => intern!(py, "data"),
        Key::Type => intern!(py, "type"),
        Key::Source => intern!(py, "source"),
        Key::Id => intern!(py, "id"),
        Key::Text => intern!(py, "text"),
        Key::ParentId => intern!(py, "parentId"),
        Key::Node => intern!(py, "node"),
        Key::Value => intern!(py, "value"),
        Key::Attributes => intern!(py, "attributes"),
        Key::Adds => intern!(py, "adds"),
        Key::Removes => intern!(py, "removes"),
        Key::Texts => intern!(py, "texts"),
    }
}

/// The key object of `dict` whose text is `name`, if it is exactly a `str` (small dicts only).
fn learn_key<'py>(dict: &Bound<'py, PyDict>, name: &str) -> Option<Bound<'py, PyString>> {
    if dict.len() > SCAN_NODE_KEYS_UP_TO {
        return None;
    }
    dict.iter()
        .filter_map(|(key, _)| key.cast_into_exact::<PyString>().ok())
        .find(|key| key.to_str().is_ok_and(|text| text == name))
}

/// A tree frame: the node, its parent's bits, its depth, its parent's id.
struct Frame<'py> {
    node: Bound<'py, PyDict>,
    parent: u64,
    depth: u32,
    up: Option<Bound<'py, PyAny>>,
}

/// How `mask_tree` is called: for a full snapshot or for a mutation's add.
struct TreeMode<'a, 'py> {
    sticky: bool,
    previous: Option<&'a NodeIndex<'py>>,
    shape: Option<&'a SnapshotShape<'py>>,
}

/// What a batch's walk hands back: the kept events, the consent after it, the drops.
pub struct WalkOutcome<'py> {
    pub events: Bound<'py, PyList>,
    pub consent_state: Bound<'py, PyAny>,
    pub dropped: u64,
}

/// One batch's masking pass: the handles of its policy and state, and its counts.
pub struct BatchWalk<'py> {
    py: Python<'py>,
    deps: Deps<'py>,
    /// What the walk and the rules it called counted (folded into `deps.rules.py_counts` at the end).
    pub counts: Counts,
    dropped: u64,
    consent_mask: bool,
    /// Parents a sensitive field was just removed from (by the mutation being masked).
    vacated: HashSet<i64>,
    deadline: Option<Instant>,
    text_rule_bits: u64,
    nodes: NodeReader<'py>,
    keys: EventKeys<'py>,
}

impl<'py> BatchWalk<'py> {
    /// A walk with these handles; `budget_s` None: no deadline. `text_rule_bits`
    /// is [`TEXT_RULE_BITS`] (all bits: no fast path, for the tests that compare).
    pub fn new(deps: Deps<'py>, budget_s: Option<f64>, text_rule_bits: u64) -> PyResult<Self> {
        let py = deps.policy.selector_key.py();
        let deadline = budget_s.and_then(|b| {
            let now = Instant::now();
            if b < 0.0 {
                Some(now) // a deadline already past
            } else {
                Duration::try_from_secs_f64(b)
                    .ok()
                    .and_then(|d| now.checked_add(d))
            }
        });
        let walk = Self {
            py,
            deps,
            counts: Counts::new(),
            dropped: 0,
            consent_mask: false,
            vacated: HashSet::new(),
            deadline,
            text_rule_bits,
            nodes: NodeReader::new(),
            keys: EventKeys::new(),
        };
        let stored_key = walk.deps.state.selector_key()?;
        if !stored_key.eq(&walk.deps.policy.selector_key)? {
            // Bits above FLAG_BITS index the old selector list: drop them. Marks
            // already set stay (never unmask).
            if !walk.deps.index.is_empty()? {
                walk.deps.index.map_values(FLAG_BITS)?;
            }
            walk.deps
                .state
                .set_selector_key(&walk.deps.policy.selector_key)?;
        }
        Ok(walk)
    }

    // --- batch and consent -----------------------------------------------------------

    /// Masks the batch in order (the consent modes of the policy), as `mask_batch`.
    pub fn run(
        &mut self,
        events: &Bound<'py, PyList>,
        consent: Option<bool>,
    ) -> PyResult<WalkOutcome<'py>> {
        let py = self.py;
        let out = PyList::empty(py);
        let mode = self.deps.policy.consent_mode.clone();
        if mode == "none" {
            for event in events.iter() {
                self.check_budget()?;
                if self.mask_event(&event)? {
                    out.append(event)?;
                }
            }
            return self.result(out, PyString::new(py, CONSENT_NOT_REQUIRED).into_any());
        }
        let mut in_stream = false;
        for event in events.iter() {
            if consent_signal(&event)?.is_some() {
                in_stream = true;
                break;
            }
        }
        let consent_of = |granted: bool| {
            if granted {
                CONSENT_GRANTED
            } else {
                CONSENT_WITHDRAWN
            }
        };
        if let (Some(granted), false) = (consent, in_stream) {
            self.deps.state.set_consent(consent_of(granted))?;
        }
        let mut granted_now = self.deps.state.consent()? == CONSENT_GRANTED;
        for event in events.iter() {
            self.check_budget()?;
            if let Some(signal) = consent_signal(&event)? {
                self.deps.state.set_consent(consent_of(signal))?;
                granted_now = signal;
                self.consent_mask = false;
                let data = event.cast::<PyDict>()?.get_item(intern!(py, "data"))?;
                self.scrub_leaves(&data)?;
                out.append(event)?;
                continue;
            }
            let before_consent = !granted_now;
            if mode == "required" && before_consent {
                // Nothing is kept, but snapshots and mutations still feed the node
                // index so masking is right once consent arrives.
                if feeds_node_index(&event)? {
                    self.mask_event(&event)?;
                }
                self.dropped += 1;
                self.counts.inc("consent_drop");
                continue;
            }
            self.consent_mask = mode == "mask_until_consent" && before_consent;
            if self.mask_event(&event)? {
                out.append(event)?;
            }
        }
        if let (Some(granted), true) = (consent, in_stream) {
            self.deps.state.set_consent(consent_of(granted))?;
        }
        let consent_state = self.deps.state.consent()?;
        self.result(out, PyString::new(py, &consent_state).into_any())
    }

    fn result(
        &mut self,
        out: Bound<'py, PyList>,
        consent_state: Bound<'py, PyAny>,
    ) -> PyResult<WalkOutcome<'py>> {
        let evicted = self.deps.tree.trim()?;
        if !evicted.is_empty() {
            // their place in the tree is forgotten: a later mark might miss them
            self.deps.index.add_bits(&evicted, UNKNOWN_NODE)?;
            self.counts.add("state_trimmed", evicted.len() as u64);
        }
        let trimmed = self.deps.index.trim(self.max_node_runs())?;
        self.counts.add("state_trimmed", trimmed as u64);
        self.counts.add_to_py(&self.deps.rules.py_counts)?;
        self.counts = Counts::new();
        Ok(WalkOutcome {
            events: out,
            consent_state,
            dropped: self.dropped,
        })
    }

    fn max_node_runs(&self) -> usize {
        self.deps.max_node_runs
    }

    fn check_budget(&self) -> PyResult<()> {
        check_deadline(self.py, self.deadline)
    }

    fn drop_event(&mut self, reason: &'static str) -> PyResult<bool> {
        self.dropped += 1;
        self.counts.inc(reason);
        Ok(false)
    }

    fn bits_of(&self, id: Option<&Bound<'py, PyAny>>) -> PyResult<Option<u64>> {
        match int_id(id) {
            Some(id) => self.deps.index.get(id),
            None => Ok(None),
        }
    }

    // --- events ----------------------------------------------------------------------

    /// Masks one event in place; false if it must not be published.
    fn mask_event(&mut self, event: &Bound<'py, PyAny>) -> PyResult<bool> {
        let py = self.py;
        let Ok(event) = event.cast::<PyDict>() else {
            return self.drop_event("malformed_event");
        };
        let data = self.keys.get(event, Key::Data)?;
        let etype = Num::of(self.keys.get(event, Key::Type)?.as_ref());
        let dict = data.as_ref().and_then(|d| d.cast::<PyDict>().ok());
        if etype.is(EVENT_INCREMENTAL) && dict.is_some() {
            let data = dict.unwrap_or_else(|| unreachable!());
            let source_obj = self.keys.get(data, Key::Source)?;
            if in_int_set(source_obj.as_ref(), &PASS_THROUGH_SOURCES)? {
                return Ok(true);
            }
            let source = Num::of(source_obj.as_ref());
            if source.is(SOURCE_MUTATION) {
                self.mask_mutation(data)?;
                return Ok(true);
            }
            if source.is(SOURCE_INPUT) {
                return self.mask_input(data);
            }
            if source.is(SOURCE_LOG) {
                self.scrub_leaves(&Some(data.clone().into_any()))?;
                return Ok(true);
            }
            if source.is(SOURCE_CANVAS) {
                return self.mask_canvas(data);
            }
        } else if etype.is(EVENT_FULL_SNAPSHOT) && dict.is_some() {
            let data = dict.unwrap_or_else(|| unreachable!());
            if let Some(node) = data.get_item(intern!(py, "node"))? {
                if let Ok(node) = node.cast_into::<PyDict>() {
                    // rrweb keeps a node's id across the full snapshots of one page (a
                    // checkout) and starts again at 1 on a new page, so only the mark
                    // that can be lost without a trace is carried over: a sensitive
                    // input (a password shown as text by now) stays masked at the same
                    // id. On a new page this may over-mask an input at the same id,
                    // never leak.
                    let previous = self.deps.index.take()?;
                    let shape = self.deps.tree.start_snapshot()?;
                    let mode = TreeMode {
                        sticky: false,
                        previous: Some(&previous),
                        shape: Some(&shape),
                    };
                    self.mask_tree(node, 0, &mode, None)?;
                    self.deps.tree.end_snapshot()?;
                    return Ok(true);
                }
            }
        } else if etype.is(EVENT_META) && dict.is_some() {
            let data = dict.unwrap_or_else(|| unreachable!());
            if let Some(href) = data.get_item(intern!(py, "href"))? {
                if let Ok(href) = href.cast::<PyString>() {
                    if let Some(masked) =
                        self.deps.rules.scrub_url(href, &mut self.counts, false)?
                    {
                        data.set_item(intern!(py, "href"), masked)?;
                    }
                }
            }
            return Ok(true);
        } else if etype.is(EVENT_CUSTOM) && dict.is_some() {
            self.scrub_leaves(&data)?;
            return Ok(true);
        } else if etype.is(EVENT_PLUGIN) && dict.is_some() {
            let plugin = dict
                .unwrap_or_else(|| unreachable!())
                .get_item(intern!(py, "plugin"))?;
            let plugin = plugin.as_ref();
            if eq_str(plugin, CONSOLE_PLUGIN)? || eq_str(plugin, SEQUENTIAL_ID_PLUGIN)? {
                self.scrub_leaves(&data)?;
            } else {
                // network and other plugins carry bodies, headers, URLs: mask them
                self.counts.inc("unknown_event");
                self.mask_leaves(&data, false)?;
            }
            return Ok(true);
        } else if (etype.is(EVENT_DOM_CONTENT_LOADED) || etype.is(EVENT_LOAD))
            && match &data {
                None => true,
                Some(d) => d.is_none() || dict.is_some_and(|d| d.is_empty()),
            }
        {
            return Ok(true);
        }
        // An event shape this masker does not know: keep it, text masked.
        self.counts.inc("unknown_event");
        self.mask_leaves(&data, false)?;
        Ok(true)
    }

    /// `data[key]` if it is a non-empty list (a mutation's adds, removes, texts, attributes).
    fn nonempty_list(&mut self, data: &Bound<'py, PyDict>, key: Key) -> PyResult<Option<Bound<'py, PyList>>> {
        Ok(self
            .keys
            .get(data, key)?
            .and_then(|c| c.cast_into::<PyList>().ok())
            .filter(|c| !c.is_empty()))
    }

    fn mask_input(&mut self, data: &Bound<'py, PyDict>) -> PyResult<bool> {
        let py = self.py;
        let id = self.keys.get(data, Key::Id)?;
        let value = self.bits_of(id.as_ref())?;
        if let Some(v) = value {
            if v & F_BLOCK != 0 {
                return self.drop_event("block");
            }
            if v & F_IGNORE != 0 {
                return self.drop_event("ignore");
            }
        }
        if let Some(text) = self.keys.get(data, Key::Text)? {
            if let Ok(text) = text.cast::<PyString>() {
                if let Some(reason) = self.input_mask_reason(value) {
                    data.set_item(intern!(py, "text"), self.deps.rules.mask_text(text)?)?;
                    self.counts.inc(reason);
                } else if let Some(scrubbed) =
                    self.deps
                        .rules
                        .scrub(text, &mut self.counts, ScrubKind::Text)?
                {
                    data.set_item(intern!(py, "text"), scrubbed)?;
                }
            }
        }
        Ok(true)
    }

    fn mask_canvas(&mut self, data: &Bound<'py, PyDict>) -> PyResult<bool> {
        let py = self.py;
        let value = self.bits_of(data.get_item(intern!(py, "id"))?.as_ref())?;
        if value.is_some_and(|v| v & F_BLOCK != 0) {
            return self.drop_event("block");
        }
        if value.is_none_or(|v| v & F_MASK != 0) || self.consent_mask {
            // drawn pixels of a masked canvas are content: not kept
            return self.drop_event("mask");
        }
        // Text drawn in the clear is visible text: PII-scanned like any other.
        let mut stack: Vec<Bound<'py, PyAny>> = vec![data.clone().into_any()];
        let mut ticks = Ticks::default();
        while let Some(current) = stack.pop() {
            ticks.tick(self.py, self.deadline)?;
            if let Ok(current) = current.cast::<PyDict>() {
                let property = current.get_item(intern!(py, "property"))?;
                if eq_str(property.as_ref(), "fillText")?
                    || eq_str(property.as_ref(), "strokeText")?
                {
                    if let Some(args) = current.get_item(intern!(py, "args"))? {
                        if let Ok(args) = args.cast::<PyList>() {
                            if !args.is_empty() {
                                let first = args.get_item(0)?;
                                if let Ok(text) = first.cast::<PyString>() {
                                    if let Some(scrubbed) = self.deps.rules.scrub(
                                        text,
                                        &mut self.counts,
                                        ScrubKind::Text,
                                    )? {
                                        args.set_item(0, scrubbed)?;
                                    }
                                }
                            }
                        }
                    }
                }
                for (_, item) in current.iter() {
                    if is_container(&item) {
                        stack.push(item);
                    }
                }
            } else if let Ok(current) = current.cast::<PyList>() {
                for item in current.iter() {
                    if is_container(&item) {
                        stack.push(item);
                    }
                }
            }
        }
        Ok(true)
    }

    fn mask_mutation(&mut self, data: &Bound<'py, PyDict>) -> PyResult<()> {
        let py = self.py;
        let changes = self.nonempty_list(data, Key::Attributes)?;
        if let Some(changes) = &changes {
            // Marks first, so nodes added in this mutation under a newly marked
            // element inherit them.
            self.apply_change_marks(changes)?;
        }

        let removes = self.nonempty_list(data, Key::Removes)?;
        if let Some(removes) = removes {
            // Node ids are never reused by rrweb, so removed nodes stay in the
            // index (forgetting them would fragment the runs and grow the state).
            let mut kept: Vec<Bound<'py, PyAny>> = Vec::with_capacity(removes.len());
            for remove in removes.iter() {
                let Ok(entry) = remove.cast::<PyDict>() else {
                    kept.push(remove);
                    continue;
                };
                let parent_id = self.keys.get(entry, Key::ParentId)?;
                let parent = self.bits_of(parent_id.as_ref())?;
                let removed_id = int_id(self.keys.get(entry, Key::Id)?.as_ref());
                if let Some(removed) = removed_id {
                    self.deps.tree.remove(removed)?;
                }
                let removed_bits = match removed_id {
                    Some(removed) => self.deps.index.get(removed)?.unwrap_or(0),
                    None => 0,
                };
                if removed_bits & F_MASK_INPUT != 0 {
                    if let Some(parent_id) = int_id(parent_id.as_ref()) {
                        // a show-password toggle may put a new field in its place
                        self.vacated.insert(parent_id);
                    }
                }
                if parent.is_some_and(|p| p & F_BLOCK != 0) {
                    self.counts.inc("block");
                } else {
                    kept.push(remove);
                }
            }
            keep_only(data, intern!(py, "removes"), &removes, kept)?;
        }

        let adds = self.nonempty_list(data, Key::Adds)?;
        if let Some(adds) = adds {
            let mut kept: Vec<Bound<'py, PyAny>> = Vec::with_capacity(adds.len());
            let mode = TreeMode {
                sticky: true,
                previous: None,
                shape: None,
            };
            for add in adds.iter() {
                let Ok(entry) = add.cast::<PyDict>() else {
                    continue;
                };
                let Some(node) = self.keys.get(entry, Key::Node)? else {
                    continue;
                };
                let Ok(node) = node.cast_into::<PyDict>() else {
                    continue;
                };
                let parent_id = self.keys.get(entry, Key::ParentId)?;
                let parent = match self.bits_of(parent_id.as_ref())? {
                    Some(parent) => parent,
                    None => {
                        self.counts.inc("unknown_node");
                        UNKNOWN_NODE
                    }
                };
                // under a block this only remembers the ids: the add is dropped
                self.mask_tree(node, parent, &mode, parent_id)?;
                if parent & F_BLOCK != 0 {
                    self.counts.inc("block");
                    continue;
                }
                kept.push(add);
            }
            keep_only(data, intern!(py, "adds"), &adds, kept)?;
        }
        self.vacated.clear();

        if let Some(changes) = &changes {
            self.apply_change_marks(changes)?; // again: for nodes added just now
            let mut kept: Vec<Bound<'py, PyAny>> = Vec::with_capacity(changes.len());
            for change in changes.iter() {
                let Ok(entry) = change.cast::<PyDict>() else {
                    continue;
                };
                let id = self.keys.get(entry, Key::Id)?;
                let Some(value) = self.bits_unless_blocked(id.as_ref())? else {
                    continue;
                };
                if let Some(attrs) = self.keys.get(entry, Key::Attributes)? {
                    if let Ok(attrs) = attrs.cast::<PyDict>() {
                        self.mask_attributes(attrs, value)?;
                    }
                }
                kept.push(change);
            }
            keep_only(data, intern!(py, "attributes"), changes, kept)?;
        }

        let texts = self.nonempty_list(data, Key::Texts)?;
        if let Some(texts) = texts {
            let mut kept: Vec<Bound<'py, PyAny>> = Vec::with_capacity(texts.len());
            for text_change in texts.iter() {
                let Ok(entry) = text_change.cast::<PyDict>() else {
                    continue;
                };
                let id = self.keys.get(entry, Key::Id)?;
                let Some(value) = self.bits_unless_blocked(id.as_ref())? else {
                    continue;
                };
                let text = self.keys.get(entry, Key::Value)?;
                if let Some(text) = nonempty_str(text.as_ref()) {
                    if let Some(masked) = self.mask_text_content(text, value)? {
                        entry.set_item(intern!(py, "value"), masked)?;
                    }
                }
                kept.push(text_change);
            }
            keep_only(data, intern!(py, "texts"), &texts, kept)?;
        }
        Ok(())
    }

    /// The node's bits for a mutation entry; None (entry dropped) inside a blocked
    /// element. A node the state does not know is treated as masked, never passed through.
    fn bits_unless_blocked(&mut self, id: Option<&Bound<'py, PyAny>>) -> PyResult<Option<u64>> {
        match self.bits_of(id)? {
            None => {
                self.counts.inc("unknown_node");
                Ok(Some(UNKNOWN_NODE))
            }
            Some(value) if value & F_BLOCK != 0 => {
                self.counts.inc("block");
                Ok(None)
            }
            Some(value) => Ok(Some(value)),
        }
    }

    fn apply_change_marks(&mut self, changes: &Bound<'py, PyList>) -> PyResult<()> {
        let py = self.py;
        for change in changes.iter() {
            let Ok(change) = change.cast::<PyDict>() else {
                continue;
            };
            let Some(node_id) = int_id(self.keys.get(change, Key::Id)?.as_ref()) else {
                continue;
            };
            let Some(attrs) = self.keys.get(change, Key::Attributes)? else {
                continue;
            };
            let Some(value) = self.deps.index.get(node_id)? else {
                continue;
            };
            let Ok(attrs) = attrs.cast::<PyDict>() else {
                continue;
            };
            let mut marks = self.deps.rules.change_marks(attrs, value)?;
            if (attrs.contains(intern!(py, "name"))? || attrs.contains(intern!(py, "id"))?)
                && self.field_name_remembered(attrs)?
            {
                marks |= F_MASK_INPUT; // renamed to the name of a former password field
            }
            if marks & F_MASK_INPUT != 0 {
                self.remember_field(attrs)?;
            }
            let (below, context) = if self.deps.policy.has_selector_rules {
                self.deps.rules.change_ancestor_marks(attrs, value)?
            } else {
                (0, 0)
            };
            if (marks | context) & !value != 0 {
                self.deps.index.set(node_id, value | marks | context)?;
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
                let bits = if bits & F_BLOCK != 0 {
                    (bits & !F_BLOCK) | F_MASK
                } else {
                    bits
                };
                self.deps.index.add_bits_everywhere(bits)?;
                self.counts.inc("late_mark");
            }
            Some(under) if !under.is_empty() => {
                self.deps.index.add_bits(&under, bits)?;
                self.counts.inc("late_mark");
            }
            Some(_) => {}
        }
        Ok(())
    }

    // --- sensitive fields by name (show-password toggles) ------------------------------

    fn remember_field(&mut self, attrs: &Bound<'py, PyDict>) -> PyResult<()> {
        let py = self.py;
        for key in [intern!(py, "name"), intern!(py, "id")] {
            let name = attrs.get_item(key)?;
            if let Some(name) = nonempty_str(name.as_ref()) {
                let fingerprint = self.deps.state.field_fingerprint(name)?;
                self.deps.state.remember_field_name(fingerprint)?;
            }
        }
        Ok(())
    }

    fn field_name_remembered(&self, attrs: &Bound<'py, PyDict>) -> PyResult<bool> {
        if self.deps.state.no_field_names() {
            return Ok(false);
        }
        let py = self.py;
        for key in [intern!(py, "name"), intern!(py, "id")] {
            let name = attrs.get_item(key)?;
            if let Some(name) = nonempty_str(name.as_ref()) {
                let fingerprint = self.deps.state.field_fingerprint(name)?;
                if self.deps.state.has_field_name(fingerprint)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// `parent_id in self.vacated` as Python answers it (`1.0` is `1`; a list raises).
    fn vacated_holds(&self, up: Option<&Bound<'py, PyAny>>) -> PyResult<bool> {
        let Some(up) = up else { return Ok(false) };
        if let Some(id) = int_id(Some(up)) {
            return Ok(self.vacated.contains(&id));
        }
        if let Ok(f) = up.cast::<PyFloat>() {
            let f = f.value();
            let whole = f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64;
            return Ok(whole && self.vacated.contains(&(f as i64)));
        }
        if !(up.is_none() || up.is_instance_of::<PyString>() || up.is_instance_of::<PyInt>()) {
            up.hash()?;
        }
        Ok(false)
    }

    /// A form field's bits: sensitive if it takes a sensitive field's place.
    ///
    /// A show-password toggle may replace `<input type=password>` by a new
    /// `type=text` input rather than flip `type`: the new field is sensitive if it
    /// has the name or id of a sensitive field seen in the session, or is added
    /// where one was just removed. Its own name and id are remembered in turn (not
    /// those of fields that only inherit the bit from a container).
    fn field_value(
        &mut self,
        mut value: u64,
        attrs: &Bound<'py, PyDict>,
        parent: u64,
        up: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<u64> {
        if value & F_MASK_INPUT == 0
            && (self.vacated_holds(up)? || self.field_name_remembered(attrs)?)
        {
            value |= F_MASK_INPUT;
        }
        if value & F_MASK_INPUT != 0 && parent & F_MASK_INPUT == 0 {
            self.remember_field(attrs)?;
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
    fn mask_tree(
        &mut self,
        root: Bound<'py, PyDict>,
        parent_value: u64,
        mode: &TreeMode<'_, 'py>,
        parent_id: Option<Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        let py = self.py;
        let empty_tag = intern!(py, "");
        let mut stack = vec![Frame {
            node: root,
            parent: parent_value,
            depth: 0,
            up: parent_id,
        }];
        let mut ticks = Ticks::default();
        while let Some(Frame {
            node,
            parent,
            depth,
            up,
        }) = stack.pop()
        {
            ticks.tick(self.py, self.deadline)?;
            let fields = self.nodes.read(&node)?;
            let node_id = fields.id;
            let node_type = Num::of(fields.node_type.as_ref());
            let children = fields.child_nodes;
            if let Some(shape) = mode.shape {
                shape.visit(shape_id(node_id.as_ref()), depth)?;
            } else if let (Some(id), Some(up_id)) = (int_id(node_id.as_ref()), int_id(up.as_ref()))
            {
                self.deps.tree.add_parent(id, up_id)?;
            }
            let value;
            if parent & F_BLOCK != 0 {
                // inside a blocked element: the node is gone from the output, only
                // its id is remembered so later events on it are dropped
                value = parent & !NOT_INHERITED;
            } else if node_type.is(NODE_ELEMENT) {
                let tag_obj = fields.tag_name;
                let tag: Bound<'py, PyString> =
                    match tag_obj.as_ref().and_then(|t| t.cast::<PyString>().ok()) {
                        Some(t) => lowercase(t)?,
                        None => empty_tag.clone(),
                    };
                let tag_str = tag.to_str()?;
                let attrs = match fields.attributes {
                    Some(a) => a.cast_into::<PyDict>().unwrap_or_else(|_| PyDict::new(py)),
                    None => PyDict::new(py),
                };
                let mut v = self.deps.rules.element_value(&tag, &attrs, parent)?;
                let form_field = FORM_FIELD_TAGS.contains(&tag_str);
                if let Some(previous) = mode.previous {
                    if form_field || v & F_INPUT_TEXT != 0 {
                        let before = match int_id(node_id.as_ref()) {
                            Some(id) => previous.get(id)?.unwrap_or(0),
                            None => 0,
                        };
                        if before & F_MASK_INPUT != 0 {
                            v |= F_MASK_INPUT;
                        }
                    }
                }
                if mode.sticky {
                    if let Some(id) = int_id(node_id.as_ref()) {
                        if let Some(old) = self.deps.index.get(id)? {
                            v |= old & FLAG_BITS;
                        }
                    }
                }
                if form_field {
                    v = self.field_value(v, &attrs, parent, up.as_ref())?;
                }
                if v & F_BLOCK != 0 {
                    self.counts.inc("block");
                    let kept = PyDict::new(py);
                    for key in PLACEHOLDER_ATTRIBUTES {
                        if let Some(item) = attrs.get_item(key)? {
                            kept.set_item(key, item)?;
                        }
                    }
                    node.set_item(intern!(py, "attributes"), kept)?;
                    node.set_item(intern!(py, "childNodes"), PyList::empty(py))?;
                } else if !attrs.is_empty() {
                    self.mask_attributes(&attrs, v)?;
                }
                value = v;
            } else if node_type.is(NODE_TEXT)
                || node_type.is(NODE_CDATA)
                || node_type.is(NODE_COMMENT)
            {
                let mut v = parent & !NOT_INHERITED;
                if parent & F_STYLE_ELEMENT != 0
                    || is_true(fields.is_style.as_ref())
                {
                    v |= F_CSS_TEXT;
                } else if parent & F_SCRIPT_ELEMENT != 0 {
                    v |= F_SCRIPT_TEXT;
                }
                let text = fields.text_content;
                if let Some(text) = nonempty_str(text.as_ref()) {
                    if let Some(masked) = self.mask_text_content(text, v)? {
                        node.set_item(intern!(py, "textContent"), masked)?;
                    }
                }
                value = v;
            } else {
                value = parent & !NOT_INHERITED;
                if !node_type.is(NODE_DOCUMENT) && !node_type.is(1) {
                    // unknown node type: hide its strings, keep its structure
                    self.counts.inc("unknown_node_type");
                    for (key, item) in node.iter() {
                        if let Ok(item) = item.cast::<PyString>() {
                            let structural = match key.cast::<PyString>() {
                                Ok(k) => STRUCTURAL_KEYS.contains(&k.to_str()?),
                                Err(_) => false,
                            };
                            if !structural {
                                node.set_item(&key, self.deps.rules.mask_text(item)?)?;
                            }
                        }
                    }
                }
            }
            if let Some(id) = int_id(node_id.as_ref()) {
                self.deps.index.set(id, value)?;
            }
            if let Some(children) = children {
                if let Ok(children) = children.cast::<PyList>() {
                    // reversed: pop in document order, so ids arrive ascending and
                    // the index appends instead of inserting
                    for pos in (0..children.len()).rev() {
                        if let Ok(child) = children.get_item(pos)?.cast_into::<PyDict>() {
                            stack.push(Frame {
                                node: child,
                                parent: value,
                                depth: depth + 1,
                                up: node_id.clone(),
                            });
                        }
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
    fn mask_text_content(
        &mut self,
        text: &Bound<'py, PyString>,
        value: u64,
    ) -> PyResult<Option<Bound<'py, PyString>>> {
        if value & self.text_rule_bits == 0 && !self.consent_mask {
            // fast path: none of the rules below applies, only the scrubber does
            return self
                .deps
                .rules
                .scrub(text, &mut self.counts, ScrubKind::Text);
        }
        if value & F_CSS_TEXT != 0 {
            return Ok(None); // stylesheets stay intact: the replay needs them
        }
        if value & F_SCRIPT_TEXT != 0 {
            if text.to_str()? == SCRIPT_PLACEHOLDER {
                return Ok(None);
            }
            // never executed by the replayer; inline JSON state can hold anything
            self.counts.inc("script");
            return Ok(Some(self.deps.rules.mask_text(text)?));
        }
        let mut reason = self.text_masked_reason(value);
        if reason.is_none() && value & F_INPUT_TEXT != 0 {
            reason = self.input_mask_reason(Some(value));
        }
        if let Some(reason) = reason {
            self.counts.inc(reason);
            return Ok(Some(self.deps.rules.mask_text(text)?));
        }
        self.deps
            .rules
            .scrub(text, &mut self.counts, ScrubKind::Text)
    }

    fn mask_attributes(&mut self, attrs: &Bound<'py, PyDict>, value: u64) -> PyResult<()> {
        let mut text_reason: Option<Option<&'static str>> = None; // computed once, if needed
        for (key, item) in attrs.iter() {
            let Some(item) = nonempty_str(Some(&item)) else {
                continue;
            };
            let name = key_str(&key)?;
            let masked: Option<Bound<'py, PyString>> = if name == "value" {
                match self.input_mask_reason(Some(value)) {
                    Some(reason) => {
                        self.counts.inc(reason);
                        Some(self.deps.rules.mask_text(item)?)
                    }
                    None => self
                        .deps
                        .rules
                        .scrub(item, &mut self.counts, ScrubKind::Text)?,
                }
            } else if UNTOUCHED_ATTRIBUTES.contains(&name) || name.starts_with("rr_") {
                continue;
            } else if name == "srcdoc" {
                // HTML of an iframe whose document rrweb records (and masks) anyway
                self.counts.inc("srcdoc");
                Some(self.deps.rules.mask_text(item)?)
            } else if self.attribute_names_secret(&key, item)? {
                // data-api-key, data-csrf, x-auth-token: the name says what it holds
                self.counts.inc("secret_attribute");
                Some(self.deps.rules.mask_text(item)?)
            } else if name == "content" && value & F_MASK_INPUT != 0 {
                // <meta name="csrf-token" content=...>: the name makes it sensitive
                self.counts.inc("sensitive_field");
                Some(self.deps.rules.mask_text(item)?)
            } else if URL_ATTRIBUTES.contains(&name) {
                let asset = ASSET_URL_ATTRIBUTES.contains(&name);
                self.deps.rules.scrub_url(item, &mut self.counts, asset)?
            } else if TEXT_ATTRIBUTES.contains(&name)
                || name.starts_with("data-")
                || name.starts_with("aria-")
            {
                let mut reason = *text_reason.get_or_insert_with(|| self.text_masked_reason(value));
                if reason.is_none() && name == "placeholder" && value & F_MASK_INPUT != 0 {
                    reason = Some("sensitive_field");
                }
                match reason {
                    Some(reason) => {
                        self.counts.inc(reason);
                        Some(self.deps.rules.mask_text(item)?)
                    }
                    None => self
                        .deps
                        .rules
                        .scrub(item, &mut self.counts, ScrubKind::Text)?,
                }
            } else {
                // class and id are read by CSS: a random-looking class is a build hash
                let kind = if name != "class" && name != "id" {
                    ScrubKind::Text
                } else {
                    ScrubKind::NoRandomTokens
                };
                self.deps.rules.scrub(item, &mut self.counts, kind)?
            };
            if let Some(masked) = masked {
                attrs.set_item(&key, masked)?;
            }
        }
        Ok(())
    }

    fn attribute_names_secret(
        &self,
        key: &Bound<'py, PyAny>,
        item: &Bound<'py, PyString>,
    ) -> PyResult<bool> {
        let key = key.cast::<PyString>()?;
        let rules = &self.deps.rules;
        Ok(rules.key_is_secret(key)?
            || (rules.key_is_weak_secret(key)? && rules.looks_secret_value(item)?))
    }

    // --- free-form payloads ------------------------------------------------------------

    /// PII- and secret-scans every leaf (custom events, console logs).
    ///
    /// A value under a key that names a secret (any depth) is masked whatever it
    /// is, numbers included; a number that is a card number is masked too. So is
    /// the value of a name/value pair that names a secret (HAR headers
    /// `{"name": "X-Api-Key", "value": …}`, `["Authorization", …]`, as Relay's
    /// pair lists).
    fn scrub_leaves(&mut self, root: &Option<Bound<'py, PyAny>>) -> PyResult<()> {
        let py = self.py;
        let Some(root) = root else { return Ok(()) };
        let mut stack: Vec<Bound<'py, PyAny>> = vec![root.clone()];
        let mut ticks = Ticks::default();
        while let Some(current) = stack.pop() {
            ticks.tick(self.py, self.deadline)?;
            if let Ok(current) = current.cast::<PyDict>() {
                let name = current.get_item(intern!(py, "name"))?;
                if self.pair_names_secret(name.as_ref())? {
                    let value = current.get_item(intern!(py, "value"))?;
                    if let Some(value) = value.filter(|v| is_value(Some(v))) {
                        self.counts.inc("secret_key");
                        current.set_item(intern!(py, "value"), self.masked_leaf(&value)?)?;
                    }
                }
                for (key, item) in current.iter() {
                    let key_s = key.cast::<PyString>().ok();
                    if is_container(&item) {
                        match key_s {
                            Some(k) if self.deps.rules.key_is_secret(k)? => {
                                self.counts.inc("secret_key");
                                self.mask_leaves(&Some(item), true)?;
                            }
                            _ => stack.push(item),
                        }
                    } else if let Some(k) = key_s.filter(|_| is_value(Some(&item))) {
                        if self.secret_under(k, &item)? {
                            self.counts.inc("secret_key");
                            current.set_item(&key, self.masked_leaf(&item)?)?;
                        } else if let Some(scrubbed) = self.scrub_leaf(&item)? {
                            current.set_item(&key, scrubbed)?;
                        }
                    } else if let Some(scrubbed) = self.scrub_leaf(&item)? {
                        current.set_item(&key, scrubbed)?;
                    }
                }
            } else if let Ok(current) = current.cast::<PyList>() {
                if current.len() == 2 {
                    let first = current.get_item(0)?;
                    if self.pair_names_secret(Some(&first))? {
                        let second = current.get_item(1)?;
                        if is_value(Some(&second)) {
                            self.counts.inc("secret_key");
                            current.set_item(1, self.masked_leaf(&second)?)?;
                        }
                    }
                }
                for pos in 0..current.len() {
                    let item = current.get_item(pos)?;
                    if is_container(&item) {
                        stack.push(item);
                    } else if let Some(scrubbed) = self.scrub_leaf(&item)? {
                        current.set_item(pos, scrubbed)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A payload leaf scrubbed; None: unchanged.
    fn scrub_leaf(&mut self, item: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if let Ok(text) = item.cast::<PyString>() {
            let scrubbed = self
                .deps
                .rules
                .scrub(text, &mut self.counts, ScrubKind::Payload)?;
            return Ok(scrubbed.map(Bound::into_any));
        }
        if item.is_instance_of::<PyInt>()
            && !item.is_instance_of::<PyBool>()
            && self.deps.rules.card_number(item)?
        {
            self.counts.inc("pii_card");
            return Ok(Some(self.masked_leaf(item)?.into_any()));
        }
        Ok(None)
    }

    /// Masks every string leaf except structural keys (unknown event shapes);
    /// `numbers`: numbers too (everything under a secret-named key).
    fn mask_leaves(&mut self, root: &Option<Bound<'py, PyAny>>, numbers: bool) -> PyResult<()> {
        let Some(root) = root else { return Ok(()) };
        let mut stack: Vec<Bound<'py, PyAny>> = vec![root.clone()];
        let mut ticks = Ticks::default();
        while let Some(current) = stack.pop() {
            ticks.tick(self.py, self.deadline)?;
            if let Ok(current) = current.cast::<PyDict>() {
                for (key, item) in current.iter() {
                    if let Ok(text) = item.cast::<PyString>() {
                        let structural = match key.cast::<PyString>() {
                            Ok(k) => STRUCTURAL_KEYS.contains(&k.to_str()?),
                            Err(_) => false,
                        };
                        if !structural {
                            current.set_item(&key, self.deps.rules.mask_text(text)?)?;
                        }
                    } else if is_container(&item) {
                        stack.push(item);
                    } else if numbers && is_value(Some(&item)) {
                        current.set_item(&key, self.masked_leaf(&item)?)?;
                    }
                }
            } else if let Ok(current) = current.cast::<PyList>() {
                for pos in 0..current.len() {
                    let item = current.get_item(pos)?;
                    if let Ok(text) = item.cast::<PyString>() {
                        current.set_item(pos, self.deps.rules.mask_text(text)?)?;
                    } else if is_container(&item) {
                        stack.push(item);
                    } else if numbers && is_value(Some(&item)) {
                        current.set_item(pos, self.masked_leaf(&item)?)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The name of a name/value pair (a header, a cookie, a log's first argument),
    /// possibly JSON-quoted as the console plugin writes strings, names a secret.
    fn pair_names_secret(&self, name: Option<&Bound<'py, PyAny>>) -> PyResult<bool> {
        let Some(name) = name.and_then(|n| n.cast::<PyString>().ok()) else {
            return Ok(false);
        };
        let chars = name.len()?; // code points, as Python's len
        Ok(chars > 0 && chars <= 128 && self.deps.rules.key_is_secret(name)?)
    }

    /// A leaf under a secret-named key, or a generated-looking one under a weak word.
    fn secret_under(&self, key: &Bound<'py, PyString>, item: &Bound<'py, PyAny>) -> PyResult<bool> {
        let rules = &self.deps.rules;
        if rules.key_is_secret(key)? {
            return Ok(true);
        }
        Ok(rules.key_is_weak_secret(key)? && rules.looks_secret_value(&item.str()?)?)
    }

    /// A masked string as long as the leaf's text (a number becomes `*` digits).
    fn masked_leaf(&self, item: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
        match item.cast::<PyString>() {
            Ok(text) => self.deps.rules.mask_text(text),
            Err(_) => self.deps.rules.mask_text(&item.str()?),
        }
    }
}

/// `data[key] = kept` when an entry of `list` was dropped (the list is left alone otherwise).
fn keep_only<'py>(
    data: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
    list: &Bound<'py, PyList>,
    kept: Vec<Bound<'py, PyAny>>,
) -> PyResult<()> {
    if kept.len() != list.len() {
        data.set_item(key, PyList::new(data.py(), kept)?)?;
    }
    Ok(())
}

/// `tag.lower()`: the same object when it is lowercase ASCII already.
fn lowercase<'py>(tag: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyString>> {
    let text = tag.to_str()?;
    if !text.is_ascii() {
        // Unicode case rules exactly as Python applies them
        return Ok(tag
            .call_method0(intern!(tag.py(), "lower"))?
            .cast_into::<PyString>()?);
    }
    if !text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Ok(tag.clone());
    }
    Ok(PyString::new(tag.py(), &text.to_ascii_lowercase()))
}

fn feeds_node_index(event: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = event.py();
    let Ok(event) = event.cast::<PyDict>() else {
        // Python's `event.get` on a non-dict
        return Err(PyAttributeError::new_err("an event is not an object"));
    };
    let etype = event.get_item(intern!(py, "type"))?;
    if eq_int(etype.as_ref(), EVENT_FULL_SNAPSHOT) {
        return Ok(true);
    }
    if !eq_int(etype.as_ref(), EVENT_INCREMENTAL) {
        return Ok(false);
    }
    match event.get_item(intern!(py, "data"))? {
        Some(data) => match data.cast::<PyDict>() {
            Ok(data) => Ok(eq_int(
                data.get_item(intern!(py, "source"))?.as_ref(),
                SOURCE_MUTATION,
            )),
            Err(_) => Ok(false),
        },
        None => Ok(false),
    }
}

/// `granted` of a `replaypipe.consent` custom event, None for other events.
/// Anything but `granted: true` counts as a refusal: when unsure, mask.
fn consent_signal(event: &Bound<'_, PyAny>) -> PyResult<Option<bool>> {
    let py = event.py();
    let Ok(event) = event.cast::<PyDict>() else {
        return Ok(None);
    };
    if !eq_int(event.get_item(intern!(py, "type"))?.as_ref(), EVENT_CUSTOM) {
        return Ok(None);
    }
    let Some(data) = event.get_item(intern!(py, "data"))? else {
        return Ok(None);
    };
    let Ok(data) = data.cast::<PyDict>() else {
        return Ok(None);
    };
    if !eq_str(
        data.get_item(intern!(py, "tag"))?.as_ref(),
        CONSENT_EVENT_TAG,
    )? {
        return Ok(None);
    }
    let granted = match data.get_item(intern!(py, "payload"))? {
        Some(payload) => match payload.cast::<PyDict>() {
            Ok(payload) => is_true(payload.get_item(intern!(py, "granted"))?.as_ref()),
            Err(_) => false,
        },
        None => false,
    };
    Ok(Some(granted))
}

/// Masks one batch (the Python face of [`BatchWalk`]): `(kept events, consent
/// state, dropped)`; the counts are added into `counts` (a `Counter`).
#[pyfunction]
#[pyo3(signature = (events, state, policy, consent, counts, *, budget_s, text_rule_bits, max_node_runs))]
#[allow(clippy::too_many_arguments)]
fn walk_batch<'py>(
    events: &Bound<'py, PyList>,
    state: &Bound<'py, PyAny>,
    policy: &Bound<'py, PyAny>,
    consent: Option<&Bound<'py, PyAny>>,
    counts: &Bound<'py, PyAny>,
    budget_s: Option<f64>,
    text_rule_bits: i64,
    max_node_runs: usize,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyAny>, u64)> {
    let consent = match consent {
        Some(c) if !c.is_none() => Some(c.is_truthy()?),
        _ => None,
    };
    let deps = Deps::new(policy, state, counts, max_node_runs)?;
    let mut walk = BatchWalk::new(deps, budget_s, text_rule_bits as u64)?;
    let outcome = walk.run(events, consent)?;
    Ok((outcome.events, outcome.consent_state, outcome.dropped))
}

/// Registers the walk's names in the core module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(walk_batch, m)?)?;
    m.add("WalkOverBudget", py.get_type::<WalkOverBudget>())?;
    m.add("INHERITED_MARKS", INHERITED_MARKS)?;
    m.add("TEXT_RULE_BITS", TEXT_RULE_BITS)?;
    m.add("BUDGET_CHECK_EVERY", BUDGET_CHECK_EVERY)?;
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
