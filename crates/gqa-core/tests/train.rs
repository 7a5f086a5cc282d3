//! Training against PyTorch (fixtures from scripts/gen_fixtures.py) and independent checks:
//! gradients, one AdamW step, finite differences, a synthetic task, dropout statistics.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use gqa_core::train::{
    evaluate, fused_gradients, loss,
    optim::{AdamW, FusedAdamW},
    AdamWConfig, FitOptions, HeadConfig, Labels, StepLoss, TaskModel, TrainData, TrainWorkspace,
    Trainer,
};
use gqa_core::weights::{read_tensors, LoadOptions};
use gqa_core::{Dropout, GqaConfig};

mod common;
use common::rel_err;

fn fixture(name: &str) -> (TaskModel, HashMap<String, Tensor>) {
    let path = format!(
        "{}/../../fixtures/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let task = TaskModel::from_safetensors(&bytes, &LoadOptions::default()).expect("fixture loads");
    let (tensors, _) = read_tensors(&bytes).unwrap();
    (task, tensors.into_iter().collect())
}

fn vec_f32(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn usizes(t: &Tensor) -> Vec<usize> {
    t.to_dtype(DType::I64)
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

/// Loss of the fixture batch, built exactly as the trainer does.
fn fixture_loss(task: &TaskModel, t: &HashMap<String, Tensor>) -> Tensor {
    let x = &t["input.x"];
    let lengths = t.get("input.lengths").map(usizes);
    let out = task.head_forward(x, lengths.as_deref(), None).unwrap();
    match &task.head.as_ref().unwrap().cfg {
        HeadConfig::Classification { .. } => {
            let labels: Vec<u32> = usizes(&t["input.labels"])
                .into_iter()
                .map(|v| v as u32)
                .collect();
            let w = t.get("input.class_weights").map(vec_f32);
            loss::cross_entropy(&out, &labels, w.as_deref()).unwrap()
        }
        HeadConfig::Regression { huber_delta, .. } => {
            let y = t["input.labels"].to_dtype(DType::F32).unwrap();
            loss::huber(&out, &y, *huber_delta).unwrap()
        }
    }
}

/// What [`check_grads_and_adamw`] compared.
struct Checked {
    /// Parameters without a `grad.<name>` tensor in the fixture (not compared with torch).
    missing_grads: Vec<String>,
    /// Parameters without an `adamw.<name>` tensor in the fixture.
    missing_adamw: Vec<String>,
}

/// Compares one gradient with a reference: relative error `max|a-b| / max|b| <= 1e-4`, or, when
/// the reference is mathematically zero (`max|b| < 1e-6`, e.g. k_proj.bias without rotary:
/// softmax is invariant to a per-query constant, so torch's float64 value is rounding noise and
/// no relative error exists), `max|a| <= 1e-5`. `Ok(relative error)` (0 for a zero reference),
/// or what is wrong.
fn grad_err(got: &[f32], want: &[f32]) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!("{} values, reference {}", got.len(), want.len()));
    }
    let scale = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    if scale < 1e-6 {
        let g = got.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
        return if g <= 1e-5 {
            Ok(0.0)
        } else {
            Err(format!("should vanish, found max {g:e}"))
        };
    }
    let e = rel_err(got, want);
    if e <= 1e-4 {
        Ok(e)
    } else {
        Err(format!("relative error {e:.3e} (max|ref| {scale:.3e})"))
    }
}

/// One fixture under check: its name and tensors, the model's parameters (canonical order) and
/// torch's loss with the tolerance the losses are held to (`1e-5 * max(1, |loss|)`).
struct Fixture<'a> {
    name: &'a str,
    t: &'a HashMap<String, Tensor>,
    vars: &'a [(String, Var)],
    want_loss: f32,
    loss_tol: f32,
}

impl Fixture<'_> {
    /// Torch's gradient of parameter `pname` (`grad.<pname>`), when the fixture has it.
    fn torch_grad(&self, pname: &str) -> Option<Vec<f32>> {
        self.t.get(&format!("grad.{pname}")).map(vec_f32)
    }
}

