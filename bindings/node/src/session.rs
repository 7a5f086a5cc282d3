//! Streaming inference with the KV cache (mirrors `gqa_core::session`): [`Model::session`]
//! creates a [`Session`]; `push` runs new positions (prefill or decode) on the calling thread,
//! `pushAsync` on the libuv thread pool.
//!
//! Sharing: the session holds, behind its one handle, the model as `Arc<TaskModel>` (freeing the
//! JS `Model` does not affect a live session; the weights are released when both are freed, not
//! at garbage collection) and the cache as `Mutex<gqa_core::Session>`, because `push` mutates it:
//! an async push owns a clone of both, and pushes to one session run one after the other (the TypeScript layer also queues
//! them in call order). Other methods lock the same mutex, so on the JS thread they wait for a
//! running push to finish.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::handle::Handle;

use gqa_core::session::Session as CoreSession;
use gqa_core::train::TaskModel;
use napi::bindgen_prelude::{AsyncTask, Float32Array, Uint32Array};
use napi::Env;
use napi_derive::napi;

use crate::error::guard;
use crate::model::{ForwardTask, Model};
use crate::tensor::{run, spawn, ForwardOutput, Values};

/// What a live session holds: the model it reads and its cache. Both sit behind the one handle,
/// so `free()` drops this session's reference to the model too (an async push in flight keeps
/// its own clone until it completes).
pub(crate) struct Live {
    model: Arc<TaskModel>,
    cache: Mutex<CoreSession>,
}

type Shared = Arc<Live>;

fn lock(s: &Mutex<CoreSession>) -> gqa_core::Result<MutexGuard<'_, CoreSession>> {
    s.lock().map_err(|_| {
        gqa_core::Error::Internal("a previous push panicked; create a new session".into())
    })
}

/// One push: `x: [B,t,E]` into the session's cache, output as the core's `Session::push`.
fn push_to(
    all_positions: bool,
) -> impl FnOnce(&Live, &[f32], &[usize], Option<&[usize]>) -> Values + Send + 'static {
    move |live: &Live, data: &[f32], dims: &[usize], lengths: Option<&[usize]>| {
        lock(&live.cache)?.push(&live.model.model, data, dims, lengths, all_positions)
    }
}

/// One push, then the model's head on each row's output (`TaskModel::push_predict_f32`).
fn predict_to() -> impl FnOnce(&Live, &[f32], &[usize], Option<&[usize]>) -> Values + Send + 'static
{
    move |live: &Live, data: &[f32], dims: &[usize], lengths: Option<&[usize]>| {
        let mut cache = lock(&live.cache)?;
        live.model.push_predict_f32(&mut cache, data, dims, lengths)
    }
}

/// A batched KV-cache session (`gqa_core::session::Session`): per layer K/V caches
/// `[B, NKV, maxLen, D]` f32 in native memory, rows with independent lengths.
#[napi]
pub struct Session {
    inner: Handle<Live>,
}

impl Session {
    fn get(&self) -> gqa_core::Result<Shared> {
        self.inner.get("session")
    }
}

#[napi]
impl Model {
    /// Creates a KV-cache session for `batch` rows of up to `maxLen` positions each (a
    /// sliding-window model's session may omit it: unbounded, constant memory).
    /// Errors: `INVALID_INPUT` (`maxLen` 0, or absent without `slidingWindow`), `OUT_OF_MEMORY`
    /// (cache over the buffer limit), `DISPOSED`.
    #[napi]
    pub fn session(&self, env: Env, batch: u32, max_len: Option<u32>) -> napi::Result<Session> {
        guard(&env, || {
            let m = self.get()?;
            let s = m
                .model
                .session_opt(batch as usize, max_len.map(|l| l as usize))?;
            Ok(Session {
                inner: Handle::new(Live {
                    model: m,
                    cache: Mutex::new(s),
                }),
            })
        })
    }
}

#[napi]
impl Session {
    /// Pushes a chunk `data: [B,t,E]` (`dims = [B,t,E]`) on the calling thread; `lengths` = new
    /// valid positions per row (default `t`). Returns the output mode at each row's newest
    /// position (`[B,H]`, or `[B,t,H]` for `all`), or at every new position (`[B,t,H]`) when
    /// `allPositions`. Errors: `INVALID_INPUT`, `CACHE_FULL` (session unchanged), `DISPOSED`.
    #[napi]
    pub fn push(
        &self,
        env: Env,
        data: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
        all_positions: bool,
    ) -> napi::Result<ForwardOutput> {
        run(
            &env,
            self.get(),
            (&data, &dims, &lengths),
            push_to(all_positions),
        )
    }

