//! Everything the batch walk (`walk.rs`) calls outside itself, one small
//! function per call: the node index and tree (`node_index.rs`,
//! `node_tree.rs`), the element rules (`policy.rs`) and the string rules
//! (`detectors.rs`, `sensitivity.rs`), all native.
//!
//! The walk runs with the GIL released, so what it holds must be `Send`:
//! [`Deps::take`] (GIL held) moves the native index and tree out of the
//! session state's pyclasses, copies the state's consent and remembered field
//! names, and keeps the frozen rule objects (read without the GIL);
//! [`Deps::put_back`] (GIL held again, also after an error) returns them and
//! applies what the walk changed. The tree needs the GIL only for what CPython
//! does for it (reading a stored tree, decoding a stored snapshot shape with
//! `zlib`): those few calls attach for their duration ([`Python::attach`]).
//!
//! Strings go in as `&str` and a changed string comes back as `Some`
//! (`None`: unchanged, nothing to set).
use std::collections::{HashMap, HashSet, VecDeque};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::counts::Counts;
use crate::detectors::{self, ScrubOptions};
use crate::json_doc::Pairs;
use crate::node_index::SessionNodeIndex;
use crate::node_tree::{SessionNodeTree, SnapshotShape};
use crate::{fingerprint, policy, sensitivity};

/// How a string is scrubbed (the keyword arguments of `Scrubber.scrub`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrubKind {
    /// Page text and most attributes: default options.
    Text,
    /// `class` and `id`: no random-token rule (CSS reads them).
    NoRandomTokens,
    /// A string leaf of a custom event or log (`payload=True`).
    Payload,
}

/// The session's node tree, moved out of its pyclass for the walk.
pub struct NodeTree {
    tree: SessionNodeTree,
    /// The shape of the full snapshot being walked (`start_snapshot` .. `end_snapshot`).
    recording: Option<SnapshotShape>,
}

impl NodeTree {
    /// Reads a stored tree on first use (CPython objects: attaches once).
    fn loaded(&mut self) -> PyResult<&mut SessionNodeTree> {
        if self.tree.is_stored() {
            Python::attach(|py| self.tree.load_stored(py))?;
        }
        Ok(&mut self.tree)
    }

    /// Starts recording a full snapshot's shape (the tree forgets the page before).
    pub fn start_snapshot(&mut self) {
        self.tree.forget_for_snapshot();
        self.recording = Some(SnapshotShape::new());
    }

    /// The next node of the snapshot's depth-first walk; `id` None: not a node
    /// id (an id that is no non-negative int holds its place, matching nothing).
    #[inline]
    pub fn visit(&mut self, id: Option<i64>, depth: u32) {
        if let Some(shape) = &mut self.recording {
            shape.visit(id, depth);
        }
    }

    /// Ends the snapshot: its shape is kept (a pyclass: attaches), unless too big.
    pub fn end_snapshot(&mut self) -> PyResult<()> {
        let Some(shape) = self.recording.take() else {
            return Ok(());
        };
        if shape.recorded_len() > self.tree.max_shape_nodes() {
            return Ok(()); // the tree stays unknown
        }
        Python::attach(|py| self.tree.set_shape(py, shape))
    }

    /// Where a node added by a mutation hangs.
    pub fn add_parent(&mut self, id: i64, parent_id: i64) -> PyResult<()> {
        self.loaded()?.insert_parent(id, parent_id);
        Ok(())
    }

    /// A node left the page.
    pub fn remove(&mut self, id: i64) -> PyResult<()> {
        self.loaded()?.remove_parent(id);
        Ok(())
    }

    /// Every node known to be under `id` (sorted); None if the tree is unknown.
    /// Reads the stored snapshot shape (attaches: a late mark is rare).
    pub fn descendants(&mut self, id: i64) -> PyResult<Option<Vec<i64>>> {
        Python::attach(|py| self.tree.descendants(py, id))
    }

    /// Bounds the pointer map; the nodes evicted while attached.
    pub fn trim(&mut self) -> PyResult<Vec<i64>> {
        if !self.tree.may_need_trim() {
            return Ok(Vec::new());
        }
        Python::attach(|py| self.tree.trim(py))
    }
}

/// What the walk reads and changes of `SessionMaskState` besides the index and tree.
pub struct SessionState {
    pub consent: String,
    /// `state.field_names` (an ordered set), mirrored: the walk asks it and
    /// `remember_field_name` is replayed on the Python state afterwards.
    field_names: VecDeque<u64>,
    field_set: HashSet<u64>,
    max_field_names: usize,
    remembered: Vec<u64>,
}

