//! `field_fingerprint`: a short fingerprint of a form field's name or id, kept in
//! the session state instead of the name itself (`services/masker/state.py`).
use blake2::digest::consts::U4;
use blake2::{Blake2b, Digest};
use pyo3::prelude::*;
use pyo3::types::PyString;

/// BLAKE2b with a 4-byte digest (the digest size is part of BLAKE2's
/// parameters, so this is `hashlib.blake2b(name, digest_size=4)`, not a
/// truncated 64-byte digest) of the UTF-8 name, read big-endian.
///
/// 32 bits: a collision only masks one more field.
pub fn field_fingerprint(name: &str) -> u32 {
    let digest = Blake2b::<U4>::digest(name.as_bytes());
    u32::from_be_bytes(digest.into())
}

/// A short fingerprint of a field's name or id, kept instead of the name itself.
#[pyfunction(name = "field_fingerprint")]
fn py_field_fingerprint(name: &Bound<'_, PyString>) -> PyResult<u32> {
    // a str that is not valid UTF-8 (lone surrogates) raises, as str.encode() does
    Ok(field_fingerprint(name.to_str()?))
}

/// Registers `field_fingerprint`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_field_fingerprint, m)?)?;
    Ok(())
}