/// Compares with the fixture's torch results: the loss and every `grad.*` tensor present, from
/// candle's autograd AND from the fused CPU training step ([`fused_gradients`]); then one AdamW
/// step against every `adamw.*` tensor present. Fixtures may leave out `grad.*`/`adamw.*`
/// tensors (the long fixture does, to stay small); the caller asserts which may be missing.
fn check_grads_and_adamw(name: &str) -> Checked {
    let (mut task, t) = fixture(name);
    let vars = task.vars();
    assert_fixture_names_known(name, &vars, &t);
    let missing_grads = missing_tensors(&vars, &t, "grad.");
    let missing_adamw = missing_tensors(&vars, &t, "adamw.");
    assert!(
        missing_grads.len() < vars.len(),
        "{name}: no grad.* tensors at all"
    );
    let want_loss = vec_f32(&t["expected.loss"])[0];
    let f = Fixture {
        name,
        t: &t,
        vars: &vars,
        want_loss,
        loss_tol: 1e-5 * want_loss.abs().max(1.0),
    };
    let (mut grads, candle) = check_candle_gradients(&f, &task);
    check_fused_gradients(&f, &mut task, &candle, !missing_grads.is_empty());

    // One AdamW step equals torch.optim.AdamW's. It is fed torch's own gradients so that it
    // tests the optimiser alone (a mathematically zero gradient's rounding noise decides the
    // sign of Adam's first step, so our float32 gradients would not do). Only parameters with
    // both a torch gradient and an AdamW result are compared.
    let compared: Vec<&String> = vars
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !missing_grads.contains(n) && !missing_adamw.contains(n))
        .collect();
    if !compared.is_empty() {
        check_adamw(&f, &mut grads, &compared);
    }
    Checked {
        missing_grads,
        missing_adamw,
    }
}

/// Asserts that every `grad.<name>` / `adamw.<name>` tensor of the fixture `t` names one of the
/// model's parameters `vars`.
fn assert_fixture_names_known(name: &str, vars: &[(String, Var)], t: &HashMap<String, Tensor>) {
    for k in t
        .keys()
        .filter_map(|k| k.strip_prefix("grad.").or_else(|| k.strip_prefix("adamw.")))
    {
        assert!(
            vars.iter().any(|(n, _)| n == k),
            "{name}: fixture tensor for {k}, which the model does not have"
        );
    }
}

/// The parameters of `vars` without a `<prefix><name>` tensor in the fixture `t`, in order.
fn missing_tensors(
    vars: &[(String, Var)],
    t: &HashMap<String, Tensor>,
    prefix: &str,
) -> Vec<String> {
    vars.iter()
        .filter(|(n, _)| !t.contains_key(&format!("{prefix}{n}")))
        .map(|(n, _)| n.clone())
        .collect()
}

/// Candle autograd against torch: asserts the loss and every gradient the fixture has (see
/// [`grad_err`]). Returns the gradient store (for the AdamW check) and each parameter's
/// gradient as a flat f32 vector (the reference for gradients absent from the fixture).
fn check_candle_gradients(
    f: &Fixture<'_>,
    task: &TaskModel,
) -> (GradStore, HashMap<String, Vec<f32>>) {
    let (name, want_loss) = (f.name, f.want_loss);
    let loss = fixture_loss(task, f.t);
    let got_loss = loss.to_scalar::<f32>().unwrap();
    assert!(
        (got_loss - want_loss).abs() <= f.loss_tol,
        "{name}: candle loss {got_loss} vs torch {want_loss}"
    );
    let grads = loss.backward().unwrap();
    let mut candle: HashMap<String, Vec<f32>> = HashMap::new();
    let mut worst = (0.0, String::new());
    for (pname, var) in f.vars {
        let g = vec_f32(
            grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no candle gradient for {pname}")),
        );
        if let Some(want) = f.torch_grad(pname) {
            let e = grad_err(&g, &want).unwrap_or_else(|m| {
                panic!("{name}: candle gradient of {pname} differs from torch: {m}")
            });
            if e > worst.0 {
                worst = (e, pname.clone());
            }
        }
        candle.insert(pname.clone(), g);
    }
    eprintln!("{name}: candle loss {got_loss} (torch {want_loss}); worst relative gradient error {:.2e} at {}", worst.0, worst.1);
    (grads, candle)
}

