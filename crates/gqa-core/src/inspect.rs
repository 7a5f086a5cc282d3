//! Model inspection: the attention probabilities of every layer and head (for visualisation,
//! e.g. the browser demo's attention maps).
//!
//! The maps are computed with the reference candle ops (the same formula as
//! [`crate::kernels::reference::attention`]): `P = softmax(q k^T / sqrt(D) + mask)` per query
//! head, where query head `i` reads KV head `i / group` (`group = NH / NKV`, SPEC section 2) and
//! the mask is the causal mask plus the per-sequence key lengths ([`crate::mask::Mask::padded`]). The
//! hidden states between layers come from the model's own inference path, so the maps belong to
//! exactly the forward pass `GqaModel::forward_f32` runs.

use candle_core::Tensor;

use crate::error::{check_f32_buffer, Result};
use crate::input::{check_dims, has_padding, zero_padded};
use crate::model::GqaModel;

/// Attention probabilities of every layer and query head for a batch `x: [B,T,E]`.
///
/// `data` is `x` row-major f32 with `dims = [B,T,E]`; `lengths` (optional, `B` values in
/// `1..=T`) as in [`GqaModel::forward_f32`]: padded input positions are ignored (NaN allowed).
///
/// Returns `(values, dims)` with `dims = [L, B, NH, T, T]` (`L = numLayers`): entry
/// `[l, b, i, q, k]` is the probability with which query position `q` of head `i` in layer `l`
/// attends to key position `k`. Each row sums to 1 over the keys; keys `k > q` (causal) and
/// `k >= L_b` (padding) have probability 0. Rows of padded query positions (`q >= L_b`) are
/// well-defined (they attend to the valid keys `k <= q`) but do not influence any output.
/// `B = 0` returns no values and dims `[L, 0, NH, T, T]`.
///
/// # Errors
/// [`crate::Error::InvalidInput`] as [`GqaModel::forward_f32`] (dims, input length, lengths);
/// [`crate::Error::OutOfMemory`] when `[L,B,NH,T,T]` exceeds the buffer limit;
/// [`crate::Error::Backend`] from candle.
pub fn attention_maps(
    model: &GqaModel,
    data: &[f32],
    dims: &[usize],
    lengths: Option<&[usize]>,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let _use = model.read_use();
    let cfg = model.config();
    let (b, t) = check_dims(data, dims, cfg.embed_dim, "embedDim", lengths)?;
    let (nl, nh, d) = (cfg.num_layers, cfg.num_heads, cfg.head_dim());
    let out_dims = vec![nl, b, nh, t, t];
    check_f32_buffer("attention maps", &out_dims)?;
    let _working = crate::memory::reserve_f32(
        "attention maps",
        &[
            &out_dims,
            &[2, b, nh, t, t],
            &[b, t, cfg.embed_dim + 9 * cfg.hidden_size],
        ],
    )?;
    if b == 0 {
        return Ok((Vec::new(), out_dims));
    }
    let device = model.device();
    let lengths = if has_padding(t, lengths) {
        lengths
    } else {
        None
    };
    let x = Tensor::from_vec(
        crate::memory::try_copy_f32("input", data)?,
        (b, t, cfg.embed_dim),
        device,
    )?;
    let x = zero_padded(&x, lengths)?;
    let mut h = model.project_input(&x, false)?;
    let mask = model.mask(t, lengths);
    let rot = model.rotary(t)?;
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = Vec::with_capacity(nl * b * nh * t * t);
    for block in model.blocks() {
        let a = block.attn_norm.forward(&h, false)?;
        let (q, k, _v) = block.attn.qkv(&a, rot.as_ref(), 0, false)?;
        // [B, NKV, G*T, T] is [B, NH, T, T] in memory (the query heads of a group are consecutive).
        let p = crate::kernels::reference::attention_probs(&q, &k.contiguous()?, &mask, scale)?;
        out.extend(p.flatten_all()?.to_vec1::<f32>()?);
        h = block.forward(&h, &mask, rot.as_ref(), None, false)?;
    }
    Ok((out, out_dims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GqaConfig;

    fn model(rope: bool, heads: (usize, usize), embed: usize) -> GqaModel {
        model_d(rope, heads, embed, None)
    }

    fn model_d(
        rope: bool,
        heads: (usize, usize),
        embed: usize,
        head_dim: Option<usize>,
    ) -> GqaModel {
        let mut c = GqaConfig::new(embed);
        c.head_dim = head_dim;
        c.hidden_size = 16;
        c.num_heads = heads.0;
        c.num_kv_heads = heads.1;
        c.num_layers = 2;
        c.rope = rope;
        c.seed = 3;
        GqaModel::new(c).unwrap()
    }

    fn input(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i as f32) * 0.61).sin() * 1.5).collect()
    }

    /// Rows sum to 1; causal and padded keys have probability exactly 0.
    #[test]
    fn rows_sum_to_one_and_are_causal() {
        let (b, t, e) = (3, 6, 5);
        let m = model(true, (4, 2), e);
        let lengths = [6, 4, 1];
        let (p, dims) = attention_maps(&m, &input(b * t * e), &[b, t, e], Some(&lengths)).unwrap();
        assert_eq!(dims, vec![2, b, 4, t, t]);
        assert_eq!(p.len(), 2 * b * 4 * t * t);
        for (r, row) in p.chunks(t).enumerate() {
            let q = r % t;
            let bi = (r / (t * 4)) % b;
            let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
            assert!((sum - 1.0).abs() < 1e-5, "row {r} sums to {sum}");
            for (k, &v) in row.iter().enumerate() {
                if k > q || k >= lengths[bi] {
                    assert_eq!(v, 0.0, "row {r} (b {bi}, q {q}) key {k}: {v}");
                } else {
                    assert!(v > 0.0, "row {r} key {k} must be readable");
                }
            }
        }
    }

    /// Layer 0 against an independent float64 softmax over `q.k / sqrt(D)` from the projections,
    /// with query head `i` reading KV head `i / group` (MQA, GQA and MHA), and with an explicit
    /// `headDim` that is not `hiddenSize / numHeads` (scale `1/sqrt(headDim)`).
    #[test]
    fn layer0_matches_naive_f64_softmax_with_group_mapping() {
        for (heads, head_dim) in [
            ((4, 1), None),
            ((4, 2), None),
            ((4, 4), None),
            ((4, 2), Some(6)),
        ] {
            let (b, t, e) = (2, 5, 16);
            let m = model_d(false, heads, e, head_dim);
            let x = input(b * t * e);
            let (p, _) = attention_maps(&m, &x, &[b, t, e], None).unwrap();
            let xt = Tensor::from_slice(&x, (b, t, e), m.device()).unwrap();
            let a = m.blocks()[0]
                .attn_norm
                .forward(&m.project_input(&xt, false).unwrap(), false)
                .unwrap();
            let (q, k, _) = m.blocks()[0].attn.qkv(&a, None, 0, false).unwrap();
            // q: [B,NH,T,D], k: [B,NKV,T,D] (contiguous, row-major).
            let q = q.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let k = k.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (nh, nkv, d) = (heads.0, heads.1, head_dim.unwrap_or(16 / heads.0));
            let mut max_err = 0f64;
            for bi in 0..b {
                for i in 0..nh {
                    let kv = i / (nh / nkv);
                    for qi in 0..t {
                        let s: Vec<f64> = (0..=qi)
                            .map(|kj| {
                                (0..d)
                                    .map(|c| {
                                        f64::from(q[((bi * nh + i) * t + qi) * d + c])
                                            * f64::from(k[((bi * nkv + kv) * t + kj) * d + c])
                                    })
                                    .sum::<f64>()
                                    / (d as f64).sqrt()
                            })
                            .collect();
                        let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let z: f64 = s.iter().map(|v| (v - mx).exp()).sum();
                        for kj in 0..t {
                            let want = if kj <= qi {
                                (s[kj] - mx).exp() / z
                            } else {
                                0.0
                            };
                            let got = f64::from(p[(((bi * nh + i) * t) + qi) * t + kj]);
                            max_err = max_err.max((got - want).abs());
                        }
                    }
                }
            }
            assert!(max_err < 1e-6, "heads {heads:?}: max |diff| {max_err}");
        }
    }

    /// A padded row's maps (valid part) equal the maps of the same sequence alone, NaN padding.
    #[test]
    fn padding_matches_sequence_alone() {
        let (t, e) = (6, 5);
        let m = model(true, (4, 2), e);
        let mut x = input(2 * t * e);
        for v in &mut x[t * e + 3 * e..] {
            *v = f32::NAN;
        }
        let (p, _) = attention_maps(&m, &x, &[2, t, e], Some(&[6, 3])).unwrap();
        let (alone, _) = attention_maps(&m, &x[t * e..t * e + 3 * e], &[1, 3, e], None).unwrap();
        for l in 0..2 {
            for i in 0..4 {
                for qi in 0..3 {
                    for kj in 0..3 {
                        let got = p[((((l * 2 + 1) * 4 + i) * t) + qi) * t + kj];
                        let want = alone[(((l * 4 + i) * 3) + qi) * 3 + kj];
                        assert!(
                            (got - want).abs() < 1e-6,
                            "l{l} h{i} q{qi} k{kj}: {got} vs {want}"
                        );
                    }
                }
            }
        }
        assert!(p.iter().all(|v| v.is_finite()));
    }

    /// Errors name the input; B = 0 gives an empty result with the right dims.
    #[test]
    fn errors_and_empty_batch() {
        let m = model(false, (4, 2), 5);
        let err = attention_maps(&m, &[0.0; 10], &[1, 2, 4], None).unwrap_err();
        assert_eq!(err.code(), "INVALID_INPUT");
        assert!(err.to_string().contains("dims"), "{err}");
        let err = attention_maps(&m, &[0.0; 10], &[1, 2, 5], Some(&[3])).unwrap_err();
        assert!(err.to_string().contains("lengths[0]"), "{err}");
        let (v, dims) = attention_maps(&m, &[], &[0, 3, 5], None).unwrap();
        assert!(v.is_empty());
        assert_eq!(dims, vec![2, 0, 4, 3, 3]);
    }
}
