//! `SessionNodeTree`: just enough of a session's DOM tree to find a node's descendants.
//!
//! A mark that arrives later (`class="rr-mask"` added by script, a site selector
//! that starts matching) must cover the descendants that already exist, so the
//! masker needs the tree, not only each node's bits. It keeps it in two compact
//! parts:
//!
//! * the **last full snapshot's shape** (`SnapshotShape`): its node ids in
//!   document order (rrweb serialises depth-first, so usually one run
//!   `first..last`) and the tree as balanced parentheses, one bit per open and
//!   one per close, deflated. A snapshot subtree is then a contiguous slice of
//!   that order. The shape is decoded only when a late mark needs it; storing it
//!   costs nothing per batch.
//! * a **parent pointer per node added later** (mutation `adds`): those ids are
//!   not in document order, so each one says where it hangs. A removed node
//!   loses its pointer (rrweb re-adds a moved node, and every node under it,
//!   with new pointers); pointers of detached subtrees are collected when the
//!   map grows.
//!
//! Both are bounded. A snapshot over `MAX_SHAPE_NODES` keeps no shape, and a
//! state of an older format has none: the tree is *unknown* and a late mark
//! then covers every known node (`descendants` returns None). Pointers past
//! `MAX_ADDED_PARENTS` are evicted oldest first, and `trim` returns the nodes
//! that lost their ancestry so the caller masks them: unknown means masked.
//!
//! The stored form is the one the Python implementation wrote (state v3), byte
//! for byte: the parentheses are deflated by CPython's own `zlib` and base64
//! (called from here, once per snapshot), so a state written before the core
//! existed reads back, and one written now reads the same in older code.
use std::collections::{BTreeMap, HashMap, HashSet};

