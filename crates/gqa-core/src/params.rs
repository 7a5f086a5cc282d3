//! The ordered set of model parameters (SPEC section 3 names) as candle [`Var`]s.

use std::collections::HashMap;

use candle_core::{Tensor, Var};

use crate::error::{Error, Result};

/// Parameters in canonical order (SPEC section 3), each a candle [`Var`] so training can take
/// gradients and update them in place (the layers hold clones of the same `Var`s, so
/// `Var::set` on an entry here changes the model).
#[derive(Debug, Clone, Default)]
pub struct ParamStore {
    entries: Vec<(String, Var)>,
    index: HashMap<String, usize>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a parameter (canonical order is insertion order).
    ///
    /// # Errors
    /// [`Error::Internal`] if the name is already present.
    pub fn push(&mut self, name: impl Into<String>, var: Var) -> Result<()> {
        let name = name.into();
        if self.index.contains_key(&name) {
            return Err(Error::Internal(format!("duplicate parameter name `{name}`")));
        }
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push((name, var));
        Ok(())
    }

    /// The parameter called `name` (canonical name).
    ///
    /// # Errors
    /// [`Error::MissingParameter`] when there is no such parameter.
    pub fn get(&self, name: &str) -> Result<&Var> {
        self.index
            .get(name)
            .map(|&i| &self.entries[i].1)
            .ok_or_else(|| Error::MissingParameter { name: name.into(), looked_for: "the model's parameter names".into() })
    }

    /// `(name, var)` pairs in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Names in canonical order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Number of parameters (tensors).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of scalar elements over every parameter.
    pub fn total_elements(&self) -> usize {
        self.entries.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Detached copies of the current values, in canonical order (for saving or comparing).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.entries.iter().map(|(n, v)| (n.clone(), v.as_detached_tensor())).collect()
    }

    /// FNV-1a (64-bit) over the little-endian bytes of every f32 value of every parameter, in
    /// canonical order. Two stores with the same digest hold (with overwhelming likelihood)
    /// bitwise the same weights; the bindings use it to compare native and wasm builds.
    ///
    /// # Errors
    /// [`Error::Backend`] if a value cannot be read back as f32.
    pub fn digest(&self) -> Result<u64> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (_, v) in &self.entries {
            let data = v.as_detached_tensor().flatten_all()?.to_vec1::<f32>()?;
            for x in data {
                for byte in x.to_bits().to_le_bytes() {
                    h ^= byte as u64;
                    h = h.wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
        }
        Ok(h)
    }
}
