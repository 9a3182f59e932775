//! What each rule masked, by rule name: the Rust side of the Python
//! `Counter[str]` that `MaskResult.counts` and the scrubbers fill.
use std::borrow::Cow;
use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Counts per rule name (`pii_email`, `token_<format>`, `mask`...).
#[derive(Debug, Default, Clone)]
pub struct Counts {
    by_rule: HashMap<Cow<'static, str>, u64>,
    total: u64,
}

impl Counts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` to `rule` (a static name, or an owned one such as `token_<format>`).
    pub fn add(&mut self, rule: impl Into<Cow<'static, str>>, n: u64) {
        if n == 0 {
            return;
        }
        *self.by_rule.entry(rule.into()).or_insert(0) += n;
        self.total += n;
    }

    /// Adds one to `rule`.
    pub fn inc(&mut self, rule: &'static str) {
        self.add(rule, 1);
    }

    /// The sum of all counts (as `Counter.total()`).
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn get(&self, rule: &str) -> u64 {
        self.by_rule.get(rule).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.by_rule.iter().map(|(k, v)| (k.as_ref(), *v))
    }

    /// Adds every count into another.
    pub fn merge(&mut self, other: &Counts) {
        for (rule, n) in other.iter() {
            self.add(Cow::Owned(rule.to_owned()), n);
        }
    }

    /// Adds every count into a Python `Counter` (or any dict of ints), as
    /// `counter[rule] += n` would.
    pub fn add_to_py(&self, counter: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.total == 0 {
            return Ok(());
        }
        if let Ok(dict) = counter.cast::<PyDict>() {
            for (rule, n) in self.iter() {
                let old: u64 = match dict.get_item(rule)? {
                    Some(v) => v.extract()?,
                    None => 0,
                };
                dict.set_item(rule, old + n)?;
            }
            return Ok(());
        }
        for (rule, n) in self.iter() {
            let old: u64 = counter.get_item(rule).and_then(|v| v.extract()).unwrap_or(0);
            counter.set_item(rule, old + n)?;
        }
        Ok(())
    }
}