use pyo3::exceptions::{PyAssertionError, PyIndexError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{IntoPyDict, PyBytes, PyDict, PyInt, PyList, PySet, PyString};

use crate::node_index::{int_id, py_difference, py_ints};

/// Full snapshots with more nodes keep no shape (a late mark then masks every node).
pub const MAX_SHAPE_NODES: usize = 200_000;
/// Parent pointers kept for nodes added after the snapshot; the oldest are evicted.
pub const MAX_ADDED_PARENTS: usize = 20_000;
/// The pointer map is swept for detached subtrees when it has doubled since the last sweep.
pub const MIN_SWEEP_SIZE: usize = 64;
/// A node id that is not an int (malformed snapshot): holds its place in the order.
pub const NO_ID: i64 = -1;
/// Shapes up to this many bytes (~250 nodes) are stored undeflated, marked by `RAW`
/// (not a base64 character): deflating them saves a few bytes and costs more time
/// than masking the snapshot's small page.
const RAW_MAX_BYTES: usize = 64;
const RAW: &str = ".";

/// A node id as the shape records it: a non-negative int that is not a bool
/// (`type(x) is int`), anything else holds its place as `NO_ID`.
pub fn shape_id(obj: &Bound<'_, PyAny>) -> i64 {
    if obj.is_exact_instance_of::<PyInt>() {
        match obj.extract::<i64>() {
            Ok(id) if id >= 0 => id,
            _ => NO_ID,
        }
    } else {
        NO_ID
    }
}

#[inline]
fn is_id(id: i64) -> bool {
    id >= 0
}

/// The decoded shape: ids (`NO_ID` or negative for placeholders) and depths.
#[derive(Debug, Default, Clone)]
struct Nodes {
    ids: Vec<i64>,
    depths: Vec<u32>,
}

/// The node ids of one full snapshot in document order and their depths.
///
/// Built node by node while the snapshot is walked (`visit`), stored
/// compressed (`to_dict`), decoded lazily (`subtree`).
#[pyclass(module = "replaypipe_masker_core")]
#[derive(Debug, Default)]
pub struct SnapshotShape {
    /// None: stored and not decoded yet, or unreadable.
    nodes: Option<Nodes>,
    /// id -> position in document order, built on the first `subtree`.
    positions: Option<HashMap<i64, usize>>,
    /// The stored form `{"i": ..., "p": ...}`: as read, or as last encoded.
    encoded: Option<Py<PyDict>>,
}

impl SnapshotShape {
    pub fn new() -> Self {
        Self { nodes: Some(Nodes::default()), positions: None, encoded: None }
    }

    /// Record the next node of the depth-first walk (`depth` 0 is the root).
    /// `id` None (not an int) or negative holds its place, matching nothing.
    /// A stored shape is read-only: visits to it are ignored.
    #[inline]
    pub fn visit(&mut self, id: Option<i64>, depth: u32) {
        if let Some(nodes) = &mut self.nodes {
            nodes.ids.push(id.filter(|id| is_id(*id)).unwrap_or(NO_ID));
            nodes.depths.push(depth);
            self.invalidate();
        }
    }

    #[inline]
    fn invalidate(&mut self) {
        if self.encoded.is_some() {
            self.encoded = None;
        }
        if self.positions.is_some() {
            self.positions = None;
        }
    }

    /// Number of nodes recorded (placeholders included); 0 if unreadable.
    pub fn len(&mut self, py: Python<'_>) -> usize {
        self.decode(py);
        self.nodes.as_ref().map_or(0, |nodes| nodes.ids.len())
    }

    /// Nodes recorded by `visit` (a shape being built is always decoded).
    pub fn recorded_len(&self) -> usize {
        self.nodes.as_ref().map_or(0, |nodes| nodes.ids.len())
    }

    pub fn is_empty(&mut self, py: Python<'_>) -> bool {
        self.len(py) == 0
    }

    /// Every node id of the snapshot (empty if the stored form does not decode).
    pub fn ids(&mut self, py: Python<'_>) -> Vec<i64> {
        self.decode(py);
        self.nodes
            .as_ref()
            .map(|nodes| nodes.ids.iter().copied().filter(|id| is_id(*id)).collect())
            .unwrap_or_default()
    }

    /// Decode the stored form if needed; false if it does not decode (tree unknown).
    pub fn readable(&mut self, py: Python<'_>) -> bool {
        self.decode(py);
        self.nodes.is_some()
    }

    /// Adds the ids of the nodes under `id` to `into`; false if `id` is not in
    /// this snapshot (or the shape is unreadable).
    pub fn subtree_into(&mut self, py: Python<'_>, id: i64, into: &mut HashSet<i64>) -> bool {
        match self.subtree_range(py, id) {
            Some((start, end)) => {
                let nodes = self.nodes.as_ref().expect("decoded");
                into.extend(nodes.ids[start..end].iter().copied().filter(|id| is_id(*id)));
                true
            }
            None => false,
        }
    }

    /// Ids of the nodes under `id` in this snapshot; None if it is not in it.
    pub fn subtree(&mut self, py: Python<'_>, id: i64) -> Option<Vec<i64>> {
        let (start, end) = self.subtree_range(py, id)?;
        let nodes = self.nodes.as_ref()?;
        Some(nodes.ids[start..end].iter().copied().filter(|id| is_id(*id)).collect())
    }

    /// Positions `start..end` of the nodes under `id` in document order.
    fn subtree_range(&mut self, py: Python<'_>, id: i64) -> Option<(usize, usize)> {
        self.decode(py);
        let nodes = self.nodes.as_ref()?;
        let positions = self.positions.get_or_insert_with(|| {
            let mut positions = HashMap::with_capacity(nodes.ids.len());
            for (pos, nid) in nodes.ids.iter().enumerate() {
                if is_id(*nid) {
                    positions.insert(*nid, pos); // a repeated id: the last one counts
                }
            }
            positions
        });
        let pos = *positions.get(&id)?;
        let depth = nodes.depths[pos];
        let end = nodes.depths[pos + 1..]
            .iter()
            .position(|d| *d <= depth)
            .map_or(nodes.depths.len(), |offset| pos + 1 + offset);
        Some((pos + 1, end))
    }

    /// The stored form `{"i": id runs [gap, length-1, ...], "p": base64(deflate(parentheses))}`.
    pub fn to_dict<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if let Some(encoded) = &self.encoded {
            return Ok(encoded.bind(py).clone());
        }
        let empty = Nodes::default();
        let nodes = self.nodes.as_ref().unwrap_or(&empty);
        let doc = PyDict::new(py);
        doc.set_item(pyo3::intern!(py, "i"), id_runs(py, &nodes.ids)?)?;
        doc.set_item(pyo3::intern!(py, "p"), encode_depths(py, &nodes.depths)?)?;
        self.encoded = Some(doc.clone().unbind());
        Ok(doc)
    }

    /// Inverse of `to_dict`; None if `doc` is malformed (the tree is unknown).
    pub fn from_dict(doc: &Bound<'_, PyAny>) -> PyResult<Option<SnapshotShape>> {
        let py = doc.py();
        let Ok(doc) = doc.cast::<PyDict>() else {
            return Ok(None);
        };
        let runs = doc.get_item(pyo3::intern!(py, "i"))?;
        let parens = doc.get_item(pyo3::intern!(py, "p"))?;
        let (Some(runs), Some(parens)) = (runs, parens) else {
            return Ok(None);
        };
        if !runs.is_instance_of::<PyList>() || !parens.is_instance_of::<PyString>() {
            return Ok(None);
        }
        let encoded = PyDict::new(py);
        encoded.set_item(pyo3::intern!(py, "i"), runs)?;
        encoded.set_item(pyo3::intern!(py, "p"), parens)?;
        // decoded on first use: most batches never need it
        Ok(Some(SnapshotShape { nodes: None, positions: None, encoded: Some(encoded.unbind()) }))
    }

    fn decode(&mut self, py: Python<'_>) {
        if self.nodes.is_some() {
            return;
        }
        let Some(encoded) = &self.encoded else {
            return;
        };
        let encoded = encoded.bind(py);
        let decoded = decode_stored(encoded).ok().flatten();
        match decoded {
            Some(nodes) => self.nodes = Some(nodes),
            None => self.encoded = None, // unreadable: stays undecoded, readable() says so
        }
    }
}

/// Reads `{"i": runs, "p": parentheses}`; None if either does not decode.
fn decode_stored(encoded: &Bound<'_, PyDict>) -> PyResult<Option<Nodes>> {
    let py = encoded.py();
    let Some(runs) = encoded.get_item(pyo3::intern!(py, "i"))? else {
        return Ok(None);
    };
    let Some(parens) = encoded.get_item(pyo3::intern!(py, "p"))? else {
        return Ok(None);
    };
    let Some(ids) = ids_from_runs(&runs)? else {
        return Ok(None);
    };
    let Ok(parens) = parens.cast::<PyString>() else {
        return Ok(None);
    };
    Ok(decode_depths(parens, ids.len()).map(|depths| Nodes { ids, depths }))
}

