//! The one error type of the crate.
//!
//! Every variant names the thing that was wrong (an option, a tensor, an input), what was
//! expected and what was found. [`Error::code`] gives a stable string that both bindings and the
//! TypeScript API expose unchanged (`GqaError.code`), so callers can branch on it.

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a public entry point of `gqa-core` can fail.
///
/// Nothing in the crate panics on user input: bad options, bad shapes, bad files and sizes
/// that would not fit in memory all come back as one of these variants.
#[derive(Debug, Clone, PartialEq, thiserror::Error, schemars::JsonSchema)]
pub enum Error {
    /// A model option broke its rule (SPEC section 1), e.g. `numHeads=7` with `numKvHeads=2`.
    #[error("invalid option `{option}`: expected {expected}, found {found}")]
    InvalidOption {
        /// The option's TypeScript name (`numKvHeads`, `hiddenSize`, ...).
        option: String,
        /// The rule it must satisfy.
        expected: String,
        /// The value given.
        found: String,
    },

    /// An input buffer, its dims or its per-sequence lengths do not fit the model.
    #[error("invalid input `{what}`: expected {expected}, found {found}")]
    InvalidInput {
        /// Which input (`input`, `dims`, `lengths[2]`, ...).
        what: String,
        /// What the model needs.
        expected: String,
        /// What was given.
        found: String,
    },

    /// A weight tensor has the wrong shape or dtype.
    #[error("tensor `{name}` has the wrong {field}: expected {expected}, found {found}")]
    TensorMismatch {
        /// The tensor's name as found in the file.
        name: String,
        /// `shape` or `dtype`.
        field: String,
        /// The expected shape or dtype.
        expected: String,
        /// The shape or dtype in the file.
        found: String,
    },

    /// A model parameter is not in the weight file.
    #[error("missing parameter `{name}` (looked for {looked_for})")]
    MissingParameter {
        /// Canonical name of the parameter.
        name: String,
        /// The key(s) searched for, with prefix and naming scheme applied.
        looked_for: String,
    },

    /// Strict loading found a tensor that is not a model parameter.
    #[error("unexpected tensor `{name}` under strict loading: expected only model parameters")]
    UnexpectedParameter {
        /// The tensor's key in the file.
        name: String,
    },

    /// A weight holds NaN or infinity.
    #[error("tensor `{name}` holds a non-finite value at flat index {index}: expected finite values, found {value}")]
    NonFiniteWeight {
        /// The tensor's name.
        name: String,
        /// Flat index of the first bad value.
        index: usize,
        /// The value, printed (`NaN`, `inf`, `-inf`).
        value: String,
    },

    /// The bytes are not a readable safetensors file (truncated, bad header, bad JSON...).
    #[error("malformed safetensors file: {reason}")]
    MalformedFile {
        /// What the parser reported.
        reason: String,
    },

    /// A file without config metadata was loaded without a config from the caller.
    #[error("missing config: {reason}")]
    MissingConfig {
        /// Why the config is needed and how to pass it.
        reason: String,
    },

    /// A buffer the request needs would take the crate's memory past its limit
    /// ([`crate::memory`]): nothing was allocated.
    #[error("out of memory for `{what}`: needs {requested} bytes, limit is {limit} bytes with {in_use} bytes in use")]
    OutOfMemory {
        /// The buffer (`parameters`, `attention scores`, `kv cache`...).
        what: String,
        /// Bytes it would take (saturated at `u64::MAX` on overflow).
        requested: u64,
        /// The limit it broke ([`crate::memory::limit`]).
        limit: u64,
        /// Bytes held by live models, sessions and running calls when it was refused.
        in_use: u64,
    },

    /// A KV-cache session has no room for the pushed positions.
    #[error("kv cache full for `{what}`: capacity {capacity} positions, cached {cached}, pushed {pushed}")]
    CacheFull {
        /// Which sequence (row) overflowed.
        what: String,
        /// Capacity in positions (`maxLen`).
        capacity: usize,
        /// Positions already cached.
        cached: usize,
        /// Positions in the rejected chunk.
        pushed: usize,
    },

