//! # gqa-core
//!
//! The maths of `Edifice.Attention.GQA` (grouped-query-attention transformer, Ainslie et al.,
//! 2023, "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
//! Checkpoints") on candle tensors: options and validation, rotary embeddings, the attention
//! layer, the pre-norm block, the model, safetensors weights, the KV cache and training.
//!
//! The exact contract is the project's `SPEC.md`; each module cites the section it implements.

#![warn(missing_docs)]

pub mod config;
pub mod error;

pub use config::{recommended_defaults, GqaConfig, OutputMode, RecommendedDefaults};
pub use error::{Error, Result};