/// Document-order ids as `[first - previous_last, length - 1, ...]` runs of +1 steps.
fn id_runs<'py>(py: Python<'py>, ids: &[i64]) -> PyResult<Bound<'py, PyList>> {
    let mut flat = Vec::new();
    let mut previous = 0i64;
    let mut begin = 0usize;
    for pos in 1..=ids.len() {
        // where a run ends: the next id is not one more (placeholders never continue a run)
        let ends = pos == ids.len()
            || ids[pos - 1] == NO_ID
            || ids[pos - 1].checked_add(1) != Some(ids[pos]);
        if ends {
            flat.push(py_difference(py, ids[begin], previous)?);
            flat.push(((pos - begin - 1) as i64).into_pyobject(py)?.into_any());
            previous = ids[pos - 1];
            begin = pos;
        }
    }
    PyList::new(py, flat)
}

/// Inverse of `id_runs`; None if malformed or longer than `MAX_SHAPE_NODES`.
fn ids_from_runs(flat: &Bound<'_, PyAny>) -> PyResult<Option<Vec<i64>>> {
    if !flat.is_instance_of::<PyList>() {
        return Ok(None);
    }
    let Some(items) = py_ints(flat)? else {
        return Ok(None);
    };
    if !items.len().is_multiple_of(2) {
        return Ok(None);
    }
    let mut ids: Vec<i64> = Vec::new();
    let mut previous: i128 = 0;
    for pair in items.chunks_exact(2) {
        let first = previous + pair[0];
        let length = pair[1] + 1;
        if length < 1 || ids.len() as i128 + length > MAX_SHAPE_NODES as i128 {
            return Ok(None);
        }
        let Ok(first) = i64::try_from(first) else {
            return Ok(None);
        };
        let length = length as i64; // <= MAX_SHAPE_NODES
        if first == NO_ID {
            ids.extend(std::iter::repeat_n(NO_ID, length as usize));
        } else {
            let Some(last) = first.checked_add(length - 1) else {
                return Ok(None);
            };
            ids.extend(first..=last);
        }
        previous = i128::from(*ids.last().expect("length >= 1"));
    }
    Ok(Some(ids))
}

/// Bits written most significant first into bytes, as `int(bits, 2).to_bytes(...)`.
struct Bits {
    bytes: Vec<u8>,
    len: usize,
}

impl Bits {
    fn with_capacity(bits: usize) -> Self {
        Self { bytes: Vec::with_capacity(bits / 8 + 1), len: 0 }
    }

    fn zeros(&mut self, n: usize) {
        self.len += n;
        self.bytes.resize(self.len.div_ceil(8), 0);
    }

    fn one(&mut self) {
        self.zeros(1);
        let pos = self.len - 1;
        self.bytes[pos / 8] |= 0x80 >> (pos % 8);
    }
}

static COMPRESSOBJ: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DECOMPRESSOBJ: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static B64ENCODE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static B64DECODE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Depth-first depths as balanced parentheses (1 = open, 0 = close), deflated, base64.
fn encode_depths<'py>(py: Python<'py>, depths: &[u32]) -> PyResult<Bound<'py, PyString>> {
    let (Some(first), Some(last)) = (depths.first(), depths.last()) else {
        return Ok(PyString::new(py, ""));
    };
    let mut bits = Bits::with_capacity(2 * depths.len() + 8);
    bits.one();
    for pair in depths.windows(2) {
        // before each node: close every open node at its depth or deeper, then open it
        let closes = i64::from(pair[0]) - i64::from(pair[1]) + 1;
        let closes = if closes >= 0 {
            closes
        } else if closes >= -32 {
            // a jump deeper by more than one level (no walk makes one): what the
            // Python encoder's table lookup wrote for it, from the table's end
            32 + closes
        } else {
            return Err(PyIndexError::new_err("a depth jumps more than 33 levels deeper"));
        };
        bits.zeros(closes as usize);
        bits.one();
    }
    bits.zeros((i64::from(*last) - i64::from(*first) + 1).max(0) as usize);
    let packed = PyBytes::new(py, &bits.bytes);
    let b64encode = B64ENCODE.import(py, "binascii", "b2a_base64")?;
    let newline = [(pyo3::intern!(py, "newline"), false)].into_py_dict(py)?;
    if bits.bytes.len() <= RAW_MAX_BYTES {
        let text = b64encode.call((packed,), Some(&newline))?;
        let text = text.cast::<PyBytes>()?.as_bytes();
        let mut out = String::with_capacity(1 + text.len());
        out.push_str(RAW);
        out.push_str(&String::from_utf8_lossy(text)); // base64 is ASCII
        return Ok(PyString::new(py, &out));
    }
    // Raw deflate (no header and checksum) with a 4 KiB window and little memory:
    // a tree's bits repeat at short distances, and zlib's defaults cost more to set up.
    let deflater = COMPRESSOBJ.import(py, "zlib", "compressobj")?.call1((9, 8, -12, 4))?;
    let head = deflater.call_method1(pyo3::intern!(py, "compress"), (packed,))?;
    let tail = deflater.call_method0(pyo3::intern!(py, "flush"))?;
    let deflated = head.add(tail)?;
    let text = b64encode.call((deflated,), Some(&newline))?;
    Ok(PyString::new(py, &String::from_utf8_lossy(text.cast::<PyBytes>()?.as_bytes())))
}


