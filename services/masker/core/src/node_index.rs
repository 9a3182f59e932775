//! `SessionNodeIndex`: node id -> masking bits, stored as runs of consecutive ids.
//!
//! rrweb numbers nodes depth-first as it serialises them and never reuses an id
//! in a page, so a subtree is a contiguous id range and most neighbouring nodes
//! carry the same bits. Storing `(first, last, bits)` runs instead of one entry
//! per node keeps a session's state at a few hundred bytes for typical pages,
//! even with thousands of nodes.
//!
//! An id outside every run is *unknown* (`get` returns None): the masker treats
//! unknown nodes conservatively. Ids are `i64` and bits `u64`; a Python int
//! outside those ranges is never stored (the node stays unknown, so masked).
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyList, PyTuple};

/// One run: the ids `first..=last` all carry `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub first: i64,
    pub last: i64,
    pub value: u64,
}

/// A node id as the Python code reads one: any `int` (bools included, as
/// `isinstance(x, int)` says), None for anything else or an int outside `i64`.
pub fn int_id(obj: &Bound<'_, PyAny>) -> Option<i64> {
    if obj.is_instance_of::<PyInt>() {
        obj.extract::<i64>().ok()
    } else {
        None
    }
}

/// Sorted, non-overlapping runs `[first, last]` of node ids sharing one bits value.
#[pyclass(module = "replaypipe_masker_core")]
#[derive(Debug, Default, Clone)]
pub struct SessionNodeIndex {
    runs: Vec<Run>,
}

/// `last + 1 == id` without overflowing at `i64::MAX`.
#[inline]
fn follows(last: i64, id: i64) -> bool {
    last < id && last + 1 == id
}