/// Puts the fixture's `input.class_weights` (when present) into the task's classification
/// head config, where the fused training step reads them (the fixture's head metadata has
/// none). Panics on a regression head.
fn set_fixture_class_weights(name: &str, task: &mut TaskModel, t: &HashMap<String, Tensor>) {
    if let Some(w) = t.get("input.class_weights").map(vec_f32) {
        let head = task.head.as_mut().unwrap();
        let HeadConfig::Classification { num_classes, .. } = head.cfg else {
            panic!("{name}: class weights on a regression head")
        };
        head.cfg = HeadConfig::Classification {
            num_classes,
            class_weights: Some(w),
        };
    }
}

/// The fixture batch as the fused step takes it: `x` `[B*T*E]` flat, `T`, the lengths
/// (`T` per row when the fixture has none) and the labels for the task's head.
fn fused_batch(
    task: &TaskModel,
    t: &HashMap<String, Tensor>,
) -> (Vec<f32>, usize, Vec<usize>, Labels) {
    let dims = t["input.x"].dims().to_vec();
    let (b, tt) = (dims[0], dims[1]);
    let x = vec_f32(&t["input.x"]);
    let lengths = t
        .get("input.lengths")
        .map(usizes)
        .unwrap_or_else(|| vec![tt; b]);
    let labels = match &task.head.as_ref().unwrap().cfg {
        HeadConfig::Classification { .. } => Labels::Classes(
            usizes(&t["input.labels"])
                .into_iter()
                .map(|v| v as u32)
                .collect(),
        ),
        HeadConfig::Regression { .. } => Labels::Values(vec_f32(&t["input.labels"])),
    };
    (x, tt, lengths, labels)
}

/// The fused CPU training step against torch: asserts the loss and every gradient (those
/// absent from the fixture against `candle`'s instead, which the small fixtures tie to torch).
/// `some_missing`: whether the fixture lacks some gradients (reported separately).
fn check_fused_gradients(
    f: &Fixture<'_>,
    task: &mut TaskModel,
    candle: &HashMap<String, Vec<f32>>,
    some_missing: bool,
) {
    let (name, vars, want_loss) = (f.name, f.vars, f.want_loss);
    // Fused CPU training step. Its class weights come from the head config; the fixture's head
    // metadata has none (they are in `input.class_weights`), so put them there.
    set_fixture_class_weights(name, task, f.t);
    let (x, tt, lengths, labels) = fused_batch(task, f.t);
    let mut fused = Vec::new();
    let mut ws = TrainWorkspace::default();
    let StepLoss {
        loss: fused_loss, ..
    } = fused_gradients(task, &x, tt, &lengths, &labels, None, &mut fused, &mut ws)
        .unwrap_or_else(|e| panic!("{name}: fused_gradients: {e}"));
    assert_eq!(
        fused.len(),
        vars.len(),
        "{name}: one fused gradient per var"
    );
    let mut worst = (0.0, String::new());
    let mut worst_vs_candle = (0.0, String::new());
    let mut failures = Vec::new();
    for ((pname, var), g) in vars.iter().zip(&fused) {
        assert_eq!(
            g.len(),
            var.elem_count(),
            "{name}: fused gradient of {pname} has the wrong size"
        );
        let (reference, against) = match f.torch_grad(pname) {
            Some(want) => (want, "torch"),
            // Not in the fixture (FFN weights of the long fixture): hold the fused path to the
            // candle path instead, which the small fixtures tie to torch.
            None => (candle[pname].clone(), "candle"),
        };
        match grad_err(g, &reference) {
            Ok(e) if against == "torch" && e > worst.0 => worst = (e, pname.clone()),
            Ok(e) if against == "candle" && e > worst_vs_candle.0 => {
                worst_vs_candle = (e, pname.clone())
            }
            Ok(_) => {}
            Err(m) => failures.push(format!("{pname} (vs {against}): {m}")),
        }
    }
    let absent = if some_missing {
        format!(
            "; {:.2e} at {} vs candle (gradients absent from the fixture)",
            worst_vs_candle.0, worst_vs_candle.1
        )
    } else {
        String::new()
    };
    eprintln!("{name}: fused loss {fused_loss} (torch {want_loss}); worst relative gradient error {:.2e} at {} vs torch{absent}", worst.0, worst.1);
    assert!(
        (fused_loss - f64::from(want_loss)).abs() <= f64::from(f.loss_tol),
        "{name}: fused loss {fused_loss} vs torch {want_loss}"
    );
    assert!(
        failures.is_empty(),
        "{name}: fused gradients differ: {failures:?}"
    );
}