/// Inverse of `encode_depths` for `count` nodes; None if it does not fit.
fn decode_depths(encoded: &Bound<'_, PyString>, count: usize) -> Option<Vec<u32>> {
    let py = encoded.py();
    let text = encoded.to_str().ok()?;
    if text.is_empty() {
        return (count == 0).then(Vec::new);
    }
    let limit = count / 4 + 1; // 2 bits per node, padded to a byte
    let packed = unpack(py, text, limit).ok().flatten()?;
    let mut depths = Vec::with_capacity(count);
    let mut depth: i64 = -1;
    'bytes: for byte in packed.as_bytes() {
        for shift in (0..8).rev() {
            if byte >> shift & 1 == 1 {
                depth += 1;
                depths.push(depth as u32);
                if depths.len() == count {
                    break 'bytes;
                }
            } else {
                depth -= 1;
                if depth < -1 {
                    return None;
                }
            }
        }
    }
    (depths.len() == count).then_some(depths)
}

/// The packed parentheses of a stored shape, at most `limit` bytes; None if
/// the text is not strict base64 (of a raw deflate stream) or is too long.
fn unpack<'py>(py: Python<'py>, text: &str, limit: usize) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let b64decode = B64DECODE.import(py, "base64", "b64decode")?;
    let validate = [(pyo3::intern!(py, "validate"), true)].into_py_dict(py)?;
    // base64 and zlib errors (and non-ASCII text) mean the same: the tree is unknown
    if let Some(raw) = text.strip_prefix(RAW) {
        let Ok(packed) = b64decode.call((raw,), Some(&validate)) else {
            return Ok(None);
        };
        let packed = packed.cast_into::<PyBytes>()?;
        return Ok((packed.as_bytes().len() <= limit).then_some(packed));
    }
    let Ok(deflated) = b64decode.call((text,), Some(&validate)) else {
        return Ok(None);
    };
    let wbits = [(pyo3::intern!(py, "wbits"), -15)].into_py_dict(py)?;
    let inflater = DECOMPRESSOBJ.import(py, "zlib", "decompressobj")?.call((), Some(&wbits))?;
    let Ok(packed) = inflater.call_method1(pyo3::intern!(py, "decompress"), (deflated, limit))
    else {
        return Ok(None);
    };
    let unconsumed = inflater.getattr(pyo3::intern!(py, "unconsumed_tail"))?;
    if unconsumed.is_truthy()? {
        return Ok(None);
    }
    Ok(Some(packed.cast_into::<PyBytes>()?))
}

#[pymethods]
impl SnapshotShape {
    #[new]
    fn py_new() -> Self {
        Self::new()
    }

    /// Record the next node of the depth-first walk (`depth` 0 is the root).
    #[pyo3(name = "visit")]
    fn py_visit(&mut self, node_id: &Bound<'_, PyAny>, depth: u32) -> PyResult<()> {
        self.record_id(node_id)?;
        self.record_depth(depth)
    }

    /// `(record_id, record_depth)`: `visit` in two plain calls, for the walk.
    ///
    /// Ids that are not ints are tolerated (each holds its place, matching nothing).
    fn recorders<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        if slf.borrow().nodes.is_none() {
            return Err(PyAssertionError::new_err("a stored shape is read-only"));
        }
        Ok((slf.getattr("record_id")?, slf.getattr("record_depth")?))
    }

    /// The id half of `visit`.
    fn record_id(&mut self, node_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(nodes) = &mut self.nodes else {
            return Err(PyAssertionError::new_err("a stored shape is read-only"));
        };
        nodes.ids.push(shape_id(node_id));
        self.invalidate();
        Ok(())
    }

    /// The depth half of `visit`.
    fn record_depth(&mut self, depth: u32) -> PyResult<()> {
        let Some(nodes) = &mut self.nodes else {
            return Err(PyAssertionError::new_err("a stored shape is read-only"));
        };
        nodes.depths.push(depth);
        self.invalidate();
        Ok(())
    }

    fn __len__(&mut self, py: Python<'_>) -> usize {
        self.len(py)
    }

    /// Every node id of the snapshot (empty if the stored form does not decode).
    #[pyo3(name = "ids")]
    fn py_ids(&mut self, py: Python<'_>) -> Vec<i64> {
        self.ids(py)
    }

    /// Decode the stored form if needed; False if it does not decode (tree unknown).
    #[pyo3(name = "readable")]
    fn py_readable(&mut self, py: Python<'_>) -> bool {
        self.readable(py)
    }

    /// Ids of the nodes under `node_id` in this snapshot; None if it is not in it.
    #[pyo3(name = "subtree")]
    fn py_subtree(&mut self, node_id: &Bound<'_, PyAny>) -> Option<Vec<i64>> {
        let id = int_id(node_id)?;
        self.subtree(node_id.py(), id)
    }

    /// `{"i": id runs [gap, length-1, ...], "p": base64(zlib(parentheses bits))}`.
    #[pyo3(name = "to_dict")]
    fn py_to_dict<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.to_dict(py)
    }

    /// Inverse of `to_dict`; None if `doc` is malformed (the tree is unknown).
    #[staticmethod]
    #[pyo3(name = "from_dict")]
    fn py_from_dict(doc: &Bound<'_, PyAny>) -> PyResult<Option<SnapshotShape>> {
        SnapshotShape::from_dict(doc)
    }
}

