//! The standalone attention layer (mirrors `gqa_core::attention`). Shapes: `[B,T,H] -> [B,T,H]`.

use std::sync::Arc;

use crate::handle::Handle;

use gqa_core::{AttentionConfig, GqaAttention};
use napi::bindgen_prelude::{AsyncTask, Float32Array, Uint32Array, Uint8Array};
use napi::Env;
use napi_derive::napi;
use serde_json::Value;

use crate::error::guard;
use crate::model::ForwardTask;
use crate::tensor::{run, spawn, ForwardOutput};

/// A GQA attention layer (`q_proj`, `k_proj`, `v_proj`, `out_proj`) in native memory.
#[napi]
pub struct Attention {
    inner: Handle<GqaAttention>,
}

impl Attention {
    fn get(&self) -> gqa_core::Result<Arc<GqaAttention>> {
        self.inner.get("attention layer")
    }
}

#[napi]
impl Attention {
    /// Builds the layer from attention options. Errors: `INVALID_OPTION`.
    #[napi(factory)]
    pub fn build(env: Env, options: Value) -> napi::Result<Attention> {
        guard(&env, || {
            GqaAttention::new(AttentionConfig::from_value(options)?)?
                .placed(&gqa_core::device::current())
        })
        .map(|a| Attention {
            inner: Handle::new(a),
        })
    }

    /// Loads the layer from safetensors bytes and the load options
    /// (`{config?, hfConfig?, layer?, strict?, prefix?}`, see `GqaAttention::load_value`): a gqa
    /// file (`q_proj.weight`, ...) or, with `hfConfig` + `layer`, one decoder layer's
    /// `self_attn` of a Hugging Face checkpoint.
    #[napi(factory)]
    pub fn load(env: Env, bytes: Uint8Array, options: Value) -> napi::Result<Attention> {
        guard(&env, || {
            GqaAttention::load_value(&bytes, options)?.placed(&gqa_core::device::current())
        })
        .map(|a| Attention {
            inner: Handle::new(a),
        })
    }

    /// Forward pass on the calling thread. `dims = [B,T,H]`.
    #[napi]
    pub fn forward(
        &self,
        env: Env,
        data: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
        position_offset: Option<f64>,
    ) -> napi::Result<ForwardOutput> {
        let at = gqa_core::position_offset(position_offset);
        run(
            &env,
            self.get(),
            (&data, &dims, &lengths),
            move |a: &GqaAttention, x, d, l| a.forward_f32_at(x, d, l, at?),
        )
    }

    /// Forward pass on the libuv thread pool; the inputs are copied before this returns.
    #[napi(ts_return_type = "Promise<ForwardOutput>")]
    pub fn forward_async(
        &self,
        env: Env,
        data: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
        position_offset: Option<f64>,
    ) -> napi::Result<AsyncTask<ForwardTask>> {
        let at = gqa_core::position_offset(position_offset);
        spawn(
            &env,
            self.get(),
            (&data, &dims, &lengths),
            move |a: &GqaAttention, x, d, l| a.forward_f32_at(x, d, l, at?),
        )
    }

    /// The weights as safetensors bytes (`gqa_attention_config` metadata).
    #[napi]
    pub fn save(&self, env: Env) -> napi::Result<Uint8Array> {
        guard(&env, || self.get()?.to_safetensors()).map(Uint8Array::new)
    }

    /// Every option (TypeScript names).
    #[napi]
    pub fn config(&self, env: Env) -> napi::Result<Value> {
        guard(&env, || gqa_core::to_value(self.get()?.config()))
    }

    /// Exact parameter count.
    #[napi]
    pub fn param_count(&self, env: Env) -> napi::Result<f64> {
        guard(&env, || Ok(self.get()?.params().total_elements() as f64))
    }

    /// FNV-1a 64-bit digest of every weight (16 hex digits).
    #[napi]
    pub fn weights_digest(&self, env: Env) -> napi::Result<String> {
        guard(&env, || self.get()?.weights_digest()).map(|d| format!("{d:016x}"))
    }

    /// Drops this handle's reference to the weights.
    #[napi]
    pub fn free(&self) {
        self.inner.free();
    }
}
