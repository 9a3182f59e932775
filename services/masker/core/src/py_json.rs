//! Python objects read as [`Json`] for the Python faces of the rules
//! (`ElementRules.element_value(tag, attrs)`, `compound_matches`...), so the
//! rules have one implementation, on the walk's own values.
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use std::borrow::Cow;

use crate::json_doc::{Json, Str};

/// An attribute dict as the rules read it. A key that is not a `str` is left
/// out (it never equals an attribute name); a string with lone surrogates is
/// read with U+FFFD in their place, as the rules always read Python strings.
pub fn py_attrs(attrs: &Bound<'_, PyDict>) -> PyResult<Vec<(Str<'static>, Json<'static>)>> {
    let mut pairs = Vec::with_capacity(attrs.len());
    for (key, value) in attrs.iter() {
        let Ok(key) = key.cast::<PyString>() else {
            continue;
        };
        pairs.push((Cow::Owned(key.to_string_lossy().into_owned()), py_to_json(&value, 0, MAX_DEPTH)?));
    }
    Ok(pairs)
}

/// Attribute values nested deeper are read as an empty list (the rules read
/// attribute values, which are flat): no recursion without bound.
const MAX_DEPTH: usize = 64;

/// A Python value as JSON, containers nested past `max_depth` as an empty list.
/// Types JSON has no word for (only in hand-made dicts) become an empty list
/// too: what the rules ask of such a value (is it a string? is it None?) has
/// the same answer.
pub fn py_to_json(value: &Bound<'_, PyAny>, depth: usize, max_depth: usize) -> PyResult<Json<'static>> {
    if value.is_none() {
        return Ok(Json::Null);
    }
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(Json::Bool(b.is_true()));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Json::Str(Cow::Owned(s.to_string_lossy().into_owned())));
    }
    if value.is_instance_of::<PyInt>() {
        if let Ok(v) = value.extract::<i64>() {
            return Ok(Json::Int(v));
        }
        if let Ok(v) = value.extract::<u64>() {
            return Ok(Json::UInt(v));
        }
        return Ok(Json::Float(value.extract::<f64>().unwrap_or(f64::INFINITY)));
    }
    if let Ok(f) = value.cast::<PyFloat>() {
        return Ok(Json::Float(f.value()));
    }
    if depth >= max_depth {
        return Ok(Json::Array(Vec::new()));
    }
    if let Ok(d) = value.cast::<PyDict>() {
        let mut pairs = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            if let Ok(k) = k.cast::<PyString>() {
                pairs.push((Cow::Owned(k.to_string_lossy().into_owned()), py_to_json(&v, depth + 1, max_depth)?));
            }
        }
        return Ok(Json::Object(pairs));
    }
    if let Ok(l) = value.cast::<PyList>() {
        return l.iter().map(|v| py_to_json(&v, depth + 1, max_depth)).collect::<PyResult<_>>().map(Json::Array);
    }
    if let Ok(t) = value.cast::<PyTuple>() {
        return t.iter().map(|v| py_to_json(&v, depth + 1, max_depth)).collect::<PyResult<_>>().map(Json::Array);
    }
    Ok(Json::Array(Vec::new()))
}