/// The limits of one tree (the module constants, smaller in tests).
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_shape_nodes: usize,
    max_added_parents: usize,
    min_sweep_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_shape_nodes: MAX_SHAPE_NODES,
            max_added_parents: MAX_ADDED_PARENTS,
            min_sweep_size: MIN_SWEEP_SIZE,
        }
    }
}

/// The snapshot's shape plus parent pointers for nodes added later (see module doc).
///
/// A stored tree is read only when a batch touches it (adds, removes, a late
/// mark, a new snapshot): most batches (typing, scrolling) store it back as
/// they found it.
#[pyclass(module = "replaypipe_masker_core")]
#[derive(Debug)]
pub struct SessionNodeTree {
    /// None: the tree is unknown (older state, oversized snapshot).
    shape: Option<Py<SnapshotShape>>,
    parents: BTreeMap<i64, i64>,
    sweep_at: usize,
    encoded_parents: Option<Py<PyList>>,
    /// The stored form, until first use.
    stored: Option<Py<PyAny>>,
    limits: Limits,
}

/// For every node with a pointer: does its chain of parents (itself included)
/// meet a node of `reached`? If not, `at_top` of the node the chain ends at
/// (one without a pointer). Memoised: each pointer is followed once. In the
/// order of the node ids.
///
/// The pointers are read into a sorted array first, so a chain step is a binary
/// search and the memo an array beside it: a sweep follows every pointer, and
/// hashing each one cost more than the walk of the mutations that made them.
fn follow_parents(
    parents: &BTreeMap<i64, i64>,
    reached: &HashSet<i64>,
    at_top: impl Fn(i64) -> bool,
) -> Vec<(i64, bool)> {
    const UNKNOWN: u8 = 2;
    let nodes: Vec<(i64, i64)> = parents.iter().map(|(node, parent)| (*node, *parent)).collect();
    let position = |id: i64| nodes.binary_search_by_key(&id, |(node, _)| *node).ok();
    let mut verdict: Vec<u8> = vec![UNKNOWN; nodes.len()];
    let mut chain: Vec<usize> = Vec::new();
    for start in 0..nodes.len() {
        chain.clear();
        let mut at = start; // `current` below: a node with a pointer, at this position
        let result = loop {
            if verdict[at] != UNKNOWN {
                break verdict[at] == 1;
            }
            let (current, parent) = nodes[at];
            if reached.contains(&current) {
                break true;
            }
            if chain.len() > nodes.len() {
                break false; // a cycle: no page looks like this
            }
            chain.push(at);
            match position(parent) {
                Some(next) => at = next,
                // the chain ends at `parent` (no pointer, so never in the memo)
                None => break reached.contains(&parent) || at_top(parent),
            }
        };
        for &at in &chain {
            verdict[at] = u8::from(result);
        }
    }
    nodes.iter().zip(verdict).map(|((node, _), result)| (*node, result == 1)).collect()
}

impl SessionNodeTree {
    pub fn new(py: Python<'_>) -> PyResult<Self> {
        Ok(Self {
            shape: Some(Py::new(py, SnapshotShape::new())?),
            parents: BTreeMap::new(),
            sweep_at: MIN_SWEEP_SIZE,
            encoded_parents: Some(PyList::empty(py).unbind()),
            stored: None,
            limits: Limits::default(),
        })
    }

    /// Moves the tree out (for a walk without the GIL), leaving an unknown one.
    pub fn take_out(&mut self) -> SessionNodeTree {
        let empty = SessionNodeTree {
            shape: None,
            parents: BTreeMap::new(),
            sweep_at: self.limits.min_sweep_size,
            encoded_parents: None,
            stored: None,
            limits: self.limits,
        };
        std::mem::replace(self, empty)
    }

    /// Still the stored form (not read since `from_dict`).
    pub fn is_stored(&self) -> bool {
        self.stored.is_some()
    }

    /// Reads the stored form (if still stored).
    pub fn load_stored(&mut self, py: Python<'_>) -> PyResult<()> {
        self.load_if_stored(py)
    }

    /// `start_snapshot` without the new shape (the caller records one and hands it to `set_shape`).
    pub fn forget_for_snapshot(&mut self) {
        self.stored = None;
        self.shape = None;
        self.parents.clear();
        self.encoded_parents = None;
    }

    /// Snapshots with more nodes keep no shape.
    pub fn max_shape_nodes(&self) -> usize {
        self.limits.max_shape_nodes
    }

    /// Keeps `shape` as the last full snapshot's.
    pub fn set_shape(&mut self, py: Python<'_>, shape: SnapshotShape) -> PyResult<()> {
        self.shape = Some(Py::new(py, shape)?);
        Ok(())
    }

    /// `add_parent` on a loaded tree (no Python needed).
    pub fn insert_parent(&mut self, id: i64, parent: i64) {
        debug_assert!(self.stored.is_none());
        self.parents.insert(id, parent);
        self.encoded_parents = None;
    }