/// The AdamW configuration of the fixtures (scripts/gen_fixtures.py).
fn fixture_adamw_config() -> AdamWConfig {
    AdamWConfig {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    }
}

/// One AdamW step (lr 1e-2) on torch's gradients against the fixture's `adamw.*` results for
/// the `compared` parameters: the fused path's [`FusedAdamW`] on copies of the parameters, then
/// candle's [`AdamW`] on `grads` (torch's gradients are put there first) stepping the
/// parameters themselves. Max abs difference 1e-5.
fn check_adamw(f: &Fixture<'_>, grads: &mut GradStore, compared: &[&String]) {
    let (t, vars) = (f.t, f.vars);
    for (pname, var) in vars {
        if let Some(g) = t.get(&format!("grad.{pname}")) {
            grads.insert(var.as_tensor(), g.to_dtype(DType::F32).unwrap());
        }
    }
    let cfg = fixture_adamw_config();
    // The fused path's AdamW (in place, one pass per tensor) on copies of the parameters.
    let copies: Vec<Var> = vars
        .iter()
        .map(|(_, v)| Var::from_tensor(&v.as_tensor().copy().unwrap()).unwrap())
        .collect();
    let tg: Vec<Vec<f32>> = vars
        .iter()
        .map(|(n, v)| {
            t.get(&format!("grad.{n}"))
                .map_or_else(|| vec![0.0; v.elem_count()], vec_f32)
        })
        .collect();
    let sizes: Vec<usize> = tg.iter().map(Vec::len).collect();
    FusedAdamW::new(&sizes, cfg)
        .unwrap()
        .step(&copies, &tg, None, 1e-2)
        .unwrap();
    for ((pname, _), var) in vars
        .iter()
        .zip(&copies)
        .filter(|((n, _), _)| compared.contains(&n))
    {
        assert_adamw_result(f, "fused AdamW", pname, var);
    }
    let mut opt = AdamW::new(vars.iter().map(|(_, v)| v.clone()).collect(), cfg).unwrap();
    opt.step(grads, 1e-2).unwrap();
    for (pname, var) in vars.iter().filter(|(n, _)| compared.contains(&n)) {
        assert_adamw_result(f, "AdamW", pname, var);
    }
}

/// Asserts that parameter `pname` after a step (`var`) is within 1e-5 (max abs) of the
/// fixture's `adamw.<pname>`; `what` names the optimiser in the message.
fn assert_adamw_result(f: &Fixture<'_>, what: &str, pname: &str, var: &Var) {
    let name = f.name;
    let got = vec_f32(var.as_tensor());
    let want = vec_f32(&f.t[&format!("adamw.{pname}")]);
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max <= 1e-5,
        "{name}: {what} result for {pname} differs from torch by {max:e}"
    );
}

#[test]
fn classification_gradients_and_adamw_match_torch() {
    let c = check_grads_and_adamw("train_cls");
    assert!(
        c.missing_grads.is_empty() && c.missing_adamw.is_empty(),
        "train_cls covers every parameter"
    );
}

#[test]
fn huber_regression_gradients_and_adamw_match_torch() {
    let c = check_grads_and_adamw("train_reg_huber");
    assert!(
        c.missing_grads.is_empty() && c.missing_adamw.is_empty(),
        "train_reg_huber covers every parameter"
    );
}

