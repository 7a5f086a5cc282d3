//! The input transform of a `gqa train` model ([`InputTransform`]) as graph nodes in front of
//! the model: standardisation, optional instance normalisation, non-overlapping patches.

use super::graph::int;
use super::{proto, Builder, InputTransform, INPUT, LENGTHS, ZERO_F32};

/// Smallest per-row std used as a divisor (`MIN_STD` of `ts/data/standardize.ts`).
const MIN_STD: f32 = 1e-8;

impl Builder<'_> {
    /// Adds the nodes of `t` reading the raw graph inputs [`INPUT`] `[B, S, C]` and [`LENGTHS`]
    /// `[B]`, and points `self.input` / `self.lengths` at the tokens `[B, ceil(S / P), P * C]`
    /// and their counts `ceil(lengths / P)`.
    pub(super) fn input_transform(&mut self, t: &InputTransform) {
        let c = t.mean.len();
        let g = &mut self.g;
        let zero_f = g.f32(ZERO_F32, &[], &[0.0]);
        let shape = g.op("Shape", &[INPUT], vec![], Some("raw_shape"));
        let idx1 = g.i64("const.index_1", &[], &[1]);
        let steps = g.op(
            "Gather",
            &[&shape, &idx1],
            vec![int("axis", 0)],
            Some("raw_steps"),
        );
        let zero = g.i64("const.zero_i64", &[], &[0]);
        let one = g.i64("const.one_i64", &[], &[1]);
        let pos = g.op(
            "Range",
            &[&zero, &steps, &one],
            vec![],
            Some("raw_positions"),
        );
        let ax0 = g.i64("const.axes_0", &[1], &[0]);
        let ax1 = g.i64("const.axes_1", &[1], &[1]);
        let ax2 = g.i64("const.axes_2", &[1], &[2]);
        let pos_row = g.op(
            "Unsqueeze",
            &[&pos, &ax0],
            vec![],
            Some("raw_positions_row"),
        ); // [1, S]
        let len_col = g.op(
            "Unsqueeze",
            &[LENGTHS, &ax1],
            vec![],
            Some("raw_lengths_col"),
        ); // [B, 1]
        let valid = g.op("Less", &[&pos_row, &len_col], vec![], Some("raw_valid")); // [B, S]
                                                                                    // [B, S, 1]; padded steps may hold anything (NaN included): zero them first.
        let valid3 = g.op("Unsqueeze", &[&valid, &ax2], vec![], Some("raw_valid_3d"));
        let x = g.op(
            "Where",
            &[&valid3, INPUT, &zero_f],
            vec![],
            Some("raw_masked"),
        );
        let mean = g.f32("transform.mean", &[c], &t.mean);
        let std = g.f32("transform.std", &[c], &t.std);
        let x = g.op1("Sub", &[&x, &mean]);
        let x = g.op1("Div", &[&x, &std]);
        let mut x = g.op(
            "Where",
            &[&valid3, &x, &zero_f],
            vec![],
            Some("standardized"),
        );
        if t.instance_norm {
            x = self.instance_norm(&x, &valid3);
        }
        let g = &mut self.g;
        if t.patch == 1 {
            self.input = x;
            return;
        }
        let p = t.patch as i64;
        let pc = g.i64("transform.patch", &[], &[p]);
        // (P - S mod P) mod P zero steps at the end of the time axis.
        let r = g.op1("Mod", &[&steps, &pc]);
        let r = g.op1("Sub", &[&pc, &r]);
        let pad = g.op1("Mod", &[&r, &pc]);
        let pad = g.op1("Unsqueeze", &[&pad, &ax0]);
        let z4 = g.i64("transform.pads_head", &[4], &[0, 0, 0, 0]);
        let z1 = g.i64("transform.pads_tail", &[1], &[0]);
        let pads = g.op(
            "Concat",
            &[&z4, &pad, &z1],
            vec![int("axis", 0)],
            Some("patch_pads"),
        );
        let xp = g.op("Pad", &[&x, &pads], vec![], Some("patch_padded"));
        let shape = g.i64("transform.token_shape", &[3], &[0, -1, p * c as i64]);
        self.input = g.op("Reshape", &[&xp, &shape], vec![], Some("tokens"));
        let pm1 = g.i64("transform.patch_minus_1", &[], &[p - 1]);
        let l = g.op1("Add", &[LENGTHS, &pm1]);
        self.lengths = g.op("Div", &[&l, &pc], vec![], Some("token_lengths"));
    }

    /// Per-row, per-channel normalisation of `x: [B, S, C]` (zero at invalid steps) over the
    /// valid steps `valid3: [B, S, 1]`: `(x - mean) / std`, population std, below [`MIN_STD`]: 1.
    fn instance_norm(&mut self, x: &str, valid3: &str) -> String {
        let g = &mut self.g;
        let ax1 = g.i64("const.axes_1", &[1], &[1]);
        let m = g.op(
            "Cast",
            &[valid3],
            vec![int("to", i64::from(proto::FLOAT))],
            Some("raw_valid_f32"),
        );
        let keep = || int("keepdims", 1);
        let n = g.op("ReduceSum", &[&m, &ax1], vec![keep()], Some("row_steps")); // [B, 1, 1]
        let sum = g.op("ReduceSum", &[x, &ax1], vec![keep()], None); // [B, 1, C]
        let mu = g.op("Div", &[&sum, &n], vec![], Some("row_mean"));
        let d = g.op1("Sub", &[x, &mu]);
        let d = g.op1("Mul", &[&d, &m]);
        let sq = g.op1("Mul", &[&d, &d]);
        let ss = g.op("ReduceSum", &[&sq, &ax1], vec![keep()], None);
        let var = g.op1("Div", &[&ss, &n]);
        let sd = g.op1("Sqrt", &[&var]);
        let min = g.f32("transform.min_std", &[], &[MIN_STD]);
        let one_f = g.f32("const.one_f32", &[], &[1.0]);
        let small = g.op1("Less", &[&sd, &min]);
        let sd = g.op("Where", &[&small, &one_f, &sd], vec![], Some("row_std"));
        g.op("Div", &[&d, &sd], vec![], Some("instance_normalized"))
    }
}
