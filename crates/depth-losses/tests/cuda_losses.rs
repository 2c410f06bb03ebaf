//! Every loss and the full objective on a CUDA device (build with `--features cuda`) against the
//! CPU at a 518² crop: value and gradient w.r.t. the prediction. Unverified until a device run
//! (docs/gpu.md says which have run).
#![cfg(feature = "cuda")]

use candle_core::{Device, Tensor, Var};
use depth_losses::{Objective, gradient_matching_loss, silog_loss, ssi_loss};

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    depth_core::fixtures::max_rel_diff(a, b).unwrap()
}

type Loss = fn(&Tensor, &Tensor, &Tensor) -> Tensor;

#[test]
fn losses_on_cuda_match_the_cpu_at_518() {
    let cuda = Device::new_cuda(0).unwrap();
    let (b, h, w) = (2, 518, 518);
    let pred = (Tensor::rand(0f32, 1.0, (b, h, w), &Device::Cpu).unwrap() + 0.1).unwrap();
    let target = (Tensor::rand(0f32, 1.0, (b, h, w), &Device::Cpu).unwrap() + 0.1).unwrap();
    // a border and a band of invalid pixels
    let rows = Tensor::arange(0u32, h as u32, &Device::Cpu).unwrap().reshape((1, h, 1)).unwrap();
    let cols = Tensor::arange(0u32, w as u32, &Device::Cpu).unwrap().reshape((1, 1, w)).unwrap();
    let mask = (rows.broadcast_ge(&Tensor::new(&[[[8u32]]], &Device::Cpu).unwrap()).unwrap())
        .broadcast_mul(&cols.broadcast_lt(&Tensor::new(&[[[500u32]]], &Device::Cpu).unwrap()).unwrap())
        .unwrap()
        .broadcast_as((b, h, w))
        .unwrap()
        .contiguous()
        .unwrap();
    let cases: Vec<(&str, Loss)> = vec![
        ("ssi", |p, g, m| ssi_loss(p, g, m, &[0.0, 0.0]).unwrap()),
        ("ssi_trim10", |p, g, m| ssi_loss(p, g, m, &[0.1, 0.1]).unwrap()),
        ("gm4", |p, g, m| gradient_matching_loss(p, g, m, 4).unwrap()),
        ("objective", |p, g, m| Objective::default().loss(p, g, m, &[true, false]).unwrap()),
        ("silog", |p, g, m| silog_loss(p, g, m, 0.5).unwrap()),
    ];
    for (name, loss) in cases {
        let run = |dev: &Device| {
            let p = Var::from_tensor(&pred.to_device(dev).unwrap()).unwrap();
            let (g, m) = (target.to_device(dev).unwrap(), mask.to_device(dev).unwrap());
            let l = loss(p.as_tensor(), &g, &m);
            let grads = l.backward().unwrap();
            (l, grads.get(p.as_tensor()).expect("no gradient").clone())
        };
        let ((lc, gc), (lg, gg)) = (run(&Device::Cpu), run(&cuda));
        let (e_loss, e_grad) = (rel(&lg, &lc), rel(&gg, &gc));
        println!("cuda loss {name}: value rel {e_loss:.2e}, gradient rel {e_grad:.2e}");
        assert!(e_loss < 1e-4 && e_grad < 1e-4, "{name}: value {e_loss:.2e}, gradient {e_grad:.2e}");
    }
}