#[test]
fn long_padded_rope_gqa_gradients_match_torch() {
    // T=130, lengths [130, 77, 101], hidden 256, GQA 8/2 (headDim 32), rope, embedDim 12, 9
    // weighted classes; F16-stored (float16-exact) parameters. The fixture leaves out adamw.*
    // and the FFN weight gradients (size); everything else must be compared with torch.
    let c = check_grads_and_adamw("train_cls_long");
    let (task, _) = fixture("train_cls_long");
    let names: Vec<String> = task.vars().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().any(|n| n.starts_with("input_projection.")),
        "embedDim 12 != hiddenSize 256: input projection present"
    );
    for n in &names {
        let must = n.contains(".attn.")
            || n.contains("norm.")
            || n.starts_with("head.")
            || n.starts_with("input_projection.");
        assert!(
            !(must && c.missing_grads.contains(n)),
            "train_cls_long must hold grad.{n}"
        );
    }
    assert!(
        c.missing_grads
            .iter()
            .all(|n| n.starts_with("blocks.0.ffn_") && n.ends_with(".weight")),
        "only FFN weight gradients may be absent: {:?}",
        c.missing_grads
    );
    assert_eq!(c.missing_grads.len(), 2);
    assert_eq!(
        c.missing_adamw.len(),
        names.len(),
        "no adamw.* in train_cls_long"
    );
}

#[test]
fn gradients_agree_with_finite_differences() {
    // Independent of torch: central differences of the task loss (cross-entropy through the head)
    // at the largest-|g| entry of six tensors across the model. Tolerance
    // |fd - g| <= ATOL + RTOL * |fd|, ATOL = 1e-4 (f32 loss noise ~1e-7 / (2 * eps) ~ 1e-5), RTOL =
    // 2e-3 (the central difference's O(eps^2) truncation through softmax, LayerNorm and GELU was
    // measured at 9.8e-5 relative at worst; printed on each run). Each entry must be large enough
    // that a sign error (-g) or a factor-2 error (2g, g/2) fails the same tolerance. (Was
    // 2e-3 + 2e-2 * |g| at fixed indices, which let a sign error through whenever |g| < 1e-3.)
    const EPS: f32 = 1e-2;
    const ATOL: f64 = 1e-4;
    const RTOL: f64 = 2e-3;
    let within = |fd: f64, g: f64| (fd - g).abs() <= ATOL + RTOL * fd.abs();
    let (task, t) = fixture("train_cls");
    let grads = fixture_loss(&task, &t).backward().unwrap();
    let picks = [
        "blocks.0.attn.q_proj.weight",
        "blocks.1.attn.k_proj.bias",
        "blocks.0.ffn_up.weight",
        "final_norm.weight",
        "head.weight",
        "input_projection.weight",
    ];
    let mut worst = 0f64;
    for pname in picks {
        let var = task.vars().into_iter().find(|(n, _)| n == pname).unwrap().1;
        let gv = vec_f32(grads.get(var.as_tensor()).unwrap());
        let idx = (0..gv.len())
            .max_by(|&a, &b| gv[a].abs().total_cmp(&gv[b].abs()))
            .unwrap();
        let g = gv[idx] as f64;
        let orig = var.as_tensor().copy().unwrap(); // Var::set copies in place: keep a deep copy
        let shape = orig.shape().clone();
        let mut vals = vec_f32(&orig);
        let base = vals[idx];
        let mut at = |v: f32| {
            vals[idx] = v;
            var.set(&Tensor::from_vec(vals.clone(), shape.clone(), &Device::Cpu).unwrap())
                .unwrap();
            fixture_loss(&task, &t).to_scalar::<f32>().unwrap() as f64
        };
        // The step actually taken in f32 (base +- EPS rounds).
        let h = (base + EPS) as f64 - (base - EPS) as f64;
        let fd = (at(base + EPS) - at(base - EPS)) / h;
        var.set(&orig).unwrap();
        assert!(
            within(fd, g),
            "{pname}[{idx}]: autograd {g:e} vs finite difference {fd:e}"
        );
        assert!(
            !within(fd, -g) && !within(fd, 2.0 * g) && !within(fd, 0.5 * g),
            "{pname}[{idx}]: |g| = {g:.3e} too small to tell a sign or factor-2 error"
        );
        worst = worst.max((fd - g).abs() / fd.abs().max(1e-12));
    }
    println!("finite differences: worst relative |fd - g| / |fd| = {worst:.2e}");
}