    /// `remove` on a loaded tree (no Python needed).
    pub fn remove_parent(&mut self, id: i64) {
        debug_assert!(self.stored.is_none());
        if self.parents.remove(&id).is_some() {
            self.encoded_parents = None;
        }
    }

    /// Whether `trim` may do anything (it returns at once otherwise).
    pub fn may_need_trim(&self) -> bool {
        self.stored.is_none() && self.parents.len() > self.sweep_at
    }

    fn load_if_stored(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.stored.is_some() {
            self.load(py)?;
        }
        Ok(())
    }

    fn load(&mut self, py: Python<'_>) -> PyResult<()> {
        let Some(doc) = self.stored.take() else {
            return Ok(());
        };
        self.shape = None;
        self.encoded_parents = None;
        let doc = doc.bind(py);
        let Ok(doc) = doc.cast::<PyDict>() else {
            return Ok(());
        };
        let flat = doc.get_item(pyo3::intern!(py, "a"))?;
        let flat = match flat {
            Some(flat) if flat.is_instance_of::<PyList>() => py_ints(&flat)?,
            _ => None,
        };
        let Some(flat) = flat.filter(|flat| flat.len().is_multiple_of(2)) else {
            return Ok(()); // pointers lost: descendants cannot be told apart
        };
        let mut parents = BTreeMap::new();
        let mut node: i128 = 0;
        for pair in flat.chunks_exact(2) {
            node += pair[0];
            let (Ok(id), Ok(parent)) = (i64::try_from(node), i64::try_from(node - pair[1])) else {
                return Ok(()); // beyond any real id: read as lost pointers
            };
            parents.insert(id, parent);
        }
        self.shape = match doc.get_item(pyo3::intern!(py, "s"))? {
            Some(shape_doc) if !shape_doc.is_none() => {
                SnapshotShape::from_dict(&shape_doc)?.map(|shape| Py::new(py, shape)).transpose()?
            }
            _ => None,
        };
        self.parents = parents;
        self.sweep_at = self.limits.min_sweep_size.max(2 * self.parents.len());
        Ok(())
    }

    /// The last full snapshot's shape; None when the tree is unknown.
    pub fn shape(&mut self, py: Python<'_>) -> PyResult<Option<Py<SnapshotShape>>> {
        self.load_if_stored(py)?;
        Ok(self.shape.as_ref().map(|shape| shape.clone_ref(py)))
    }

    /// Parent id of each node added after the snapshot.
    pub fn parents(&mut self, py: Python<'_>) -> PyResult<&BTreeMap<i64, i64>> {
        self.load_if_stored(py)?;
        Ok(&self.parents)
    }

    /// False when a late mark cannot be limited to the node's descendants.
    pub fn known(&mut self, py: Python<'_>) -> PyResult<bool> {
        self.load_if_stored(py)?;
        Ok(self.shape.is_some())
    }

    /// Forget the tree: a new full snapshot describes the whole page again.
    /// Returns the new shape, to record the snapshot's nodes into (`visit`).
    pub fn start_snapshot(&mut self, py: Python<'_>) -> PyResult<Py<SnapshotShape>> {
        self.stored = None;
        let shape = Py::new(py, SnapshotShape::new())?;
        self.shape = Some(shape.clone_ref(py));
        self.parents.clear();
        self.encoded_parents = None;
        Ok(shape)
    }

    /// Drop the shape of a snapshot too big to keep (the tree becomes unknown).
    /// (Release the shape's borrow from `start_snapshot` first.)
    pub fn end_snapshot(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(shape) = &self.shape {
            if shape.bind(py).try_borrow_mut()?.len(py) > self.limits.max_shape_nodes {
                self.shape = None;
            }
        }
        Ok(())
    }

    /// Remember where a node added by a mutation hangs (both must be int ids).
    pub fn add_parent(
        &mut self,
        py: Python<'_>,
        id: Option<i64>,
        parent: Option<i64>,
    ) -> PyResult<()> {
        if let (Some(id), Some(parent)) = (id, parent) {
            self.load_if_stored(py)?;
            self.parents.insert(id, parent);
            self.encoded_parents = None;
        }
        Ok(())
    }

    /// A node left the page: its pointer goes (a move re-adds it with a new one).
    pub fn remove(&mut self, py: Python<'_>, id: i64) -> PyResult<()> {
        self.load_if_stored(py)?;
        if self.parents.remove(&id).is_some() {
            self.encoded_parents = None;
        }
        Ok(())
    }

    /// The shape if it is known and readable; an unreadable one makes the tree unknown.
    fn readable_shape(&mut self, py: Python<'_>) -> PyResult<Option<Py<SnapshotShape>>> {
        let Some(shape) = self.shape(py)? else {
            return Ok(None);
        };
        if !shape.bind(py).try_borrow_mut()?.readable(py) {
            self.shape = None; // stays unknown in the stored state too
            return Ok(None);
        }
        Ok(Some(shape))
    }

