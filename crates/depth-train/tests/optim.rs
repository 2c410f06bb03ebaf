//! AdamW, the schedule and clipping against PyTorch (tests/golden/make_goldens.py):
//! `torch.optim.AdamW` with three groups over 10 steps with the official per-step rate update,
//! the moments after the last step, the state saved at step 5 and restored into a new optimiser,
//! and `clip_grad_norm_`.

use candle_core::{DType, Device, Tensor, Var};
use depth_core::weights::{TensorMap, load_safetensors};
use depth_train::{AdamW, Grads, GroupSettings, ParamGroup, Schedule};
use std::collections::BTreeMap;

fn golden() -> TensorMap {
    load_safetensors(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/optim.safetensors"))
        .unwrap()
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f64> = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f64> = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The golden's three groups over fresh vars holding the initial values.
fn optimizer(g: &TensorMap) -> (AdamW, BTreeMap<&'static str, Var>) {
    let vars: BTreeMap<&str, Var> =
        NAMES.iter().map(|&n| (n, Var::from_tensor(&g[&format!("init.{n}")]).unwrap())).collect();
    let group = |name: &str, members: &[&str], lr, weight_decay, betas, eps| ParamGroup {
        name: name.into(),
        settings: GroupSettings { lr, weight_decay, betas, eps },
        params: members.iter().map(|&m| (m.to_string(), vars[m].clone())).collect(),
    };
    let groups = vec![
        group("g0", &["a", "b"], 1e-3, 0.01, (0.9, 0.999), 1e-8),
        group("g1", &["c"], 1e-2, 0.0, (0.8, 0.99), 1e-6),
        group("g2", &["d"], 5e-3, 0.1, (0.9, 0.95), 1e-8),
    ];
    (AdamW::new(groups).unwrap(), vars)
}

fn grads(g: &TensorMap, step: usize) -> Grads {
    Grads::from_map(NAMES.iter().map(|n| (n.to_string(), g[&format!("grad.{step}.{n}")].clone())).collect())
}

/// Runs steps `from..to` with the official rate rule, checking the rates and parameters.
fn run(opt: &mut AdamW, vars: &BTreeMap<&str, Var>, g: &TensorMap, from: usize, to: usize) -> f64 {
    let schedule = Schedule { steps: 10, warmup: 0, power: 0.9 };
    let mut worst = 0.0f64;
    for step in from..to {
        opt.set_lr_factor(schedule.factor(step as u64));
        let want: Vec<f64> = g[&format!("lr.{step}")].to_vec1().unwrap();
        let got: Vec<f64> = opt.groups().map(|(_, s)| s.lr).collect();
        for (w, x) in want.iter().zip(&got) {
            assert!((w - x).abs() <= 1e-15 * w.abs(), "step {step}: lr {x} vs PyTorch {w}");
        }
        opt.step(&grads(g, step)).unwrap();
        for n in NAMES {
            let d = max_diff(vars[n].as_tensor(), &g[&format!("param.{step}.{n}")]);
            worst = worst.max(d);
            assert!(d < 1e-6, "step {step} param {n}: off by {d}");
        }
    }
    worst
}

#[test]
fn adamw_matches_torch_over_ten_steps_with_groups_and_schedule() {
    let g = golden();
    let (mut opt, vars) = optimizer(&g);
    let worst = run(&mut opt, &vars, &g, 0, 10);
    eprintln!("largest parameter difference to torch.optim.AdamW over 10 steps: {worst:.2e}");
    let (state, saved) = opt.state().unwrap();
    for n in NAMES {
        assert_eq!(saved.steps[n], 10);
        for (ours, theirs) in [("m", "exp_avg"), ("v", "exp_avg_sq")] {
            let d = max_diff(&state[&format!("{ours}.{n}")], &g[&format!("{theirs}.{n}")]);
            assert!(d < 1e-6, "{theirs} of {n} off by {d}");
        }
    }
}

#[test]
fn restored_state_continues_exactly() {
    let g = golden();
    let (mut a, vars_a) = optimizer(&g);
    run(&mut a, &vars_a, &g, 0, 5);
    let (tensors, state) = a.state().unwrap();
    // a new optimiser over new vars holding the step-5 weights, with the saved state
    let (mut b, vars_b) = optimizer(&g);
    for n in NAMES {
        vars_b[n].set(vars_a[n].as_tensor()).unwrap();
    }
    b.load_state(&tensors, &state).unwrap();
    run(&mut a, &vars_a, &g, 5, 10);
    run(&mut b, &vars_b, &g, 5, 10);
    for n in NAMES {
        assert_eq!(max_diff(vars_a[n].as_tensor(), vars_b[n].as_tensor()), 0.0, "{n} differs after resume");
    }
    // a state naming an unknown parameter or the wrong shape is refused
    let mut wrong = tensors.clone();
    wrong.insert("m.a".into(), Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap());
    let (mut c, _) = optimizer(&g);
    let err = c.load_state(&wrong, &state).unwrap_err().to_string();
    assert!(err.contains("m.a") && err.contains("[3]"), "{err}");
}

#[test]
fn parameters_without_gradient_keep_no_state() {
    let g = golden();
    let (mut opt, vars) = optimizer(&g);
    let before = vars["c"].as_tensor().copy().unwrap();
    let mut only_a = BTreeMap::new();
    only_a.insert("a".to_string(), g["grad.0.a"].clone());
    opt.step(&Grads::from_map(only_a)).unwrap();
    assert_eq!(opt.state_len(), 1);
    assert_eq!(max_diff(vars["c"].as_tensor(), &before), 0.0, "no gradient, no update (not even decay)");
    let twice = ParamGroup {
        name: "x".into(),
        settings: GroupSettings { lr: 1.0, weight_decay: 0.0, betas: (0.9, 0.9), eps: 1.0 },
        params: vec![("a".into(), vars["a"].clone())],
    };
    assert!(AdamW::new(vec![twice.clone(), twice]).is_err(), "a parameter in two groups");
}

#[test]
fn clipping_matches_clip_grad_norm() {
    let g = golden();
    let mut grads = Grads::from_map(
        NAMES.iter().map(|n| (n.to_string(), g[&format!("clip.grad.{n}")].clone())).collect(),
    );
    let norm = grads.clip(1.0).unwrap();
    let want: Vec<f64> = g["clip.total_norm"].to_vec1().unwrap();
    assert!((norm - want[0]).abs() < 1e-5 * want[0], "norm {norm} vs {}", want[0]);
    for n in NAMES {
        let d = max_diff(grads.get(n).unwrap(), &g[&format!("clip.out.{n}")]);
        assert!(d < 1e-6, "{n} clipped off by {d}");
    }
    assert!((grads.global_norm().unwrap() - 1.0).abs() < 1e-5);
    // below the limit nothing changes; a NaN makes the norm non-finite and changes nothing
    let mut small =
        Grads::from_map([("x".to_string(), Tensor::new(&[0.3f32, 0.4], &Device::Cpu).unwrap())].into());
    assert!((small.clip(1.0).unwrap() - 0.5).abs() < 1e-7);
    assert_eq!(small.get("x").unwrap().to_vec1::<f32>().unwrap(), [0.3, 0.4]);
    let mut nan =
        Grads::from_map([("x".to_string(), Tensor::new(&[f32::NAN, 1.0], &Device::Cpu).unwrap())].into());
    assert!(!nan.clip(1.0).unwrap().is_finite());
}

#[test]
fn accumulation_sums_micro_batch_gradients() {
    let t = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
    let mut acc = Grads::from_map([("x".to_string(), t(&[1.0, 2.0]))].into());
    acc.accumulate(Grads::from_map([("x".to_string(), t(&[0.5, 0.5])), ("y".to_string(), t(&[3.0]))].into()))
        .unwrap();
    assert_eq!(acc.get("x").unwrap().to_vec1::<f32>().unwrap(), [1.5, 2.5]);
    assert_eq!(acc.get("y").unwrap().to_vec1::<f32>().unwrap(), [3.0]);
    assert_eq!(acc.len(), 2);
}
