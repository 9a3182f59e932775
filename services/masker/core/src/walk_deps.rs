//! Everything the batch walk (`walk.rs`) calls outside itself, one small
//! function per call: the node index and tree (`node_index.rs`,
//! `node_tree.rs`), the element rules (`policy.rs`) and the string rules
//! (`detectors.rs`, `sensitivity.rs`), all called natively: the handles (the
//! index, tree, element rules and scrubber of the batch's state and policy)
//! are fetched once per batch in [`Deps::new`], and each call borrows them
//! without going through Python.
//!
//! Strings go in as the Python string the walk holds (borrowed as `&str`) and
//! a changed string comes back as `Some` (`None`: unchanged, nothing to set).
use std::borrow::Cow;
use std::cell::RefCell;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::counts::Counts;
use crate::detectors::{self, ScrubOptions};
use crate::{fingerprint, node_index, node_tree, policy, sensitivity};

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

/// A session node index (ridx's `SessionNodeIndex`, borrowed per call).
pub struct NodeIndex<'py> {
    obj: Bound<'py, node_index::SessionNodeIndex>,
}

impl<'py> NodeIndex<'py> {
    fn wrap(obj: Bound<'py, PyAny>) -> PyResult<Self> {
        Ok(Self {
            obj: obj.cast_into::<node_index::SessionNodeIndex>()?,
        })
    }

    /// A node's bits, None if unknown.
    #[inline]
    pub fn get(&self, id: i64) -> PyResult<Option<u64>> {
        Ok(self.obj.try_borrow()?.get(id))
    }

    /// Records a node's bits.
    #[inline]
    pub fn set(&self, id: i64, value: u64) -> PyResult<()> {
        self.obj.try_borrow_mut()?.set(id, value);
        Ok(())
    }

    /// No run stored.
    pub fn is_empty(&self) -> PyResult<bool> {
        Ok(self.obj.try_borrow()?.is_empty())
    }

    /// Moves every run into a new index (the one before a full snapshot).
    pub fn take(&self) -> PyResult<NodeIndex<'py>> {
        let taken = self.obj.try_borrow_mut()?.take();
        Ok(NodeIndex {
            obj: Bound::new(self.obj.py(), taken)?,
        })
    }

    /// ANDs every value with `keep_bits`.
    pub fn map_values(&self, keep_bits: u64) -> PyResult<()> {
        self.obj.try_borrow_mut()?.map_values(keep_bits);
        Ok(())
    }

    /// ORs `bits` into every known node of `ids`.
    pub fn add_bits(&self, ids: &[i64], bits: u64) -> PyResult<()> {
        self.obj.try_borrow_mut()?.add_bits(ids, bits);
        Ok(())
    }

    /// ORs `bits` into every known node.
    pub fn add_bits_everywhere(&self, bits: u64) -> PyResult<()> {
        self.obj.try_borrow_mut()?.add_bits_everywhere(bits);
        Ok(())
    }

    /// Keeps the newest `max_runs` runs; how many were dropped.
    pub fn trim(&self, max_runs: usize) -> PyResult<usize> {
        Ok(self.obj.try_borrow_mut()?.trim(max_runs))
    }
}

/// The shape of the full snapshot being walked (ridx's `SnapshotShape`).
pub struct SnapshotShape<'py> {
    obj: Bound<'py, node_tree::SnapshotShape>,
}

impl SnapshotShape<'_> {
    /// The next node of the depth-first walk; `id` None: not a node id (an id
    /// that is no non-negative int holds its place, matching nothing).
    #[inline]
    pub fn visit(&self, id: Option<i64>, depth: u32) -> PyResult<()> {
        self.obj.try_borrow_mut()?.visit(id, depth);
        Ok(())
    }
}

/// The session's node tree (ridx's `SessionNodeTree`).
pub struct NodeTree<'py> {
    obj: Bound<'py, node_tree::SessionNodeTree>,
}

impl<'py> NodeTree<'py> {
    fn wrap(obj: Bound<'py, PyAny>) -> PyResult<Self> {
        Ok(Self {
            obj: obj.cast_into::<node_tree::SessionNodeTree>()?,
        })
    }

