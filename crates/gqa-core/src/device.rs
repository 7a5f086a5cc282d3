//! Where a model's parameters live and in which dtype ([`Placement`]): the CPU in f32 (the
//! default: the fused kernels), or any candle device, such as a CUDA GPU (cargo feature `cuda`),
//! in f32 or, for inference, bf16. The compute engine follows from the placement
//! ([`crate::compute::Engine::select`]); nothing else asks where a model lives.

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The device kind of [`PlacementOptions`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// Host memory; f32 on it runs the fused SIMD kernels.
    #[default]
    Cpu,
    /// An NVIDIA GPU through candle's CUDA backend (a build with the `cuda` feature).
    Cuda,
}

/// The parameters' dtype of [`PlacementOptions`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats: inference and training.
    #[default]
    F32,
    /// bfloat16 weights, for inference only: every matrix product reads bf16 weights and
    /// bf16-rounded inputs and returns f32; LayerNorm, softmax, rotary and the KV cache stay in
    /// f32. Results differ from f32 by about 1e-2 relative (8 mantissa bits).
    Bf16,
}

/// Placement options as the bindings receive them: `{device?: "cpu" | "cuda", ordinal?: n,
/// dtype?: "f32" | "bf16"}` (TypeScript names; every field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PlacementOptions {
    /// The device kind (default `cpu`).
    pub device: DeviceKind,
    /// Which GPU (CUDA device index, default 0); ignored on the CPU.
    pub ordinal: usize,
    /// The parameters' dtype (default `f32`).
    pub dtype: Precision,
}

impl PlacementOptions {
    /// Parses placement options given as a structured value (`Value::Null` = the defaults).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the field (`device`, `ordinal`, `dtype`).
    pub fn from_value(value: serde_json::Value) -> Result<Self> {
        crate::config::parse_value(value, "placement", "", "one of device, ordinal, dtype")
    }
}

/// A device and the parameters' dtype on it: where [`crate::GqaModel::placed`] and
/// [`crate::train::TaskModel::placed`] put a model.
#[derive(Debug, Clone)]
pub struct Placement {
    device: Device,
    dtype: DType,
}

impl Default for Placement {
    fn default() -> Self {
        Self::cpu()
    }
}

impl Placement {
    /// The CPU in f32 (the fused kernels).
    pub fn cpu() -> Self {
        Placement {
            device: Device::Cpu,
            dtype: DType::F32,
        }
    }

    /// Opens the device the options name.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the device and candle's reason when it cannot be opened: a
    /// build without the `cuda` feature, no CUDA device at `ordinal`, or a driver error.
    pub fn open(opts: &PlacementOptions) -> Result<Self> {
        let device = match opts.device {
            DeviceKind::Cpu => Device::Cpu,
            DeviceKind::Cuda => Device::new_cuda(opts.ordinal)
                .map_err(|e| Error::Backend(format!("cannot open cuda:{}: {e}", opts.ordinal)))?,
        };
        let dtype = match opts.dtype {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
        };
        Ok(Placement { device, dtype })
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The parameters' dtype (`F32` or `BF16`).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// A short description: `cpu`, `cuda:0`, `cuda:0 bf16`.
    pub fn describe(&self) -> String {
        let dev = match self.device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".to_string(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        };
        match self.dtype {
            DType::F32 => dev,
            d => format!("{dev} {}", d.as_str()),
        }
    }

    /// Whether this is the CPU in f32 (models there are used as they are, without a copy).
    pub fn is_cpu_f32(&self) -> bool {
        self.device.is_cpu() && self.dtype == DType::F32
    }
}

/// The process-wide placement of models the bindings build and load (the CPU in f32 until
/// [`set_current`]).
static CURRENT: std::sync::RwLock<Option<Placement>> = std::sync::RwLock::new(None);

/// The placement the bindings put new models and layers on.
pub fn current() -> Placement {
    CURRENT
        .read()
        .map(|p| p.clone().unwrap_or_default())
        .unwrap_or_default()
}

/// Opens the device of `opts` and makes it the [`current`] placement; returns its
/// [`Placement::describe`]. Models already built stay where they are.
///
/// # Errors
/// As [`Placement::open`]; the current placement is then unchanged.
pub fn set_current(opts: &PlacementOptions) -> Result<String> {
    let p = Placement::open(opts)?;
    let description = p.describe();
    if let Ok(mut slot) = CURRENT.write() {
        *slot = Some(p);
    }
    Ok(description)
}

/// Refuses training on parameters of a dtype other than f32.
///
/// # Errors
/// [`Error::InvalidOption`] naming `dtype` (expected `"f32"` for training).
pub fn check_trainable(dtype: DType) -> Result<()> {
    if dtype == DType::F32 {
        Ok(())
    } else {
        Err(Error::option(
            "dtype",
            "\"f32\" to train (bf16 is for inference)",
            format!("\"{}\"", dtype.as_str()),
        ))
    }
}