    /// An object was used after its owner freed it (`dispose()` in JavaScript): the bindings'
    /// handles to models, sessions, trainers and attention layers report this.
    #[error("the {what} was disposed: expected a live {what}, found one freed by dispose()")]
    Disposed {
        /// The kind of object (`model`, `session`, `trainer`, `attention layer`).
        what: String,
    },

    /// An error raised by the tensor backend (candle).
    #[error("backend error: {0}")]
    Backend(String),

    /// A bug: a panic caught at a binding boundary, or an invariant that failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Stable code for the variant, shared by the bindings and the TypeScript `GqaError.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidOption { .. } => "INVALID_OPTION",
            Error::InvalidInput { .. } => "INVALID_INPUT",
            Error::TensorMismatch { .. } => "TENSOR_MISMATCH",
            Error::MissingParameter { .. } => "MISSING_PARAMETER",
            Error::UnexpectedParameter { .. } => "UNEXPECTED_PARAMETER",
            Error::NonFiniteWeight { .. } => "NON_FINITE_WEIGHT",
            Error::MalformedFile { .. } => "MALFORMED_FILE",
            Error::MissingConfig { .. } => "MISSING_CONFIG",
            Error::OutOfMemory { .. } => "OUT_OF_MEMORY",
            Error::CacheFull { .. } => "CACHE_FULL",
            Error::Disposed { .. } => "DISPOSED",
            Error::Backend(_) => "BACKEND",
            Error::Internal(_) => "INTERNAL",
        }
    }

    /// The variant's fields, as the bindings set them on the JS error object (`e.option`,
    /// `e.expected`, `e.found`, ...): Rust field names in camelCase (`looked_for` ->
    /// `lookedFor`, `in_use` -> `inUse`), except that a tensor's `name` is `tensor` (and a
    /// missing parameter's, `parameter`: `name` is taken by JS errors), and `detail` holds the
    /// message of [`Error::Backend`] and [`Error::Internal`]. The names for each code are
    /// [`ERROR_CATALOG`]'s.
    pub fn fields(&self) -> Vec<(&'static str, ErrorField)> {
        use ErrorField::{Num, Str};
        let s = |v: &String| Str(v.clone());
        match self {
            Error::InvalidOption {
                option,
                expected,
                found,
            } => {
                vec![
                    ("option", s(option)),
                    ("expected", s(expected)),
                    ("found", s(found)),
                ]
            }
            Error::InvalidInput {
                what,
                expected,
                found,
            } => vec![
                ("what", s(what)),
                ("expected", s(expected)),
                ("found", s(found)),
            ],
            Error::TensorMismatch {
                name,
                field,
                expected,
                found,
            } => {
                vec![
                    ("tensor", s(name)),
                    ("field", s(field)),
                    ("expected", s(expected)),
                    ("found", s(found)),
                ]
            }
            Error::MissingParameter { name, looked_for } => {
                vec![("parameter", s(name)), ("lookedFor", s(looked_for))]
            }
            Error::UnexpectedParameter { name } => vec![("tensor", s(name))],
            Error::NonFiniteWeight { name, index, value } => vec![
                ("tensor", s(name)),
                ("index", Num(*index as u64)),
                ("value", s(value)),
            ],
            Error::MalformedFile { reason } | Error::MissingConfig { reason } => {
                vec![("reason", s(reason))]
            }
            Error::OutOfMemory {
                what,
                requested,
                limit,
                in_use,
            } => {
                vec![
                    ("what", s(what)),
                    ("requested", Num(*requested)),
                    ("limit", Num(*limit)),
                    ("inUse", Num(*in_use)),
                ]
            }
            Error::CacheFull {
                what,
                capacity,
                cached,
                pushed,
            } => vec![
                ("what", s(what)),
                ("capacity", Num(*capacity as u64)),
                ("cached", Num(*cached as u64)),
                ("pushed", Num(*pushed as u64)),
            ],
            Error::Disposed { what } => vec![("what", s(what))],
            Error::Backend(detail) | Error::Internal(detail) => vec![("detail", s(detail))],
        }
    }

    /// Shorthand for [`Error::Disposed`].
    pub fn disposed(what: &str) -> Self {
        Error::Disposed { what: what.into() }
    }

    /// Shorthand for [`Error::InvalidOption`]; `expected` and `found` are put in JavaScript
    /// terms ([`js_expected`], [`js_found`]).
    pub fn option(option: &str, expected: impl Into<String>, found: impl ToString) -> Self {
        Error::InvalidOption {
            option: option.into(),
            expected: js_expected(&expected.into()),
            found: js_found(&found.to_string()),
        }
    }

    /// Shorthand for [`Error::InvalidInput`]; `expected` and `found` are put in JavaScript
    /// terms ([`js_expected`], [`js_found`]).
    pub fn input(
        what: impl Into<String>,
        expected: impl Into<String>,
        found: impl ToString,
    ) -> Self {
        Error::InvalidInput {
            what: what.into(),
            expected: js_expected(&expected.into()),
            found: js_found(&found.to_string()),
        }
    }

    /// Turns a caught panic payload (from `std::panic::catch_unwind`) into [`Error::Internal`].
    pub fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let msg = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "unknown panic".to_string()
        };
        Error::Internal(format!("panic caught at the binding boundary: {msg}"))
    }
}