    /// Starts recording a full snapshot's shape.
    pub fn start_snapshot(&self) -> PyResult<SnapshotShape<'py>> {
        let py = self.obj.py();
        let shape = self.obj.try_borrow_mut()?.start_snapshot(py)?;
        Ok(SnapshotShape {
            obj: shape.into_bound(py),
        })
    }

    /// Ends the snapshot (drops a shape too big to keep).
    pub fn end_snapshot(&self) -> PyResult<()> {
        self.obj.try_borrow_mut()?.end_snapshot(self.obj.py())
    }

    /// Where a node added by a mutation hangs.
    pub fn add_parent(&self, id: i64, parent_id: i64) -> PyResult<()> {
        self.obj
            .try_borrow_mut()?
            .add_parent(self.obj.py(), Some(id), Some(parent_id))
    }

    /// A node left the page.
    pub fn remove(&self, id: i64) -> PyResult<()> {
        self.obj.try_borrow_mut()?.remove(self.obj.py(), id)
    }

    /// Every node known to be under `id` (sorted); None if the tree is unknown.
    pub fn descendants(&self, id: i64) -> PyResult<Option<Vec<i64>>> {
        self.obj.try_borrow_mut()?.descendants(self.obj.py(), id)
    }

    /// Bounds the pointer map; the nodes evicted while attached.
    pub fn trim(&self) -> PyResult<Vec<i64>> {
        self.obj.try_borrow_mut()?.trim(self.obj.py())
    }
}

/// The per-session state around the index and tree (`SessionMaskState`, stays Python).
pub struct SessionState<'py> {
    obj: Bound<'py, PyAny>,
    field_names: Bound<'py, PyDict>,
}

impl<'py> SessionState<'py> {
    /// `state.consent`.
    pub fn consent(&self) -> PyResult<String> {
        self.obj
            .getattr(intern!(self.obj.py(), "consent"))?
            .extract()
    }

    /// `state.consent = consent`.
    pub fn set_consent(&self, consent: &'static str) -> PyResult<()> {
        self.obj.setattr(intern!(self.obj.py(), "consent"), consent)
    }

    /// `state.selector_key`.
    pub fn selector_key(&self) -> PyResult<Bound<'py, PyAny>> {
        self.obj.getattr(intern!(self.obj.py(), "selector_key"))
    }

    /// `state.selector_key = key`.
    pub fn set_selector_key(&self, key: &Bound<'py, PyAny>) -> PyResult<()> {
        self.obj
            .setattr(intern!(self.obj.py(), "selector_key"), key)
    }

    /// A field name's fingerprint (a name with lone surrogates raises, as
    /// `str.encode()` did in Python).
    pub fn field_fingerprint(&self, name: &Bound<'py, PyString>) -> PyResult<u64> {
        Ok(u64::from(fingerprint::field_fingerprint(name.to_str()?)))
    }

    /// No sensitive field name remembered yet (`not state.field_names`).
    pub fn no_field_names(&self) -> bool {
        self.field_names.is_empty()
    }

    /// `fingerprint in state.field_names`.
    pub fn has_field_name(&self, fingerprint: u64) -> PyResult<bool> {
        self.field_names.contains(fingerprint)
    }

    /// `state.remember_field_name(fingerprint)`.
    pub fn remember_field_name(&self, fingerprint: u64) -> PyResult<()> {
        self.obj.call_method1(
            intern!(self.obj.py(), "remember_field_name"),
            (fingerprint,),
        )?;
        Ok(())
    }
}

/// The site's element rules (rpol) and string rules (rdet), plus the Counter of
/// the batch's result that the walk's counts are folded into at the end.
pub struct Rules<'py> {
    /// The batch's `MaskResult.counts`.
    pub py_counts: Bound<'py, PyAny>,
    element_rules: Bound<'py, policy::ElementRules>,
    scrubber: Bound<'py, detectors::Scrubber>,
    key_words: RefCell<KeyWordMemo<'py>>,
}

/// What the word rules say of one key: it names a secret, it has a weak secret word.
#[derive(Debug, Clone, Copy)]
struct KeyWords {
    secret: bool,
    weak: bool,
}

/// Slots of [`KeyWordMemo`] (a power of two), and how many a key may take.
const KEY_WORD_SLOTS: usize = 256;
const KEY_WORD_WAYS: usize = 4;

