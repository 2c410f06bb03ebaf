//! Floating-point operations of one forward pass, counted as PyTorch's
//! `torch.utils.flop_counter.FlopCounterMode` counts them: 2 per multiply-add of every matmul
//! and convolution (attention's two products included, biases, norms, activations and resizes
//! not), a transposed convolution over its input grid. Benchmarks divide it by the time taken to
//! report GFLOP/s and the share of the machine's sgemm peak.

use crate::config::{Ffn, ModelConfig};

/// Multiply-adds of a k×k convolution from `c_in` to `c_out` channels over an `h`×`w` output.
fn conv(c_in: usize, c_out: usize, k: usize, (h, w): (usize, usize)) -> u64 {
    (c_in * c_out * k * k * h * w) as u64
}

/// FLOPs of [`crate::DepthAnythingV2::forward`] on a (batch, 3, h, w) input (h, w multiples of
/// the patch size).
pub fn forward_flops(cfg: &ModelConfig, batch: usize, h: usize, w: usize) -> u64 {
    let v = &cfg.vit;
    let (ph, pw) = (h / v.patch_size, w / v.patch_size);
    let c = v.embed_dim;
    let n = ph * pw + 1;
    let ffn = match v.ffn {
        Ffn::Mlp => 2 * v.ffn_hidden(),
        Ffn::SwiGlu => 3 * v.ffn_hidden(),
    };
    let per_block = (n * c * (3 * c + c + ffn)) as u64 + 2 * (n * n * c) as u64;
    let encoder = conv(3, c, v.patch_size, (ph, pw)) + v.depth as u64 * per_block;

    let (oc, f) = (cfg.head.out_channels, cfg.head.features);
    let down = ((ph - 1) / 2 + 1, (pw - 1) / 2 + 1);
    let sizes = [(4 * ph, 4 * pw), (2 * ph, 2 * pw), (ph, pw), down];
    let mut head = 0;
    for i in 0..4 {
        head += conv(c, oc[i], 1, (ph, pw));
        head += conv(oc[i], f, 3, sizes[i]);
    }
    head += conv(oc[0], oc[0], 4, (ph, pw)) + conv(oc[1], oc[1], 2, (ph, pw)) + conv(oc[3], oc[3], 3, down);
    let rcu = |s: (usize, usize)| 2 * conv(f, f, 3, s);
    // refinenet4 has one residual unit, the others two; each ends in a 1×1 conv after upsampling
    head += rcu(sizes[3]) + conv(f, f, 1, sizes[2]);
    head += 2 * rcu(sizes[2]) + conv(f, f, 1, sizes[1]);
    head += 2 * rcu(sizes[1]) + conv(f, f, 1, sizes[0]);
    let fine = (8 * ph, 8 * pw);
    head += 2 * rcu(sizes[0]) + conv(f, f, 1, fine);
    head += conv(f, f / 2, 3, fine);
    head += conv(f / 2, cfg.head.head_hidden, 3, (h, w)) + conv(cfg.head.head_hidden, 1, 1, (h, w));
    2 * batch as u64 * (encoder + head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Encoder;

    /// Counts printed by `FlopCounterMode` around the official PyTorch `DepthAnythingV2`
    /// (benches/torch_bench.py reports the same count beside every inference case).
    #[test]
    fn matches_pytorch_flop_counter() {
        for (e, h, w, torch) in [
            (Encoder::Vits, 518, 518, 115_267_534_080u64),
            (Encoder::Vits, 518, 784, 201_238_855_680),
            (Encoder::Vitb, 518, 518, 380_700_643_584),
            (Encoder::Vitl, 518, 518, 1_304_217_118_976),
            (Encoder::Vitg, 518, 518, 4_533_530_941_696),
        ] {
            assert_eq!(forward_flops(&ModelConfig::official(e), 1, h, w), torch, "{e:?} {h}×{w}");
        }
    }
}