    /// `push` on the libuv thread pool; the inputs are copied before this returns.
    #[napi(ts_return_type = "Promise<ForwardOutput>")]
    pub fn push_async(
        &self,
        env: Env,
        data: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
        all_positions: bool,
    ) -> napi::Result<AsyncTask<ForwardTask>> {
        spawn(
            &env,
            self.get(),
            (&data, &dims, &lengths),
            push_to(all_positions),
        )
    }

    /// `push`, then the model's head on each row's output: `[B,K]` class probabilities or
    /// regression values. Errors: as `push`; `INVALID_OPTION` (no head, `outputMode` all).
    #[napi]
    pub fn push_predict(
        &self,
        env: Env,
        data: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
    ) -> napi::Result<ForwardOutput> {
        run(&env, self.get(), (&data, &dims, &lengths), predict_to())
    }

    /// `pushPredict` on the libuv thread pool; the inputs are copied before this returns.
    #[napi(ts_return_type = "Promise<ForwardOutput>")]
    pub fn push_predict_async(
        &self,
        env: Env,
        data: Float32Array,
        dims: Uint32Array,
        lengths: Option<Uint32Array>,
    ) -> napi::Result<AsyncTask<ForwardTask>> {
        spawn(&env, self.get(), (&data, &dims, &lengths), predict_to())
    }

    /// Positions pushed so far per row (`B` values; absolute, also after a sliding window
    /// dropped old keys).
    #[napi]
    pub fn lengths(&self, env: Env) -> napi::Result<Uint32Array> {
        guard(&env, || {
            let lengths = lock(&self.get()?.cache)?.lengths().to_vec();
            Ok(Uint32Array::new(
                lengths.into_iter().map(|l| l as u32).collect(),
            ))
        })
    }

    /// Cache slots per row: `maxLen`, or a sliding-window model's ring slots.
    #[napi(getter)]
    pub fn capacity(&self, env: Env) -> napi::Result<u32> {
        guard(&env, || Ok(lock(&self.get()?.cache)?.capacity() as u32))
    }

    /// Most positions per row (`maxLen`), `null` for an unbounded sliding-window session (the
    /// wasm binding's getter gives `undefined`: both are typed here).
    #[napi(getter, ts_return_type = "number | null | undefined")]
    pub fn max_len(&self, env: Env) -> napi::Result<Option<u32>> {
        guard(&env, || {
            Ok(lock(&self.get()?.cache)?.max_len().map(|l| l as u32))
        })
    }

    /// Number of rows `B`.
    #[napi(getter)]
    pub fn batch(&self, env: Env) -> napi::Result<u32> {
        guard(&env, || Ok(lock(&self.get()?.cache)?.batch() as u32))
    }

    /// Forgets every cached position (the allocation is kept).
    #[napi]
    pub fn reset(&self, env: Env) -> napi::Result<()> {
        guard(&env, || {
            lock(&self.get()?.cache)?.reset();
            Ok(())
        })
    }

    /// Bytes allocated for the K and V caches of all layers: `B * maxLen * kvCacheBytesPerToken`.
    #[napi]
    pub fn kv_cache_bytes(&self, env: Env) -> napi::Result<f64> {
        guard(&env, || {
            Ok(lock(&self.get()?.cache)?.kv_cache_bytes() as f64)
        })
    }

    /// Cache bytes per cached token and row: `2 * numLayers * numKvHeads * headDim * 4` (SPEC section 4).
    #[napi]
    pub fn kv_cache_bytes_per_token(&self, env: Env) -> napi::Result<f64> {
        guard(&env, || {
            Ok(lock(&self.get()?.cache)?.kv_cache_bytes_per_token() as f64)
        })
    }

    /// Drops this handle's references to the cache and to the model (a running async push keeps
    /// its own until it completes), so their memory goes as soon as nothing else uses them.
    #[napi]
    pub fn free(&self) {
        self.inner.free();
    }
}