    /// Every node known to be under `id` now (sorted); None if the tree is unknown.
    ///
    /// Snapshot subtrees are slices of the document order; nodes added later are
    /// found by following their parent pointers up (memoised, so each pointer is
    /// followed once). A snapshot node moved elsewhere still counts under its old
    /// ancestors too: that masks more, never less.
    pub fn descendants(&mut self, py: Python<'_>, id: i64) -> PyResult<Option<Vec<i64>>> {
        let Some(under) = self.descendant_set(py, id)? else {
            return Ok(None);
        };
        let mut under: Vec<i64> = under.into_iter().collect();
        under.sort_unstable();
        Ok(Some(under))
    }

    fn descendant_set(&mut self, py: Python<'_>, id: i64) -> PyResult<Option<HashSet<i64>>> {
        let Some(shape) = self.readable_shape(py)? else {
            return Ok(None);
        };
        let mut shape = shape.bind(py).try_borrow_mut()?;
        let mut under: HashSet<i64> = HashSet::new();
        let mut roots = vec![id];
        while !roots.is_empty() {
            // snapshot subtrees of the roots found so far
            for root in &roots {
                shape.subtree_into(py, *root, &mut under);
            }
            under.extend(roots.iter().copied());
            let verdict = follow_parents(&self.parents, &under, |_| false);
            roots = verdict
                .into_iter()
                .filter(|(node, result)| *result && !under.contains(node))
                .map(|(node, _)| node)
                .collect();
        }
        under.remove(&id);
        Ok(Some(under))
    }

    /// Bound the pointer map; returns the nodes evicted while still attached (sorted).
    ///
    /// Pointers of detached subtrees (their chain ends at a removed node, i.e.
    /// neither a snapshot node nor one with a pointer) go first: such nodes are
    /// off the page, and rrweb re-adds them with new pointers if they come back.
    /// If more than `MAX_ADDED_PARENTS` remain, the oldest go, with every node
    /// whose chain passes through them; the caller must mask those.
    pub fn trim(&mut self, py: Python<'_>) -> PyResult<Vec<i64>> {
        if self.stored.is_some() {
            return Ok(Vec::new()); // untouched since it was stored, so already within bounds
        }
        if self.parents.len() <= self.sweep_at {
            return Ok(Vec::new());
        }
        self.encoded_parents = None;
        // Sorted for a binary search, not hashed: rrweb numbers a snapshot's nodes
        // in document order, so the ids are sorted already and this costs one
        // pass (hashing every id of a big page cost more than the sweep itself).
        let in_shape: Option<Vec<i64>> = match self.readable_shape(py)? {
            Some(shape) => {
                let mut ids = shape.bind(py).try_borrow_mut()?.ids(py);
                if !ids.is_sorted() {
                    ids.sort_unstable();
                }
                Some(ids)
            }
            None => None,
        };
        let attached = follow_parents(&self.parents, &HashSet::new(), |top| {
            in_shape.as_ref().is_none_or(|ids| ids.binary_search(&top).is_ok())
        });
        if attached.iter().any(|(_, result)| !result) {
            // rebuilt from the sorted survivors in one pass (cheaper than a removal each)
            let kept: Vec<(i64, i64)> = attached
                .iter()
                .zip(&self.parents)
                .filter(|((_, result), _)| *result)
                .map(|(_, (node, parent))| (*node, *parent))
                .collect();
            self.parents = kept.into_iter().collect();
        }
        let mut evicted = Vec::new();
        let max = self.limits.max_added_parents;
        if self.parents.len() > max {
            let excess = self.parents.len() - max;
            let oldest: Vec<i64> = self.parents.keys().take(excess).copied().collect();
            let mut gone: HashSet<i64> = oldest.iter().copied().collect();
            for node in &oldest {
                self.parents.remove(node);
            }
            // everything that hung below an evicted node lost its ancestry too
            loop {
                let below: Vec<i64> = self
                    .parents
                    .iter()
                    .filter(|(_, parent)| gone.contains(parent))
                    .map(|(node, _)| *node)
                    .collect();
                if below.is_empty() {
                    break;
                }
                for node in below {
                    self.parents.remove(&node);
                    gone.insert(node);
                }
            }
            evicted = gone.into_iter().collect();
            evicted.sort_unstable();
        }
        self.sweep_at = self.limits.min_sweep_size.max(2 * self.parents.len());
        Ok(evicted)
    }

    /// JSON form: `{"s": shape or None, "a": [id gap, id - parent, ...]}` (the
    /// stored object itself while the tree is untouched).
    pub fn to_dict<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(stored) = &self.stored {
            return Ok(stored.bind(py).clone());
        }
        let flat = match &self.encoded_parents {
            Some(flat) => flat.bind(py).clone(),
            None => {
                let mut items = Vec::with_capacity(2 * self.parents.len());
                let mut previous = 0i64;
                for (&node, &parent) in &self.parents {
                    items.push(py_difference(py, node, previous)?);
                    items.push(py_difference(py, node, parent)?);
                    previous = node;
                }
                let flat = PyList::new(py, items)?;
                self.encoded_parents = Some(flat.clone().unbind());
                flat
            }
        };
        let doc = PyDict::new(py);
        match &self.shape {
            Some(shape) => {
                doc.set_item(pyo3::intern!(py, "s"), shape.bind(py).try_borrow_mut()?.to_dict(py)?)?
            }
            None => doc.set_item(pyo3::intern!(py, "s"), py.None())?,
        }
        doc.set_item(pyo3::intern!(py, "a"), flat)?;
        Ok(doc.into_any())
    }

    /// Inverse of `to_dict` (read on first use); anything unreadable is unknown.
    pub fn from_dict(doc: &Bound<'_, PyAny>) -> PyResult<SessionNodeTree> {
        let py = doc.py();
        let stored = if doc.is_none() {
            let empty = PyDict::new(py);
            empty.set_item(pyo3::intern!(py, "s"), py.None())?;
            empty.set_item(pyo3::intern!(py, "a"), PyList::empty(py))?;
            empty.into_any().unbind()
        } else {
            doc.clone().unbind()
        };
        Ok(SessionNodeTree {
            shape: None,
            parents: BTreeMap::new(),
            sweep_at: MIN_SWEEP_SIZE,
            encoded_parents: None,
            stored: Some(stored),
            limits: Limits::default(),
        })
    }
}

