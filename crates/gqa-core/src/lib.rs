//! # gqa-core
//!
//! The maths of `Edifice.Attention.GQA` (grouped-query-attention transformer, Ainslie et al.,
//! 2023, "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
//! Checkpoints") on candle tensors: options and validation, rotary embeddings, the attention
//! layer, the pre-norm block, the model, safetensors weights, the KV cache and training.
//!
//! The exact contract is the project's `SPEC.md`; each module cites the section it implements.

#![warn(missing_docs)]
#![warn(clippy::too_many_lines)]

pub mod attention;
pub mod block;
pub mod compute;
pub mod config;
pub mod device;
pub mod dropout;
pub mod error;
pub mod hf_config;
pub mod init;
mod input;
pub mod inspect;
pub mod kernels;
pub mod layout;
pub mod mask;
pub mod memory;
pub mod model;
pub mod nn;
pub mod onnx;
pub mod params;
pub mod rope;
pub mod schema;
pub mod session;
pub mod testing;
pub mod train;
pub mod weights;

pub use attention::{AttentionConfig, GqaAttention};
pub use block::GqaBlock;
/// The tensor crate the model is built on (re-exported so callers use the same version).
pub use candle_core;
pub use config::{
    recommended_defaults, to_value, DeprecatedName, GqaConfig, OutputMode, RecommendedDefaults,
    DEPRECATED_OPTION_NAMES,
};
pub use device::{Placement, PlacementOptions};
pub use dropout::Dropout;
pub use error::{error_catalog_value, Error, ErrorField, Result, ERROR_CATALOG};
pub use input::position_offset;
pub use mask::Mask;
pub use model::GqaModel;
pub use onnx::{InputTransform, OnnxOptions};
pub use params::ParamStore;
pub use rope::Rotary;
pub use session::Session;
pub use weights::{read_metadata, read_tensors, LoadOptions};