impl SessionState {
    /// A field name's fingerprint.
    pub fn field_fingerprint(&self, name: &str) -> u64 {
        u64::from(fingerprint::field_fingerprint(name))
    }

    /// No sensitive field name remembered yet (`not state.field_names`).
    pub fn no_field_names(&self) -> bool {
        self.field_names.is_empty()
    }

    /// `fingerprint in state.field_names`.
    pub fn has_field_name(&self, fingerprint: u64) -> bool {
        self.field_set.contains(&fingerprint)
    }

    /// `state.remember_field_name(fingerprint)` (the oldest forgotten past the cap).
    pub fn remember_field_name(&mut self, fingerprint: u64) {
        self.remembered.push(fingerprint);
        if !self.field_set.insert(fingerprint) {
            return;
        }
        self.field_names.push_back(fingerprint);
        if self.field_names.len() > self.max_field_names {
            if let Some(oldest) = self.field_names.pop_front() {
                self.field_set.remove(&oldest);
            }
        }
    }
}

/// What the word rules say of one key: it names a secret, it has a weak secret word.
#[derive(Debug, Clone, Copy)]
struct KeyWords {
    secret: bool,
    weak: bool,
}

/// Keys remembered per batch at most (a page repeats a few dozen names).
const KEY_WORD_MEMO: usize = 4096;

/// The site's element rules (rpol) and string rules (rdet).
pub struct Rules {
    element_rules: Py<policy::ElementRules>,
    scrubber: Py<detectors::Scrubber>,
    /// The word rules are a pure function of the key's text, and a page repeats
    /// a few dozen attribute names (`class`, `href`, `src`...) thousands of times.
    key_words: HashMap<String, KeyWords, ahash::RandomState>,
}

impl Rules {
    #[inline]
    fn elements(&self) -> &policy::ElementRules {
        self.element_rules.get()
    }

    /// An element's bits and its children's selector context.
    #[inline]
    pub fn element_value(&self, tag: &str, attrs: &Pairs<'_>, parent: u64) -> u64 {
        self.elements().element_value(tag, attrs, parent)
    }

    /// Marks an attribute mutation adds to an element.
    pub fn change_marks(&self, changed: &Pairs<'_>, value: u64) -> u64 {
        self.elements().change_marks(changed, value)
    }

    /// What an attribute mutation means for the element's descendants.
    pub fn change_ancestor_marks(&self, changed: &Pairs<'_>, value: u64) -> (u64, u64) {
        self.elements().change_ancestor_marks(changed, value)
    }

    /// Whether the site has any selector rule.
    pub fn has_selector_rules(&self) -> bool {
        self.elements().has_selector_rules()
    }

    /// The site's scrubber on a text; a panic in a rule is a `RuntimeError`
    /// (the batch goes to the DLQ as `mask_error`).
    #[inline]
    pub fn scrub(&self, value: &str, counts: &mut Counts, kind: ScrubKind) -> PyResult<Option<String>> {
        let opts = match kind {
            ScrubKind::Text => ScrubOptions::TEXT,
            ScrubKind::NoRandomTokens => ScrubOptions { random_tokens: false, ..ScrubOptions::TEXT },
            ScrubKind::Payload => ScrubOptions { payload: true, ..ScrubOptions::TEXT },
        };
        let scrubber = self.scrubber.get();
        detectors::guarded("scrub", || scrubber.scrub(value, counts, opts))
    }

    /// The site's scrubber on a URL (`asset`: its path segments are kept).
    pub fn scrub_url(&self, value: &str, counts: &mut Counts, asset: bool) -> PyResult<Option<String>> {
        let scrubber = self.scrubber.get();
        detectors::guarded("scrub_url", || scrubber.scrub_url(value, counts, asset))
    }

    /// Every non-space character as `*` (length kept).
    #[inline]
    pub fn mask_text(&self, value: &str) -> String {
        detectors::mask_text(value)
    }

    /// A value under a weak secret word that reads like a credential.
    pub fn looks_secret_value(&self, value: &str) -> bool {
        detectors::looks_secret_value(value)
    }

    /// A JSON integer (its decimal digits) with a card number's length and checksum.
    pub fn card_number(&self, digits: &str) -> bool {
        detectors::card_number(digits)
    }

    fn words(&mut self, key: &str) -> KeyWords {
        if let Some(words) = self.key_words.get(key) {
            return *words;
        }
        let words = KeyWords {
            secret: sensitivity::key_is_secret(key),
            weak: sensitivity::key_is_weak_secret(key),
        };
        if self.key_words.len() < KEY_WORD_MEMO {
            self.key_words.insert(key.to_owned(), words);
        }
        words
    }

