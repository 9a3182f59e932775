//! Everything the batch walk (`walk.rs`) calls outside itself, one small
//! function per call: the node index and tree (ridx), the site policy (rpol)
//! and the string rules (rdet).
//!
//! Until those parts are compiled in, each body calls today's Python object or
//! function; the handles (bound methods, functions, keyword dicts) are fetched
//! once per batch in [`Deps::new`], never per node. After the merge only the
//! bodies change: each function's comment names the native call it becomes.
//!
//! Strings go in as the Python string the walk holds (a native body borrows it
//! with `PyString::to_str`, the Python body passes it on without a copy) and a
//! changed string comes back as `Some` (`None`: unchanged, nothing to set).
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::counts::Counts;
use crate::{fingerprint, node_index, node_tree, policy};

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

/// The site's policy and the string rules (rpol, rdet), plus the Counter the
/// Python scrubber counts into until rdet's scrubber takes `&mut Counts`.
pub struct Rules<'py> {
    /// Counter the Python scrubber adds to (the batch's `MaskResult.counts`).
    pub py_counts: Bound<'py, PyAny>,
    element_rules: Bound<'py, policy::ElementRules>,
    scrub: Bound<'py, PyAny>,
    scrub_url: Bound<'py, PyAny>,
    mask_text: Bound<'py, PyAny>,
    looks_secret_value: Bound<'py, PyAny>,
    card_number: Bound<'py, PyAny>,
    key_is_secret: Bound<'py, PyAny>,
    key_is_weak_secret: Bound<'py, PyAny>,
    kw_no_random_tokens: Bound<'py, PyDict>,
    kw_payload: Bound<'py, PyDict>,
    kw_asset: Bound<'py, PyDict>,
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

    /// rdet: `scrubber.scrub(value: &str, counts: &mut Counts, opts) -> Option<String>`.
    pub fn scrub(
        &self,
        value: &Bound<'py, PyString>,
        _counts: &mut Counts,
        kind: ScrubKind,
    ) -> PyResult<Option<Bound<'py, PyString>>> {
        let kwargs = match kind {
            ScrubKind::Text => None,
            ScrubKind::NoRandomTokens => Some(&self.kw_no_random_tokens),
            ScrubKind::Payload => Some(&self.kw_payload),
        };
        let result = self.scrub.call((value, &self.py_counts), kwargs)?;
        unchanged_or(value, result)
    }

    /// rdet: `scrubber.scrub_url(value: &str, counts: &mut Counts, asset: bool) -> Option<String>`.
    pub fn scrub_url(
        &self,
        value: &Bound<'py, PyString>,
        _counts: &mut Counts,
        asset: bool,
    ) -> PyResult<Option<Bound<'py, PyString>>> {
        let kwargs = if asset { Some(&self.kw_asset) } else { None };
        let result = self.scrub_url.call((value, &self.py_counts), kwargs)?;
        unchanged_or(value, result)
    }

    /// rdet: `mask_text(value: &str) -> String`.
    pub fn mask_text(&self, value: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyString>> {
        Ok(self.mask_text.call1((value,))?.cast_into::<PyString>()?)
    }

    /// rdet: `looks_secret_value(value: &str) -> bool`.
    pub fn looks_secret_value(&self, value: &Bound<'py, PyString>) -> PyResult<bool> {
        self.looks_secret_value.call1((value,))?.is_truthy()
    }

    /// rdet: `card_number(number: u64) -> bool` (a Python int that is negative or
    /// wider than 64 bits has no card number's digits: false).
    pub fn card_number(&self, number: &Bound<'py, PyAny>) -> PyResult<bool> {
        self.card_number.call1((number,))?.is_truthy()
    }

    /// rdet: `key_is_secret(key: &str) -> bool`.
    pub fn key_is_secret(&self, key: &Bound<'py, PyString>) -> PyResult<bool> {
        self.key_is_secret.call1((key,))?.is_truthy()
    }

    /// rdet: `key_is_weak_secret(key: &str) -> bool`.
    pub fn key_is_weak_secret(&self, key: &Bound<'py, PyString>) -> PyResult<bool> {
        self.key_is_weak_secret.call1((key,))?.is_truthy()
    }
}

/// The scrubber's answer as "changed or not": Python returns the same object unchanged.
fn unchanged_or<'py>(
    value: &Bound<'py, PyString>,
    result: Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyString>>> {
    if result.is(value) {
        return Ok(None);
    }
    Ok(Some(result.cast_into::<PyString>()?))
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
        let scrubber = policy.getattr(intern!(py, "scrubber"))?;
        let detectors = py.import(intern!(py, "services.masker.detectors"))?;
        let sensitivity = py.import(intern!(py, "services.masker.sensitivity"))?;
        let kwargs = |key: &Bound<'py, PyString>, value: bool| -> PyResult<Bound<'py, PyDict>> {
            let kw = PyDict::new(py);
            kw.set_item(key, value)?;
            Ok(kw)
        };
        let rules = Rules {
            py_counts: py_counts.clone(),
            element_rules: policy::ElementRules::of_policy(policy)?,
            scrub: scrubber.getattr(intern!(py, "scrub"))?,
            scrub_url: scrubber.getattr(intern!(py, "scrub_url"))?,
            mask_text: detectors.getattr(intern!(py, "mask_text"))?,
            looks_secret_value: detectors.getattr(intern!(py, "looks_secret_value"))?,
            card_number: detectors.getattr(intern!(py, "card_number"))?,
            key_is_secret: sensitivity.getattr(intern!(py, "key_is_secret"))?,
            key_is_weak_secret: sensitivity.getattr(intern!(py, "key_is_weak_secret"))?,
            kw_no_random_tokens: kwargs(intern!(py, "random_tokens"), false)?,
            kw_payload: kwargs(intern!(py, "payload"), true)?,
            kw_asset: kwargs(intern!(py, "asset"), true)?,
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