/// An expectation in JavaScript terms, as every [`Error::InvalidOption`] and
/// [`Error::InvalidInput`] states it: serde's Rust type names become the JS type
/// (`usize` -> `a non-negative integer`, `u32` -> `an integer in [0, 4294967295]`, `f64` -> `a
/// number`, `a sequence` -> `an array`, `a map` / `struct X` -> `an object`, `internally tagged
/// enum X` -> ``an object with a `type` field``), and Rust ranges become intervals (`0..3` ->
/// `[0, 3)`, `1..=8` -> `[1, 8]`). Other text is kept.
pub fn js_expected(expected: &str) -> String {
    let unsigned_max = |bits: u32| format!("an integer in [0, {}]", (1u128 << bits) - 1);
    let signed = |bits: u32| {
        format!(
            "an integer in [-{}, {}]",
            1u128 << (bits - 1),
            (1u128 << (bits - 1)) - 1
        )
    };
    match expected {
        "usize" | "u64" | "u128" => return "a non-negative integer".into(),
        "u8" => return unsigned_max(8),
        "u16" => return unsigned_max(16),
        "u32" => return unsigned_max(32),
        "i8" => return signed(8),
        "i16" => return signed(16),
        "i32" => return signed(32),
        "isize" | "i64" | "i128" => return "an integer".into(),
        "f32" | "f64" => return "a number".into(),
        "a borrowed string" | "a character" | "char" => return "a string".into(),
        "a sequence" => return "an array".into(),
        "a map" | "unit" => {
            return if expected == "unit" {
                "null".into()
            } else {
                "an object".into()
            }
        }
        _ => {}
    }
    if expected.starts_with("struct ") {
        return "an object".into();
    }
    if expected.starts_with("internally tagged enum ") {
        return "an object with a `type` field".into();
    }
    if let Some(n) = expected
        .strip_prefix("a tuple of size ")
        .or_else(|| expected.strip_prefix("an array of length "))
    {
        return format!("an array of {n} values");
    }
    js_ranges(expected)
}

