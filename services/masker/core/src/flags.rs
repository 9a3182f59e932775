//! A node's bits, as `services/masker/sensitivity.py` defines them (the Python
//! module re-exports these values from the core; tests check they agree).
pub const F_BLOCK: u64 = 1 << 0; // blocked subtree: nothing inside is kept
pub const F_MASK: u64 = 1 << 1; // text, text attributes and input values masked
pub const F_MASK_INPUT: u64 = 1 << 2; // input values masked (sensitive field or inside one)
pub const F_IGNORE: u64 = 1 << 3; // input events dropped, values masked
pub const F_INPUT_TEXT: u64 = 1 << 4; // form content text (textarea, select, contenteditable)
pub const F_STYLE_ELEMENT: u64 = 1 << 5;
pub const F_SCRIPT_ELEMENT: u64 = 1 << 6;
pub const F_CSS_TEXT: u64 = 1 << 7;
pub const F_SCRIPT_TEXT: u64 = 1 << 8;
pub const NOT_INHERITED: u64 = F_STYLE_ELEMENT | F_SCRIPT_ELEMENT | F_CSS_TEXT | F_SCRIPT_TEXT;
pub const CONTEXT_SHIFT: u32 = 10;
pub const FLAG_BITS: u64 = (1 << CONTEXT_SHIFT) - 1;
/// Keeps stored ints JSON-safe (< 2**53): selectors beyond this ignore their ancestors.
pub const MAX_CONTEXT_BITS: u32 = 40;
/// A node the masker never saw: mask its text and values, but do not drop it.
pub const UNKNOWN_NODE: u64 = F_MASK | F_MASK_INPUT;