/// Two channels of noise; class 1 when channel 1 has the larger mean (inputs from the tests'
/// shared [`common::Rng`]).
fn two_channel_task(n: usize, seed: u64) -> TrainData {
    let mut rng = common::Rng::new(seed);
    let (t, e) = (12, 2);
    let mut x = vec![0f32; n * t * e];
    let mut lengths = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let len = 4 + rng.below(t - 3);
        let y = rng.below(2) as u32;
        let shift = if y == 1 { [-1.0f32, 1.0] } else { [1.0, -1.0] };
        for p in 0..len {
            for c in 0..e {
                x[(i * t + p) * e + c] = shift[c] + rng.uniform();
            }
        }
        lengths.push(len);
        labels.push(y);
    }
    TrainData::new(x, &[n, t, e], Some(lengths), Labels::Classes(labels)).unwrap()
}

fn small_task(seed: u64, dropout: f64) -> TaskModel {
    let mut cfg = GqaConfig::new(2);
    cfg.hidden_size = 16;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.num_layers = 2;
    cfg.dropout = dropout;
    cfg.output_mode = gqa_core::OutputMode::MeanPool;
    cfg.seed = seed;
    TaskModel::new(
        cfg,
        Some(HeadConfig::Classification {
            num_classes: 2,
            class_weights: None,
        }),
    )
    .unwrap()
}

fn run(task: &TaskModel, data: TrainData, epochs: usize) -> Vec<f64> {
    let opts = FitOptions {
        epochs,
        batch_size: 32,
        lr: 1e-2,
        seed: 7,
        ..FitOptions::default()
    };
    let mut tr = Trainer::new(task, data, opts).unwrap();
    let mut losses = Vec::new();
    while !tr.done() {
        losses.push(tr.step(task).unwrap().loss);
    }
    losses
}

#[test]
fn synthetic_task_reaches_99_percent_and_runs_are_reproducible() {
    let task = small_task(1, 0.1);
    let losses = run(&task, two_channel_task(256, 1), 15);
    let test = evaluate(&task, &two_channel_task(400, 2), 128).unwrap();
    let first: f64 = losses[..8].iter().sum::<f64>() / 8.0;
    let last: f64 = losses[losses.len() - 8..].iter().sum::<f64>() / 8.0;
    eprintln!(
        "synthetic: loss {first:.4} -> {last:.4}, held-out accuracy {:?}",
        test.accuracy
    );
    assert!(last < first * 0.5, "loss must fall: {first} -> {last}");
    assert!(
        test.accuracy.unwrap() >= 0.99,
        "held-out accuracy {:?}",
        test.accuracy
    );
    // Same seed, same data, same backend: the same loss curve, bit for bit.
    let again = small_task(1, 0.1);
    assert_eq!(run(&again, two_channel_task(256, 1), 15), losses);
}