impl SessionNodeIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of runs (not nodes).
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The runs, in id order.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Forget every node.
    pub fn clear(&mut self) {
        self.runs.clear();
    }

    /// Move every run into a new index and leave this one empty.
    pub fn take(&mut self) -> SessionNodeIndex {
        std::mem::take(self)
    }

    /// Bits of a node, or None if the node is unknown.
    #[inline]
    pub fn get(&self, id: i64) -> Option<u64> {
        let runs = &self.runs;
        // fast path: most lookups hit the newest nodes
        if let Some(tail) = runs.last() {
            if id <= tail.last && id >= tail.first {
                return Some(tail.value);
            }
        }
        let after = runs.partition_point(|run| run.first <= id);
        match after.checked_sub(1) {
            Some(index) if id <= runs[index].last => Some(runs[index].value),
            _ => None,
        }
    }

    /// Record a node's bits, merging with neighbouring runs of the same value.
    #[inline]
    pub fn set(&mut self, id: i64, value: u64) {
        let runs = &mut self.runs;
        match runs.last_mut() {
            None => {
                runs.push(Run { first: id, last: id, value });
                return;
            }
            Some(tail) if follows(tail.last, id) => {
                if tail.value == value {
                    tail.last = id;
                } else {
                    runs.push(Run { first: id, last: id, value });
                }
                return;
            }
            Some(tail) if id > tail.last => {
                runs.push(Run { first: id, last: id, value });
                return;
            }
            Some(_) => {}
        }
        self.set_inside(id, value);
    }

    /// `set` for an id at or before the last run (out of document order).
    fn set_inside(&mut self, id: i64, value: u64) {
        let runs = &mut self.runs;
        let right = runs.partition_point(|run| run.first <= id);
        let left = right.checked_sub(1);
        if let Some(index) = left {
            let run = runs[index];
            if id <= run.last {
                if run.value == value {
                    return;
                }
                // split [first, last] into [first, id-1], [id, id], [id+1, last]
                let mut pieces = [run; 3];
                let mut count = 0;
                if run.first < id {
                    pieces[count] = Run { first: run.first, last: id - 1, value: run.value };
                    count += 1;
                }
                pieces[count] = Run { first: id, last: id, value };
                count += 1;
                if id < run.last {
                    pieces[count] = Run { first: id + 1, last: run.last, value: run.value };
                    count += 1;
                }
                runs.splice(index..=index, pieces[..count].iter().copied());
                return;
            }
        }
        // a gap between run `left` and run `right`
        let merge_left =
            left.is_some_and(|index| follows(runs[index].last, id) && runs[index].value == value);
        let merge_right =
            right < runs.len() && follows(id, runs[right].first) && runs[right].value == value;
        match (left, merge_left, merge_right) {
            (Some(index), true, true) => {
                runs[index].last = runs[right].last;
                runs.remove(right);
            }
            (Some(index), true, false) => runs[index].last = id,
            (_, _, true) => runs[right].first = id,
            _ => runs.insert(right, Run { first: id, last: id, value }),
        }
    }

    fn append_run(&mut self, first: i64, last: i64, value: u64) {
        if let Some(tail) = self.runs.last_mut() {
            if follows(tail.last, first) && tail.value == value {
                tail.last = last;
                return;
            }
        }
        self.runs.push(Run { first, last, value });
    }

    /// OR `bits` into every known node of `ids` (a mark reaching a subtree).
    ///
    /// Unknown ids stay unknown (they are masked anyway). Runs are split only
    /// where the marked ids start and end, so a marked subtree stays one run.
    pub fn add_bits(&mut self, ids: &[i64], bits: u64) {
        if ids.is_empty() || self.runs.is_empty() {
            return;
        }
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut spans: Vec<(i64, i64)> = Vec::new();
        for id in sorted {
            match spans.last_mut() {
                Some(span) if follows(span.1, id) => span.1 = id,
                _ => spans.push((id, id)),
            }
        }
        let old = std::mem::take(&mut self.runs);
        self.runs.reserve(old.len() + 2 * spans.len());
        let mut span_pos = 0;
        for run in old {
            let mut start = run.first;
            loop {
                while span_pos < spans.len() && spans[span_pos].1 < start {
                    span_pos += 1;
                }
                if span_pos == spans.len() || spans[span_pos].0 > run.last {
                    self.append_run(start, run.last, run.value);
                    break;
                }
                let (span_first, span_last) = spans[span_pos];
                if span_first > start {
                    self.append_run(start, span_first - 1, run.value);
                    start = span_first;
                }
                let end = run.last.min(span_last);
                self.append_run(start, end, run.value | bits);
                if end == run.last {
                    break;
                }
                start = end + 1;
            }
        }
    }

    /// Rebuild every run with `f(value)`, merging neighbours that become equal.
    fn rebuild(&mut self, f: impl Fn(u64) -> u64) {
        let old = std::mem::take(&mut self.runs);
        self.runs.reserve(old.len());
        for run in old {
            self.append_run(run.first, run.last, f(run.value));
        }
    }

    /// OR `bits` into every known node.
    pub fn add_bits_everywhere(&mut self, bits: u64) {
        self.rebuild(|value| value | bits);
    }

    /// AND every value with `keep_bits` (used to drop stale selector contexts).
    pub fn map_values(&mut self, keep_bits: u64) {
        self.rebuild(|value| value & keep_bits);
    }

    /// Keep only the newest `max_runs` runs; older nodes become unknown (masked).
    ///
    /// Returns how many runs were dropped. Forgetting is the safe direction:
    /// unknown nodes are masked, never shown.
    pub fn trim(&mut self, max_runs: usize) -> usize {
        let excess = self.runs.len().saturating_sub(max_runs);
        self.runs.drain(..excess);
        excess
    }

    /// Inverse of the list form `[gap, length-1, value, ...]` (see `to_list`);
    /// None if it is malformed or does not fit `i64` ids and `u64` bits.
    pub fn from_flat(flat: &[i128]) -> Option<SessionNodeIndex> {
        if !flat.len().is_multiple_of(3) {
            return None;
        }
        let mut index = SessionNodeIndex::new();
        let mut previous_last: i128 = 0;
        for triple in flat.chunks_exact(3) {
            let (gap, extent, value) = (triple[0], triple[1], triple[2]);
            let first = previous_last + gap;
            let last = first + extent;
            if extent < 0 || index.runs.last().is_some_and(|tail| first <= i128::from(tail.last)) {
                return None;
            }
            let (Ok(first), Ok(last), Ok(value)) =
                (i64::try_from(first), i64::try_from(last), u64::try_from(value))
            else {
                return None;
            };
            index.append_run(first, last, value);
            previous_last = i128::from(last);
        }
        Some(index)
    }
}

/// `a - b` as a Python int (in `i64` when it fits, as it always does for real ids).
pub(crate) fn py_difference<'py>(py: Python<'py>, a: i64, b: i64) -> PyResult<Bound<'py, PyAny>> {
    Ok(match a.checked_sub(b) {
        Some(d) => d.into_pyobject(py)?.into_any(),
        None => (i128::from(a) - i128::from(b)).into_pyobject(py)?.into_any(),
    })
}

