//! rpol's adapter to the word rules that `src/sensitivity.rs` (rdet) ports:
//! until that part is merged, each function here calls today's Python
//! (`services/masker/sensitivity.py`) with the native signature the Rust one
//! has, so the merge replaces these bodies (and `SplitNames` by
//! `crate::sensitivity::SplitNames`) and nothing else.
//!
//! A failing Python call cannot happen for these inputs (strings in, ints and
//! bools out); if one did, it is reported as unraisable and the answer is the
//! one that masks more.
use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use pyo3::call::PyCallArgs;
use pyo3::prelude::*;
use pyo3::types::{PyFrozenSet, PyTuple};

use crate::flags::F_MASK;

const SENSITIVITY: &str = "services.masker.sensitivity";

/// A name list split for matching: substring names and whole-word names.
#[derive(Debug, Clone, Default)]
pub struct SplitNames {
    pub long: Vec<String>,
    pub short: HashSet<String>,
}

fn call<'py>(
    py: Python<'py>,
    name: &str,
    args: impl PyCallArgs<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    py.import(SENSITIVITY)?.getattr(name)?.call1(args)
}

fn or_mask<T>(py: Python<'_>, result: PyResult<T>, masking: T) -> T {
    result.unwrap_or_else(|err| {
        err.write_unraisable(py, None);
        masking
    })
}

/// (substring names, whole-word names) of a name list, lower-cased without separators.
pub fn split_names<'a>(names: impl IntoIterator<Item = &'a str>) -> SplitNames {
    let names: Vec<&str> = names.into_iter().collect();
    Python::attach(|py| {
        let split = call(py, "split_names", (names,)).and_then(|r| r.extract());
        // Without the split, every name is a substring name: matches more.
        let (long, short) = or_mask(py, split, (Vec::new(), HashSet::new()));
        SplitNames { long, short }
    })
}

type Mirror = (Vec<String>, HashSet<String>, Py<PyTuple>, Py<PyFrozenSet>);

/// The Python tuple/frozenset of the name lists already passed (a site has
/// one list; a deployment a few): the Python function takes them as arguments.
static MIRRORS: Mutex<Vec<Mirror>> = Mutex::new(Vec::new());

fn python_names<'py>(
    py: Python<'py>,
    long: &[String],
    short: &HashSet<String>,
) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyFrozenSet>)> {
    let mut mirrors = MIRRORS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, t, s)) = mirrors
        .iter()
        .find(|(l, sh, _, _)| l == long && sh == short)
    {
        return Ok((t.bind(py).clone(), s.bind(py).clone()));
    }
    let t = PyTuple::new(py, long)?;
    let s = PyFrozenSet::new(py, short)?;
    if mirrors.len() >= 16 {
        mirrors.remove(0);
    }
    mirrors.push((
        long.to_vec(),
        short.clone(),
        t.clone().unbind(),
        s.clone().unbind(),
    ));
    Ok((t, s))
}

/// True if a field name/id contains a long name or has a short one as a whole
/// word. `long`/`short` are already lower-cased without separators.
pub fn name_is_sensitive(value: &str, long: &[String], short: &HashSet<String>) -> bool {
    Python::attach(|py| {
        let answer = python_names(py, long, short)
            .and_then(|(t, s)| call(py, "name_is_sensitive", (value, t, s))?.extract());
        or_mask(py, answer, true)
    })
}

/// Bits of rrweb's `rr-block`/`rr-mask`/`rr-ignore` classes in a class attribute.
pub fn class_marks(cls: &str) -> u64 {
    Python::attach(|py| {
        let bits = call(py, "class_marks", (cls,)).and_then(|r| r.extract());
        or_mask(py, bits, F_MASK)
    })
}

/// Bits of a `data-recording-ignore` attribute value (`None`: not a string).
pub fn recording_ignore_marks(marker: Option<&str>) -> u64 {
    Python::attach(|py| {
        let bits = call(py, "recording_ignore_marks", (marker,)).and_then(|r| r.extract());
        or_mask(py, bits, F_MASK)
    })
}

struct Autocomplete {
    words: Vec<String>,
    prefix: String,
}

static AUTOCOMPLETE: OnceLock<Autocomplete> = OnceLock::new();

fn autocomplete() -> &'static Autocomplete {
    AUTOCOMPLETE.get_or_init(|| {
        Python::attach(|py| {
            let loaded = (|| -> PyResult<Autocomplete> {
                let module = py.import(SENSITIVITY)?;
                let mut words: Vec<String> = module
                    .getattr("SENSITIVE_AUTOCOMPLETE")?
                    .try_iter()?
                    .map(|w| w?.extract())
                    .collect::<PyResult<_>>()?;
                words.sort();
                Ok(Autocomplete {
                    words,
                    prefix: module.getattr("SENSITIVE_AUTOCOMPLETE_PREFIX")?.extract()?,
                })
            })();
            // Without the list, every token starts with the empty prefix: masks.
            or_mask(
                py,
                loaded,
                Autocomplete {
                    words: Vec::new(),
                    prefix: String::new(),
                },
            )
        })
    })
}

/// `SENSITIVE_AUTOCOMPLETE`: autocomplete tokens of secret fields (lower case).
pub fn sensitive_autocomplete() -> &'static [String] {
    &autocomplete().words
}

/// `SENSITIVE_AUTOCOMPLETE_PREFIX`: the prefix of the card autocomplete tokens.
pub fn sensitive_autocomplete_prefix() -> &'static str {
    &autocomplete().prefix
}