#[test]
fn dropout_eval_is_deterministic_train_changes_outputs_and_keeps_expectation() {
    let task = small_task(3, 0.3);
    let xs: Vec<f32> = common::pseudo(4 * 12 * 2, 23);
    let x = Tensor::from_vec(xs, (4, 12, 2), &Device::Cpu).unwrap();
    let lengths = vec![12, 8, 5, 12];
    let eval1 = vec_f32(&task.model.forward(&x, Some(&lengths)).unwrap());
    let eval2 = vec_f32(&task.model.forward_t(&x, Some(&lengths), None).unwrap());
    assert_eq!(
        eval1,
        vec_f32(&task.model.forward(&x, Some(&lengths)).unwrap()),
        "eval mode is deterministic"
    );
    // forward runs the fused CPU kernels, forward_t the differentiable candle ops: equal to
    // f32 rounding.
    let worst = eval1
        .iter()
        .zip(&eval2)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-5,
        "eval forward_t equals the inference forward: max abs diff {worst}"
    );
    let mut d = Dropout::new(0.3, 5).unwrap();
    let train = vec_f32(
        &task
            .model
            .forward_t(&x, Some(&lengths), Some(&mut d))
            .unwrap(),
    );
    assert!(
        rel_err(&train, &eval1) > 1e-3,
        "train mode with p=0.3 changes outputs"
    );
    // Inverted dropout keeps the expectation: the mean of 20000 masked ones is 1 within
    // 4 standard errors (sd of one element = sqrt(p/(1-p)) = 0.655).
    let mut d = Dropout::new(0.3, 11).unwrap();
    let ones = Tensor::ones(20_000, DType::F32, &Device::Cpu).unwrap();
    let m = vec_f32(&d.apply(&ones).unwrap());
    let mean = m.iter().map(|&v| v as f64).sum::<f64>() / m.len() as f64;
    let kept = m.iter().filter(|&&v| v != 0.0).count() as f64 / m.len() as f64;
    assert!(
        (mean - 1.0).abs() < 4.0 * 0.655 / (20_000f64).sqrt(),
        "mean {mean}"
    );
    assert!(
        (kept - 0.7).abs() < 4.0 * (0.21f64 / 20_000.0).sqrt(),
        "kept fraction {kept}"
    );
}

#[test]
fn saved_task_model_round_trips_with_its_head() {
    let task = small_task(4, 0.0);
    let bytes = task.to_safetensors().unwrap();
    let back = TaskModel::from_safetensors(&bytes, &LoadOptions::default()).unwrap();
    assert_eq!(
        back.head.as_ref().unwrap().cfg,
        task.head.as_ref().unwrap().cfg
    );
    let x = vec![0.25f32; 2 * 5 * 2];
    let a = task.predict_f32(&x, &[2, 5, 2], None).unwrap();
    let b = back.predict_f32(&x, &[2, 5, 2], None).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.1, vec![2, 2]);
    let s: f32 = a.0[..2].iter().sum();
    assert!(
        (s - 1.0).abs() < 1e-6,
        "class probabilities sum to 1, found {s}"
    );
}

