//! The ordered set of model parameters (SPEC section 3 names) as candle [`Var`]s, built from
//! the parameter table ([`crate::layout`]).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};

use crate::error::{Error, Result};
use crate::init::glorot_uniform;
use crate::layout::{Init, ParamSpec};

/// Parameters in canonical order (SPEC section 3), each a candle [`Var`] so training can take
/// gradients and update them in place (the layers hold clones of the same `Var`s, so
/// `Var::set` on an entry here changes the model).
#[derive(Debug, Clone, Default)]
pub struct ParamStore {
    entries: Vec<(ParamSpec, Var)>,
    /// Name -> position; ordered so that [`ParamStore::sub`] finds a prefix's names by range
    /// (linear model building, not a scan of every entry per block).
    index: BTreeMap<String, usize>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates every parameter of `layout` (a table of [`crate::layout`]) on `device`, in its
    /// order: Glorot-uniform from (`seed`, the row's stream), zeros or ones (SPEC section 3).
    ///
    /// # Errors
    /// [`Error::Internal`] for a repeated name or a Glorot row that is not 2-D (a table bug);
    /// [`Error::Backend`] from candle.
    pub fn init(layout: &[ParamSpec], seed: u64, device: &Device) -> Result<Self> {
        let mut store = ParamStore::new();
        for spec in layout {
            let var = match spec.init {
                Init::GlorotUniform => {
                    let &[out, inp] = spec.shape.as_slice() else {
                        return Err(Error::Internal(format!(
                            "Glorot init of `{}` needs a 2-D shape, got {:?}",
                            spec.name, spec.shape
                        )));
                    };
                    Var::from_vec(
                        glorot_uniform(seed, spec.stream, out, inp),
                        (out, inp),
                        device,
                    )?
                }
                Init::Zeros => Var::zeros(spec.shape.as_slice(), DType::F32, device)?,
                Init::Ones => Var::ones(spec.shape.as_slice(), DType::F32, device)?,
            };
            store.push(spec.clone(), var)?;
        }
        Ok(store)
    }

    fn push(&mut self, spec: ParamSpec, var: Var) -> Result<()> {
        if self.index.contains_key(&spec.name) {
            return Err(Error::Internal(format!(
                "duplicate parameter name `{}`",
                spec.name
            )));
        }
        self.index.insert(spec.name.clone(), self.entries.len());
        self.entries.push((spec, var));
        Ok(())
    }

    /// The parameters whose names start with `prefix`, renamed without it (the same `Var`s, so
    /// the two stores share storage): the attention layer of block `l` is
    /// `sub("blocks.{l}.attn.")`.
    ///
    /// # Errors
    /// [`Error::Internal`] on a repeated name (cannot happen for a prefix of unique names).
    pub fn sub(&self, prefix: &str) -> Result<Self> {
        let mut store = ParamStore::new();
        let mut found: Vec<usize> = self
            .index
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, &i)| i)
            .collect();
        found.sort_unstable();
        for (spec, var) in found.into_iter().map(|i| &self.entries[i]) {
            if let Some(rest) = spec.name.strip_prefix(prefix) {
                store.push(
                    ParamSpec {
                        name: rest.to_string(),
                        ..spec.clone()
                    },
                    var.clone(),
                )?;
            }
        }
        Ok(store)
    }

    /// The table rows, in canonical order.
    pub fn specs(&self) -> impl Iterator<Item = &ParamSpec> {
        self.entries.iter().map(|(s, _)| s)
    }

    /// The parameter called `name` (canonical name).
    ///
    /// # Errors
    /// [`Error::MissingParameter`] when there is no such parameter.
    pub fn get(&self, name: &str) -> Result<&Var> {
        self.index
            .get(name)
            .map(|&i| &self.entries[i].1)
            .ok_or_else(|| Error::MissingParameter {
                name: name.into(),
                looked_for: "the model's parameter names".into(),
            })
    }

    /// `(name, var)` pairs in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.entries.iter().map(|(s, v)| (s.name.as_str(), v))
    }

    /// Names in canonical order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(s, _)| s.name.as_str()).collect()
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

    /// Detached copies of the current values as f32 on the CPU, in canonical order (for saving
    /// or comparing; parameters there already are returned without a copy).
    ///
    /// # Errors
    /// [`Error::Backend`] from the device-to-host copy.
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.entries
            .iter()
            .map(|(s, v)| {
                let t = v.as_detached_tensor();
                Ok((
                    s.name.clone(),
                    t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?,
                ))
            })
            .collect()
    }

    /// What `placed` of a model or layer on `current` needs: `None` when `placement` is the
    /// CPU in f32 and these f32 parameters are already there (used as they are), else their
    /// copies on the placement and the engine that computes them there.
    ///
    /// # Errors
    /// [`Error::Backend`] from the device (allocation, copy).
    pub(crate) fn for_placement(
        &self,
        current: &Device,
        placement: &crate::device::Placement,
    ) -> Result<Option<(Self, crate::compute::Engine)>> {
        let all_f32 = self.iter().all(|(_, v)| v.dtype() == DType::F32);
        if placement.is_cpu_f32() && current.is_cpu() && all_f32 {
            return Ok(None);
        }
        let params = self.placed(placement.device(), placement.dtype())?;
        let engine = crate::compute::Engine::for_params(placement.device(), &params);
        Ok(Some((params, engine)))
    }

    /// The same parameters (names, order, values) copied to `device` as `dtype`: new `Var`s, so
    /// training the copy leaves this store unchanged.
    ///
    /// # Errors
    /// [`Error::Backend`] from the device (allocation, copy).
    pub fn placed(&self, device: &Device, dtype: DType) -> Result<Self> {
        let mut store = ParamStore::new();
        for (spec, v) in &self.entries {
            let t = v.as_tensor().to_dtype(dtype)?.to_device(device)?;
            store.push(spec.clone(), Var::from_tensor(&t)?)?;
        }
        Ok(store)
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
            let data = v
                .as_detached_tensor()
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
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
