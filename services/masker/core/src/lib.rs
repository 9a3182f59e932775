//! The masker's compiled core (issue 16): see docs/masking.md, "The compiled core".
use pyo3::prelude::*;

/// The Python module `replaypipe_masker_core`.
#[pymodule]
fn replaypipe_masker_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