/// The word rules' answers for the keys a batch asked about. A page repeats a
/// few dozen attribute names (`class`, `href`, `src`...) thousands of times, and
/// the rules are a pure function of the key's text, so each name is read once.
/// A key takes one of [`KEY_WORD_WAYS`] slots from where its Python hash (cached
/// on the string by the dict that holds it) points: a slot keeps the key it
/// answers for and is taken only for the same object or the same text, so names
/// that share slots only evict each other.
struct KeyWordMemo<'py> {
    slots: Vec<Option<(Bound<'py, PyString>, KeyWords)>>,
}

impl<'py> KeyWordMemo<'py> {
    fn new() -> Self {
        Self { slots: vec![None; KEY_WORD_SLOTS] }
    }

    /// The memoised answer for `key`, or the rules' (remembered for the next time).
    fn words(&mut self, key: &Bound<'py, PyString>) -> PyResult<KeyWords> {
        if !key.is_exact_instance_of::<PyString>() {
            // a str subclass (only in hand-made events) may hash as it likes
            return Self::read(key);
        }
        let first = (key.hash()? as usize) & (KEY_WORD_SLOTS - 1);
        let ways = (0..KEY_WORD_WAYS).map(|way| (first + way) & (KEY_WORD_SLOTS - 1));
        let mut free = None;
        for slot in ways {
            match &self.slots[slot] {
                Some((known, words)) if known.is(key) || same_text(known, key) => return Ok(*words),
                Some(_) => {}
                None => {
                    free = Some(slot);
                    break;
                }
            }
        }
        let words = Self::read(key)?;
        // all ways taken (a page with hundreds of names): the first one is replaced
        self.slots[free.unwrap_or(first)] = Some((key.clone(), words));
        Ok(words)
    }

    /// The rules' answer, not memoised.
    fn read(key: &Bound<'py, PyString>) -> PyResult<KeyWords> {
        let name = text(key)?;
        Ok(KeyWords {
            secret: sensitivity::key_is_secret(&name),
            weak: sensitivity::key_is_weak_secret(&name),
        })
    }
}

/// The same text in both strings (false for text with lone surrogates, which
/// UTF-8 cannot hold: such a key is looked up again, never confused).
fn same_text(a: &Bound<'_, PyString>, b: &Bound<'_, PyString>) -> bool {
    matches!((a.to_str(), b.to_str()), (Ok(a), Ok(b)) if a == b)
}

/// A Python string as the string rules read it (lone surrogates replaced, as
/// their Python face does).
#[inline]
fn text<'a>(value: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    detectors::py_str(value)
}

/// The walk's answer for a rule's result: None (unchanged) or the new Python string.
#[inline]
fn changed<'py>(
    value: &Bound<'py, PyString>,
    result: Option<String>,
) -> Option<Bound<'py, PyString>> {
    result.map(|masked| PyString::new(value.py(), &masked))
}

impl<'py> Rules<'py> {
    /// An element's bits and its children's selector context (rpol's `ElementRules`).
    #[inline]
    pub fn element_value(
        &self,
        tag: &Bound<'py, PyString>,
        attrs: &Bound<'py, PyDict>,
        parent: u64,
    ) -> PyResult<u64> {
        // a tag with lone surrogates raises, as the Python face's `tag: str` did
        self.element_rules.get().element_value(tag.to_str()?, attrs, parent)
    }

    /// Marks an attribute mutation adds to an element.
    pub fn change_marks(&self, changed: &Bound<'py, PyDict>, value: u64) -> PyResult<u64> {
        self.element_rules.get().change_marks(changed, value)
    }

    /// What an attribute mutation means for the element's descendants.
    pub fn change_ancestor_marks(
        &self,
        changed: &Bound<'py, PyDict>,
        value: u64,
    ) -> PyResult<(u64, u64)> {
        self.element_rules.get().change_ancestor_marks(changed, value)
    }

