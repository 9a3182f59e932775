//! The masker's compiled core (issue 16): the rrweb walk and the rules it
//! applies, one implementation, called from `services/masker/*.py` whose
//! Python API is unchanged. docs/masking.md, "The compiled core".
use pyo3::prelude::*;

pub mod counts;
pub mod flags;
pub mod fingerprint;
pub mod json_doc;
pub mod node_index;
pub mod node_tree;
pub mod policy;
pub mod py_json;
pub mod selectors;
pub mod walk;
pub mod walk_deps;
pub mod detectors;
pub mod sensitivity;
pub mod token_rules;

/// The Python module `replaypipe_masker_core`.
#[pymodule]
fn replaypipe_masker_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Each part registers its classes and functions here, one line each.
    node_tree::register(m)?;
    policy::register(m)?;
    walk::register(m)?;
    detectors::register(m)?;
    Ok(())
}