#[test]
fn training_errors_name_the_problem() {
    let task = small_task(5, 0.0);
    let e = TrainData::new(
        vec![0.0; 10],
        &[1, 5, 2],
        Some(vec![6]),
        Labels::Classes(vec![0]),
    )
    .unwrap_err();
    assert_eq!(e.code(), "INVALID_INPUT");
    assert!(e.to_string().contains("lengths[0]"), "{e}");
    let d = TrainData::new(vec![0.0; 10], &[1, 5, 2], None, Labels::Classes(vec![2])).unwrap();
    let e = Trainer::new(&task, d, FitOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("labels[0]") && e.to_string().contains("a class index in [0, 2)"),
        "{e}"
    );
    let e = FitOptions::from_json(r#"{"epochs": 0}"#).unwrap_err();
    assert_eq!(e.code(), "INVALID_OPTION");
    assert!(e.to_string().contains("epochs"), "{e}");
    let e = HeadConfig::from_json(r#"{"type":"classification","numClasses":1}"#).unwrap_err();
    assert!(e.to_string().contains("numClasses"), "{e}");
    let bare = TaskModel::new(GqaConfig::new(2), None).unwrap();
    let e = bare.predict_f32(&[0.0; 2], &[1, 1, 2], None).unwrap_err();
    assert!(e.to_string().contains("head"), "{e}");
}

#[test]
fn option_json_errors_name_the_field_without_parser_positions() {
    let e = FitOptions::from_json(r#"{"learningRate": 0.1}"#).unwrap_err();
    assert_eq!(e.code(), "INVALID_OPTION");
    let msg = e.to_string();
    assert!(
        msg.contains("`learningRate`") && msg.contains("batchSize") && !msg.contains("line 1"),
        "{msg}"
    );
    let e = FitOptions::from_json(r#"{"epochs": "ten"}"#).unwrap_err();
    assert!(
        e.to_string().contains("`epochs`") && !e.to_string().contains("column"),
        "{e}"
    );
    let e = HeadConfig::from_json(r#"{"type":"classification"}"#).unwrap_err();
    assert!(e.to_string().contains("head.numClasses"), "{e}");
}

#[test]
fn label_smoothing_loss_and_logit_gradients_match_the_definition() {
    // PyTorch's definition (F.cross_entropy(weight=w, label_smoothing=eps), mean reduction),
    // evaluated here in f64 from the logits: loss = sum_b [(1-eps) w_y (-log p_by) + eps/C
    // sum_j w_j (-log p_bj)] / sum_b w_y; d loss / d z_bi = (sum_j t_bj p_bi - t_bi) / sum_b w_y
    // with t_bj = (1-eps) w_y [j == y] + eps/C w_j. Checked against candle's autograd of
    // cross_entropy_smoothed for eps in {0, 0.1, 0.3}, with and without class weights.
    let (b, c) = (5usize, 4usize);
    let z: Vec<f32> = common::pseudo_amp(b * c, 31, 3.0);
    let y = [2u32, 0, 3, 3, 1];
    let weights = [0.5f32, 1.5, 1.0, 2.0];
    for eps in [0.0f64, 0.1, 0.3] {
        for w in [None, Some(&weights[..])] {
            let wj = |j: usize| w.map_or(1.0, |w| w[j]) as f64;
            let (mut loss, mut total) = (0f64, 0f64);
            let mut grad = vec![0f64; b * c];
            for r in 0..b {
                let row: Vec<f64> = z[r * c..(r + 1) * c].iter().map(|&v| v as f64).collect();
                let mx = row.iter().cloned().fold(f64::MIN, f64::max);
                let lse = mx + row.iter().map(|v| (v - mx).exp()).sum::<f64>().ln();
                let yr = y[r] as usize;
                total += wj(yr);
                let t: Vec<f64> = (0..c)
                    .map(|j| {
                        (1.0 - eps) * wj(yr) * f64::from(u8::from(j == yr)) + eps / c as f64 * wj(j)
                    })
                    .collect();
                let tsum: f64 = t.iter().sum();
                for j in 0..c {
                    loss += t[j] * (lse - row[j]);
                    grad[r * c + j] = tsum * (row[j] - lse).exp() - t[j];
                }
            }
            let (want_loss, want_grad): (f64, Vec<f64>) =
                (loss / total, grad.iter().map(|g| g / total).collect());
            let zv = Var::from_vec(z.clone(), (b, c), &Device::Cpu).unwrap();
            let l = loss::cross_entropy_smoothed(zv.as_tensor(), &y, w, eps).unwrap();
            let got_loss = l.to_scalar::<f32>().unwrap() as f64;
            let got_grad = vec_f32(l.backward().unwrap().get(zv.as_tensor()).unwrap());
            assert!(
                (got_loss - want_loss).abs() <= 1e-6 * want_loss.abs().max(1.0),
                "eps {eps} w {w:?}: loss {got_loss} vs {want_loss}"
            );
            let gmax = want_grad.iter().fold(0f64, |a, v| a.max(v.abs()));
            for (i, (g, wg)) in got_grad.iter().zip(&want_grad).enumerate() {
                assert!(
                    (*g as f64 - wg).abs() <= 1e-6 * gmax,
                    "eps {eps} w {w:?}: grad[{i}] {g} vs {wg}"
                );
            }
            // Smoothing changes the loss (it is not silently ignored).
            if eps > 0.0 {
                let plain = loss::cross_entropy(zv.as_tensor(), &y, w)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap() as f64;
                assert!(
                    (plain - got_loss).abs() > 1e-3,
                    "eps {eps}: smoothed {got_loss} vs plain {plain}"
                );
            }
        }
    }
}

#[test]
fn label_smoothing_option_is_checked() {
    for bad in [-0.1, 1.0, 2.0, f64::NAN] {
        let o = FitOptions {
            label_smoothing: bad,
            ..FitOptions::default()
        };
        match o.validate() {
            Err(gqa_core::Error::InvalidOption { option, .. }) => {
                assert_eq!(option, "labelSmoothing")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert_eq!(
        FitOptions::from_json(r#"{"labelSmoothing": 0.1}"#)
            .unwrap()
            .label_smoothing,
        0.1
    );
}
