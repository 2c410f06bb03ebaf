//! NCCL on the one GPU of a device machine (build with `--features nccl`): a communicator of
//! one rank initialises, and its sums and broadcast give back what went in, in float32 over
//! several buckets and in float64. More ranks are exercised on paper only (docs/distributed.md).
#![cfg(feature = "nccl")]

use candle_core::{Device, Tensor};
use depth_train::dist::{BUCKET, Collective};
use depth_train::{Solo, nccl::Nccl};
use std::sync::Arc;

#[test]
fn a_one_rank_nccl_job_sums_on_the_device() {
    let cuda = Device::new_cuda(0).unwrap();
    let nccl = Nccl::connect(Arc::new(Solo), &cuda).unwrap();
    assert_eq!((nccl.rank(), nccl.world()), (0, 1));
    let n = 2 * BUCKET + 3;
    let x = Tensor::randn(0f32, 1.0, n, &cuda).unwrap();
    let summed = nccl.sum_tensor(&x).unwrap();
    assert!(summed.device().is_cuda());
    let d = (summed - &x).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(d, 0.0);
    let mut stats = [1.5f64, -2.0, 1e300];
    nccl.sum_f64(&mut stats).unwrap();
    assert_eq!(stats, [1.5, -2.0, 1e300]);
    let mut values = [3.0f32; 5];
    nccl.broadcast_f32(&mut values).unwrap();
    assert_eq!(values, [3.0; 5]);
    println!("NCCL world 1: sum of {n} float32 values in 3 buckets, float64 stats and broadcast exact");
}