/// Rewrites each Rust range between integers in `s` as an interval: `lo..hi` -> `[lo, hi)`,
/// `lo..=hi` -> `[lo, hi]`.
fn js_ranges(s: &str) -> String {
    let digits_end = |t: &str| {
        let b = t.as_bytes();
        let mut i = usize::from(b.first() == Some(&b'-'));
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        (i > start).then_some(i)
    };
    let mut out = String::with_capacity(s.len() + 4);
    let mut rest = s;
    while let Some(at) = rest.find("..") {
        // The lower bound: the digits (and a sign) just before "..", at a word start.
        let head = &rest[..at];
        let lo_start = head
            .rfind(|c: char| !(c.is_ascii_digit() || c == '-'))
            .map_or(0, |i| i + 1);
        let lo = &head[lo_start..];
        // A number inside a word or a decimal (`x1..`, `1e-3..`, `0.5..`) is no range bound.
        let bounded = !head[..lo_start].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '.');
        let after = &rest[at + 2..];
        let (inclusive, after) = match after.strip_prefix('=') {
            Some(a) => (true, a),
            None => (false, after),
        };
        match (
            digits_end(lo).filter(|&e| e == lo.len() && bounded),
            digits_end(after),
        ) {
            (Some(_), Some(hi_end)) => {
                out.push_str(&head[..lo_start]);
                out.push_str(&format!(
                    "[{lo}, {}{}",
                    &after[..hi_end],
                    if inclusive { "]" } else { ")" }
                ));
                rest = &after[hi_end..];
            }
            _ => {
                out.push_str(&rest[..at + 2]);
                rest = &rest[at + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A found value in JavaScript terms: serde's descriptions of what it read become the JS type
/// and value (``integer `3` `` -> `integer 3`, ``floating point `2.5` `` -> `number 2.5`,
/// ``boolean `true` `` -> `boolean true`, `sequence` -> `an array`, `map` -> `an object`, `unit
/// value` -> `null`); a whole serde message (`invalid type: X, expected Y`) keeps only `X`, so
/// translated. Other text is kept.
pub fn js_found(found: &str) -> String {
    let found = found
        .strip_prefix("invalid type: ")
        .or_else(|| found.strip_prefix("invalid value: "))
        .map_or(found, |f| f.split_once(", expected ").map_or(f, |(x, _)| x));
    let unquote = |t: &str| {
        t.strip_prefix('`')
            .and_then(|t| t.strip_suffix('`'))
            .map(str::to_string)
    };
    if let Some(v) = found.strip_prefix("integer ").and_then(unquote) {
        return format!("integer {v}");
    }
    if let Some(v) = found.strip_prefix("floating point ").and_then(unquote) {
        return format!("number {v}");
    }
    if let Some(v) = found.strip_prefix("boolean ").and_then(unquote) {
        return format!("boolean {v}");
    }
    match found {
        "sequence" => "an array".into(),
        "map" => "an object".into(),
        "unit value" => "null".into(),
        _ => found.into(),
    }
}

/// The value of one field of an [`Error`] ([`Error::fields`]): a string, or a count / byte size
/// (a JS number; exact below 2^53).
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorField {
    /// Text: an option or tensor name, an expected rule, a found value.
    Str(String),
    /// A count, an index or a size in bytes.
    Num(u64),
}

/// Every error code with the names of its fields, in the order [`Error::fields`] gives them: the
/// one source of the TypeScript `CoreErrorCode` union and its field types (`ts/errors.ts` is
/// checked against this list by `test/errors.test.ts`, through the bindings' `errorCatalog()`).
/// Numeric fields are `requested`, `limit`, `inUse`, `index`, `capacity`, `cached`, `pushed`.
pub const ERROR_CATALOG: &[(&str, &[&str])] = &[
    ("INVALID_OPTION", &["option", "expected", "found"]),
    ("INVALID_INPUT", &["what", "expected", "found"]),
    ("TENSOR_MISMATCH", &["tensor", "field", "expected", "found"]),
    ("MISSING_PARAMETER", &["parameter", "lookedFor"]),
    ("UNEXPECTED_PARAMETER", &["tensor"]),
    ("NON_FINITE_WEIGHT", &["tensor", "index", "value"]),
    ("MALFORMED_FILE", &["reason"]),
    ("MISSING_CONFIG", &["reason"]),
    ("OUT_OF_MEMORY", &["what", "requested", "limit", "inUse"]),
    ("CACHE_FULL", &["what", "capacity", "cached", "pushed"]),
    ("DISPOSED", &["what"]),
    ("BACKEND", &["detail"]),
    ("INTERNAL", &["detail"]),
];

/// [`ERROR_CATALOG`] as a value, `[{"code": "INVALID_OPTION", "fields": ["option", ...]}, ...]`
/// (what the bindings' `errorCatalog()` return).
pub fn error_catalog_value() -> serde_json::Value {
    ERROR_CATALOG
        .iter()
        .map(|(code, fields)| serde_json::json!({ "code": code, "fields": fields }))
        .collect()
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Backend(e.to_string())
    }
}

/// Checks that one buffer of `dims` f32 values could exist at all: its byte size must fit under
/// [`crate::memory::limit`] (and so, on wasm32, under the 4 GiB address space). Live use is
/// checked separately, by the reservations of [`crate::memory`].
///
/// # Errors
/// [`Error::OutOfMemory`] naming `what` when the product overflows or exceeds the limit.
pub fn check_f32_buffer(what: &str, dims: &[usize]) -> Result<usize> {
    let bytes = crate::memory::f32_bytes(dims);
    let limit = crate::memory::limit();
    if bytes > limit || bytes > crate::memory::MAX_BUFFER_BYTES {
        return Err(Error::OutOfMemory {
            what: what.into(),
            requested: bytes,
            // The bound it broke: the budget, else the per-buffer bound (isize::MAX).
            limit: if bytes > limit {
                limit
            } else {
                crate::memory::MAX_BUFFER_BYTES
            },
            in_use: crate::memory::in_use(),
        });
    }
    Ok((bytes / 4) as usize)
}

impl Error {
    /// One value of every variant, in [`ERROR_CATALOG`] order (placeholder values). The `match`
    /// has no wildcard arm, so a new variant does not compile until it is added here; the
    /// catalog test and the generated error catalog (`schema/errors.json`, see
    /// [`crate::schema::error_catalog`]) read the field types from these.
    pub fn samples() -> Vec<Error> {
        let all = vec![
            Error::option("numHeads", "a multiple of numKvHeads", 7),
            Error::input("dims", "[B, T, E]", "[1]"),
            Error::TensorMismatch {
                name: "a".into(),
                field: "shape".into(),
                expected: "[1]".into(),
                found: "[2]".into(),
            },
            Error::MissingParameter {
                name: "a".into(),
                looked_for: "b".into(),
            },
            Error::UnexpectedParameter { name: "a".into() },
            Error::NonFiniteWeight {
                name: "a".into(),
                index: 3,
                value: "NaN".into(),
            },
            Error::MalformedFile { reason: "r".into() },
            Error::MissingConfig { reason: "r".into() },
            Error::OutOfMemory {
                what: "w".into(),
                requested: 1,
                limit: 2,
                in_use: 3,
            },
            Error::CacheFull {
                what: "w".into(),
                capacity: 1,
                cached: 2,
                pushed: 3,
            },
            Error::disposed("model"),
            Error::Backend("b".into()),
            Error::Internal("i".into()),
        ];
        for e in &all {
            match e {
                Error::InvalidOption { .. }
                | Error::InvalidInput { .. }
                | Error::TensorMismatch { .. }
                | Error::MissingParameter { .. }
                | Error::UnexpectedParameter { .. }
                | Error::NonFiniteWeight { .. }
                | Error::MalformedFile { .. }
                | Error::MissingConfig { .. }
                | Error::OutOfMemory { .. }
                | Error::CacheFull { .. }
                | Error::Disposed { .. }
                | Error::Backend(_)
                | Error::Internal(_) => {}
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_lists_every_variant_with_its_fields() {
        let all = Error::samples();
        assert_eq!(
            all.len(),
            ERROR_CATALOG.len(),
            "one catalog entry per variant"
        );
        for (e, (code, fields)) in all.iter().zip(ERROR_CATALOG) {
            assert_eq!(e.code(), *code);
            let names: Vec<&str> = e.fields().iter().map(|(k, _)| *k).collect();
            assert_eq!(names, *fields, "fields of {code}");
        }
        let numeric: Vec<&str> = all
            .iter()
            .flat_map(|e| e.fields())
            .filter(|(_, v)| matches!(v, ErrorField::Num(_)))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            numeric,
            [
                "index",
                "requested",
                "limit",
                "inUse",
                "capacity",
                "cached",
                "pushed"
            ]
        );
    }

    #[test]
    fn catalog_value_lists_each_code_with_its_fields() {
        let v = error_catalog_value();
        assert_eq!(v[0]["code"], "INVALID_OPTION");
        assert_eq!(v[0]["fields"][2], "found");
        assert_eq!(v.as_array().unwrap().len(), ERROR_CATALOG.len());
    }
}