#[pymethods]
impl SessionNodeTree {
    /// A fresh tree; the keyword arguments lower the module's limits (for tests).
    #[new]
    #[pyo3(signature = (*, max_shape_nodes=MAX_SHAPE_NODES, max_added_parents=MAX_ADDED_PARENTS, min_sweep_size=MIN_SWEEP_SIZE))]
    fn py_new(
        py: Python<'_>,
        max_shape_nodes: usize,
        max_added_parents: usize,
        min_sweep_size: usize,
    ) -> PyResult<Self> {
        let mut tree = Self::new(py)?;
        tree.limits = Limits { max_shape_nodes, max_added_parents, min_sweep_size };
        tree.sweep_at = min_sweep_size;
        Ok(tree)
    }

    /// The last full snapshot's shape; None when the tree is unknown.
    #[getter(shape)]
    fn py_shape(&mut self, py: Python<'_>) -> PyResult<Option<Py<SnapshotShape>>> {
        self.shape(py)
    }

    /// Parent id of each node added after the snapshot (a copy).
    #[getter(parents)]
    fn py_parents<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (node, parent) in self.parents(py)? {
            out.set_item(node, parent)?;
        }
        Ok(out)
    }

    /// False when a late mark cannot be limited to the node's descendants.
    #[getter(known)]
    fn py_known(&mut self, py: Python<'_>) -> PyResult<bool> {
        self.known(py)
    }

    /// Forget the tree: a new full snapshot describes the whole page again.
    #[pyo3(name = "start_snapshot")]
    fn py_start_snapshot(&mut self, py: Python<'_>) -> PyResult<Py<SnapshotShape>> {
        self.start_snapshot(py)
    }

    /// Drop the shape of a snapshot too big to keep (the tree becomes unknown).
    #[pyo3(name = "end_snapshot")]
    fn py_end_snapshot(&mut self, py: Python<'_>) -> PyResult<()> {
        self.end_snapshot(py)
    }

    /// Remember where a node added by a mutation hangs.
    #[pyo3(name = "add_parent")]
    fn py_add_parent(
        &mut self,
        node_id: &Bound<'_, PyAny>,
        parent_id: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.add_parent(node_id.py(), int_id(node_id), int_id(parent_id))
    }

    /// A node left the page: its pointer goes (a move re-adds it with a new one).
    #[pyo3(name = "remove")]
    fn py_remove(&mut self, node_id: &Bound<'_, PyAny>) -> PyResult<()> {
        match int_id(node_id) {
            Some(id) => self.remove(node_id.py(), id),
            None => Ok(()),
        }
    }

    /// Every node known to be under `node_id` now; None if the tree is unknown.
    #[pyo3(name = "descendants")]
    fn py_descendants<'py>(
        &mut self,
        py: Python<'py>,
        node_id: i64,
    ) -> PyResult<Option<Bound<'py, PySet>>> {
        match self.descendant_set(py, node_id)? {
            Some(under) => Ok(Some(PySet::new(py, under)?)),
            None => Ok(None),
        }
    }

    /// Bound the pointer map; returns the nodes evicted while still attached.
    #[pyo3(name = "trim")]
    fn py_trim(&mut self, py: Python<'_>) -> PyResult<Vec<i64>> {
        self.trim(py)
    }

    /// JSON form: `{"s": shape or None, "a": [id gap, id - parent, ...]}`.
    #[pyo3(name = "to_dict")]
    fn py_to_dict<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.to_dict(py)
    }

    /// Inverse of `to_dict` (read on first use); anything unreadable is unknown.
    #[staticmethod]
    #[pyo3(name = "from_dict")]
    fn py_from_dict(doc: &Bound<'_, PyAny>) -> PyResult<SessionNodeTree> {
        SessionNodeTree::from_dict(doc)
    }
}

/// Registers this part: `SessionNodeIndex`, `SnapshotShape`, `SessionNodeTree`,
/// `field_fingerprint` and the tree's limits.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    crate::node_index::register(m)?;
    crate::fingerprint::register(m)?;
    m.add_class::<SnapshotShape>()?;
    m.add_class::<SessionNodeTree>()?;
    m.add("MAX_SHAPE_NODES", MAX_SHAPE_NODES)?;
    m.add("MAX_ADDED_PARENTS", MAX_ADDED_PARENTS)?;
    m.add("MIN_SWEEP_SIZE", MIN_SWEEP_SIZE)?;
    Ok(())
}