    /// A key that names a secret word.
    pub fn key_is_secret(&mut self, key: &str) -> bool {
        self.words(key).secret
    }

    /// A key with a weak secret word (`key`, `api`...).
    pub fn key_is_weak_secret(&mut self, key: &str) -> bool {
        self.words(key).weak
    }
}

/// What one batch's walk needs from the policy that is plain data.
pub struct PolicyFacts {
    pub consent_mode: String,
    pub record_inputs: bool,
    pub has_selector_rules: bool,
}

/// Every handle of one batch, taken out of the Python objects for the walk.
pub struct Deps {
    pub index: SessionNodeIndex,
    pub tree: NodeTree,
    pub state: SessionState,
    pub rules: Rules,
    pub policy: PolicyFacts,
    /// Upper bound on stored runs per session (`state.MAX_NODE_RUNS`).
    pub max_node_runs: usize,
}

impl Deps {
    /// From the batch's `MaskPolicy` and `SessionMaskState` (GIL held). The
    /// state's node bits computed with other selectors lose their selector
    /// context here (marks already set stay: never unmask).
    pub fn take(
        policy: &Bound<'_, PyAny>,
        state: &Bound<'_, PyAny>,
        max_node_runs: usize,
        max_field_names: usize,
    ) -> PyResult<Self> {
        let py = policy.py();
        let element_rules = policy::ElementRules::of_policy(policy)?.unbind();
        let scrubber = policy
            .getattr(intern!(py, "scrubber"))?
            .cast_into::<detectors::Scrubber>()?
            .unbind();
        let facts = PolicyFacts {
            consent_mode: policy.getattr(intern!(py, "consent_mode"))?.extract()?,
            record_inputs: policy.getattr(intern!(py, "record_inputs"))?.is_truthy()?,
            has_selector_rules: element_rules.get().has_selector_rules(),
        };
        let (nodes, tree) = native_handles(state)?;
        let field_names: VecDeque<u64> = state
            .getattr(intern!(py, "field_names"))?
            .cast_into::<PyDict>()?
            .keys()
            .iter()
            .map(|k| k.extract::<u64>())
            .collect::<PyResult<_>>()?;
        let selector_key = policy.getattr(intern!(py, "selector_key"))?;
        let mut index = nodes.try_borrow_mut()?.take();
        if !state.getattr(intern!(py, "selector_key"))?.eq(&selector_key)? {
            // Bits above FLAG_BITS index the old selector list: drop them.
            if !index.is_empty() {
                index.map_values(crate::flags::FLAG_BITS);
            }
            state.setattr(intern!(py, "selector_key"), selector_key)?;
        }
        let tree = tree.try_borrow_mut()?.take_out();
        Ok(Self {
            index,
            tree: NodeTree { tree, recording: None },
            state: SessionState {
                consent: state.getattr(intern!(py, "consent"))?.extract()?,
                field_set: field_names.iter().copied().collect(),
                field_names,
                max_field_names,
                remembered: Vec::new(),
            },
            rules: Rules { element_rules, scrubber, key_words: HashMap::default() },
            policy: facts,
            max_node_runs,
        })
    }

    /// Returns the index and tree to `state` and applies the consent and the
    /// remembered field names (GIL held; after an error too: what the walk
    /// changed before it stopped stays changed, as when it ran in Python).
    pub fn put_back(self, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = state.py();
        let (nodes, tree) = native_handles(state)?;
        *nodes.try_borrow_mut()? = self.index;
        let mut native = self.tree;
        if let Some(shape) = native.recording.take() {
            // stopped inside a snapshot: the shape recorded so far is kept, as before
            native.tree.set_shape(py, shape)?;
        }
        *tree.try_borrow_mut()? = native.tree;
        state.setattr(intern!(py, "consent"), self.state.consent)?;
        for fingerprint in self.state.remembered {
            state.call_method1(intern!(py, "remember_field_name"), (fingerprint,))?;
        }
        Ok(())
    }
}

/// The state's native node index and tree (what the walk takes out and puts back).
fn native_handles<'py>(
    state: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, SessionNodeIndex>, Bound<'py, SessionNodeTree>)> {
    let py = state.py();
    let nodes = state
        .getattr(intern!(py, "nodes"))?
        .cast_into::<SessionNodeIndex>()?;
    let tree = state
        .getattr(intern!(py, "tree"))?
        .cast_into::<SessionNodeTree>()?;
    Ok((nodes, tree))
}