    /// The site's scrubber on a text (rdet's `Scrubber::scrub`); a panic in a
    /// rule is a `RuntimeError` (the batch goes to the DLQ as `mask_error`).
    #[inline]
    pub fn scrub(
        &self,
        value: &Bound<'py, PyString>,
        counts: &mut Counts,
        kind: ScrubKind,
    ) -> PyResult<Option<Bound<'py, PyString>>> {
        let opts = match kind {
            ScrubKind::Text => ScrubOptions::TEXT,
            ScrubKind::NoRandomTokens => ScrubOptions {
                random_tokens: false,
                ..ScrubOptions::TEXT
            },
            ScrubKind::Payload => ScrubOptions {
                payload: true,
                ..ScrubOptions::TEXT
            },
        };
        let input = text(value)?;
        let scrubber = self.scrubber.get();
        let result = detectors::guarded("scrub", || scrubber.scrub(&input, counts, opts))?;
        Ok(changed(value, result))
    }

    /// The site's scrubber on a URL (`asset`: its path segments are kept).
    pub fn scrub_url(
        &self,
        value: &Bound<'py, PyString>,
        counts: &mut Counts,
        asset: bool,
    ) -> PyResult<Option<Bound<'py, PyString>>> {
        let input = text(value)?;
        let scrubber = self.scrubber.get();
        let result =
            detectors::guarded("scrub_url", || scrubber.scrub_url(&input, counts, asset))?;
        Ok(changed(value, result))
    }

    /// Every non-space character as `*` (length kept).
    pub fn mask_text(&self, value: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyString>> {
        Ok(PyString::new(value.py(), &detectors::mask_text(&text(value)?)))
    }

    /// A value under a weak secret word that reads like a credential.
    pub fn looks_secret_value(&self, value: &Bound<'py, PyString>) -> PyResult<bool> {
        Ok(detectors::looks_secret_value(&text(value)?))
    }

    /// A JSON integer with a card number's length and checksum.
    pub fn card_number(&self, number: &Bound<'py, PyAny>) -> PyResult<bool> {
        let digits = number.str()?;
        Ok(detectors::card_number(&text(&digits)?))
    }

    /// A key that names a secret word.
    pub fn key_is_secret(&self, key: &Bound<'py, PyString>) -> PyResult<bool> {
        Ok(self.key_words.borrow_mut().words(key)?.secret)
    }

    /// A key with a weak secret word (`key`, `api`...).
    pub fn key_is_weak_secret(&self, key: &Bound<'py, PyString>) -> PyResult<bool> {
        Ok(self.key_words.borrow_mut().words(key)?.weak)
    }
}

/// What one batch's walk needs from the policy (rpol) that is plain data.
pub struct PolicyFacts<'py> {
    pub consent_mode: String,
    pub record_inputs: bool,
    pub has_selector_rules: bool,
    pub selector_key: Bound<'py, PyAny>,
}

/// Every handle of one batch, fetched once.
pub struct Deps<'py> {
    pub index: NodeIndex<'py>,
    pub tree: NodeTree<'py>,
    pub state: SessionState<'py>,
    pub rules: Rules<'py>,
    pub policy: PolicyFacts<'py>,
    /// Upper bound on stored runs per session (`state.MAX_NODE_RUNS`).
    pub max_node_runs: usize,
}

impl<'py> Deps<'py> {
    /// From the batch's `MaskPolicy`, `SessionMaskState` and the Counter of its result.
    pub fn new(
        policy: &Bound<'py, PyAny>,
        state: &Bound<'py, PyAny>,
        py_counts: &Bound<'py, PyAny>,
        max_node_runs: usize,
    ) -> PyResult<Self> {
        let py = policy.py();
        let rules = Rules {
            py_counts: py_counts.clone(),
            element_rules: policy::ElementRules::of_policy(policy)?,
            scrubber: policy
                .getattr(intern!(py, "scrubber"))?
                .cast_into::<detectors::Scrubber>()?,
            key_words: RefCell::new(KeyWordMemo::new()),
        };
        let facts = PolicyFacts {
            consent_mode: policy.getattr(intern!(py, "consent_mode"))?.extract()?,
            record_inputs: policy.getattr(intern!(py, "record_inputs"))?.is_truthy()?,
            has_selector_rules: rules.element_rules.get().has_selector_rules(),
            selector_key: policy.getattr(intern!(py, "selector_key"))?,
        };
        let field_names = state
            .getattr(intern!(py, "field_names"))?
            .cast_into::<PyDict>()?;
        Ok(Self {
            index: NodeIndex::wrap(state.getattr(intern!(py, "nodes"))?)?,
            tree: NodeTree::wrap(state.getattr(intern!(py, "tree"))?)?,
            state: SessionState {
                obj: state.clone(),
                field_names,
            },
            rules,
            policy: facts,
            max_node_runs,
        })
    }
}