/// The items of a Python iterable, each as an exact `int` (bools included);
/// None if any item is not an int or does not fit `i128`.
pub(crate) fn py_ints(flat: &Bound<'_, PyAny>) -> PyResult<Option<Vec<i128>>> {
    fn one(item: &Bound<'_, PyAny>) -> Option<i128> {
        if item.is_instance_of::<PyInt>() {
            // the same value, read as 64 bits first: a stored state's numbers fit,
            // and pyo3's 128-bit read goes through a byte array
            match item.extract::<i64>() {
                Ok(n) => Some(i128::from(n)),
                Err(_) => item.extract::<i128>().ok(),
            }
        } else {
            None
        }
    }
    if let Ok(list) = flat.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for item in list.iter() {
            match one(&item) {
                Some(n) => out.push(n),
                None => return Ok(None),
            }
        }
        return Ok(Some(out));
    }
    let mut out = Vec::new();
    let mut ok = true;
    for item in flat.try_iter()? {
        match one(&item?) {
            Some(n) if ok => out.push(n),
            _ => ok = false, // like list(flat): the whole iterable is consumed first
        }
    }
    Ok(ok.then_some(out))
}

#[pymethods]
impl SessionNodeIndex {
    #[new]
    fn py_new() -> Self {
        Self::new()
    }

    /// Number of runs (not nodes).
    fn __len__(&self) -> usize {
        self.len()
    }

    /// Forget every node.
    #[pyo3(name = "clear")]
    fn py_clear(&mut self) {
        self.clear();
    }

    /// Move every run into a new index and leave this one empty.
    #[pyo3(name = "take")]
    fn py_take(&mut self) -> SessionNodeIndex {
        self.take()
    }

    /// Bits of a node, or None if the node is unknown (or not an int).
    #[pyo3(name = "get")]
    fn py_get(&self, node_id: &Bound<'_, PyAny>) -> Option<u64> {
        int_id(node_id).and_then(|id| self.get(id))
    }

    /// Record a node's bits, merging with neighbouring runs of the same value.
    #[pyo3(name = "set")]
    fn py_set(&mut self, node_id: &Bound<'_, PyAny>, value: u64) -> PyResult<()> {
        if !node_id.is_instance_of::<PyInt>() {
            return Err(PyTypeError::new_err("a node id is an int"));
        }
        // an id beyond i64 is never stored: the node stays unknown, so masked
        if let Some(id) = int_id(node_id) {
            self.set(id, value);
        }
        Ok(())
    }

    /// OR `bits` into every known node of `node_ids` (a mark reaching a subtree).
    #[pyo3(name = "add_bits")]
    fn py_add_bits(&mut self, node_ids: &Bound<'_, PyAny>, bits: u64) -> PyResult<()> {
        let mut ids = Vec::new();
        for item in node_ids.try_iter()? {
            let item = item?;
            if !item.is_instance_of::<PyInt>() {
                return Err(PyTypeError::new_err("node ids are ints"));
            }
            // an id beyond i64 is in no run: nothing to mark
            if let Some(id) = int_id(&item) {
                ids.push(id);
            }
        }
        self.add_bits(&ids, bits);
        Ok(())
    }

    /// OR `bits` into every known node.
    #[pyo3(name = "add_bits_everywhere")]
    fn py_add_bits_everywhere(&mut self, bits: u64) {
        self.add_bits_everywhere(bits);
    }

    /// AND every value with `keep_bits` (used to drop stale selector contexts).
    #[pyo3(name = "map_values")]
    fn py_map_values(&mut self, keep_bits: u64) {
        self.map_values(keep_bits);
    }

    /// Keep only the newest `max_runs` runs; returns how many runs were dropped.
    #[pyo3(name = "trim")]
    fn py_trim(&mut self, max_runs: i64) -> i64 {
        let excess = self.runs.len() as i64 - max_runs;
        if excess <= 0 {
            return 0;
        }
        self.runs.drain(..(excess as usize).min(self.runs.len()));
        excess
    }

    /// Flat, delta-encoded form for JSON: `[gap, length-1, value, ...]`.
    fn to_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut flat = Vec::with_capacity(3 * self.runs.len());
        let mut previous_last = 0i64;
        for run in &self.runs {
            flat.push(py_difference(py, run.first, previous_last)?);
            flat.push(py_difference(py, run.last, run.first)?);
            flat.push(run.value.into_pyobject(py)?.into_any());
            previous_last = run.last;
        }
        PyList::new(py, flat)
    }

    /// Inverse of `to_list`; malformed input gives an empty (all-unknown) index.
    #[staticmethod]
    fn from_list(flat: &Bound<'_, PyAny>) -> PyResult<SessionNodeIndex> {
        Ok(py_ints(flat)?
            .and_then(|items| SessionNodeIndex::from_flat(&items))
            .unwrap_or_default())
    }

    /// The runs as `(first, last, value)` tuples (for tests and debugging).
    #[pyo3(name = "runs")]
    fn py_runs<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.runs
            .iter()
            .map(|run| (run.first, run.last, run.value).into_pyobject(py))
            .collect()
    }

    fn __repr__(&self) -> String {
        format!("SessionNodeIndex({} runs)", self.runs.len())
    }
}

/// Registers `SessionNodeIndex`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SessionNodeIndex>()?;
    Ok(())
}
