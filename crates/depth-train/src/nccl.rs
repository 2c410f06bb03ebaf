//! Why this file: on GPUs the gradients of data-parallel training are summed by NCCL on the
//! devices, as PyTorch's DDP does, instead of travelling to the host and through MPI. NCCL
//! comes through cudarc's bindings (candle's own cudarc, its `nccl` feature), on the stream
//! candle's kernels run on, so the sum is ordered after the backward that made the gradients.
//! The launcher's collective (MPI under mpirun, TCP under torchrun) only hands rank 0's unique
//! id to the others and, under mpirun, ends the job when a rank fails.
//!
//! UNVERIFIED: compiled here against NCCL 2.x from PyPI, never run on a GPU (docs/gpu.md).

use crate::dist::{BUCKET, Collective};
use crate::error::{Result, TrainError};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::CudaSlice;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// A rank's NCCL communicator, on the CUDA device the trainer uses.
pub struct Nccl {
    comm: Mutex<Comm>,
    device: CudaDevice,
    host: Arc<dyn Collective>,
}

// SAFETY: an NCCL communicator may be used from any thread as long as two calls do not overlap;
// the mutex keeps them one at a time.
unsafe impl Send for Nccl {}
unsafe impl Sync for Nccl {}

fn nccl_error(what: &str, e: impl std::fmt::Debug) -> TrainError {
    TrainError::Dist { reason: format!("NCCL {what}: {e:?}") }
}

impl Nccl {
    /// Joins the job's NCCL communicator: rank 0 makes the id, `host` hands it out.
    pub fn connect(host: Arc<dyn Collective>, device: &Device) -> Result<Self> {
        let Device::Cuda(cuda) = device else {
            return Err(TrainError::Dist { reason: "NCCL needs a CUDA device".into() });
        };
        let mut id = [0u8; 128];
        if host.rank() == 0 {
            let made = Id::new().map_err(|e| nccl_error("unique id", e))?;
            for (b, c) in id.iter_mut().zip(made.internal()) {
                *b = *c as u8;
            }
        }
        host.broadcast_id(&mut id)?;
        let id = Id::uninit(id.map(|b| b as std::ffi::c_char));
        let comm = Comm::from_rank(cuda.cuda_stream(), host.rank(), host.world(), id)
            .map_err(|e| nccl_error("init", e))?;
        tracing::info!("NCCL: rank {} of {} on {:?}", host.rank(), host.world(), cuda.id());
        Ok(Self { comm: Mutex::new(comm), device: cuda.clone(), host })
    }

    fn comm(&self) -> std::sync::MutexGuard<'_, Comm> {
        self.comm.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sums a host buffer on the device (the statistics; small).
    fn sum_host<T: candle_core::WithDType>(&self, buf: &mut [T]) -> Result<()> {
        let t = Tensor::from_slice(buf, buf.len(), &Device::Cuda(self.device.clone()))?;
        let summed = t.apply_op1_no_bwd(&AllReduce { nccl: self })?.to_vec1::<T>()?;
        buf.copy_from_slice(&summed);
        Ok(())
    }
}

impl Collective for Nccl {
    fn rank(&self) -> usize {
        self.host.rank()
    }
    fn world(&self) -> usize {
        self.host.world()
    }
    fn sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.sum_host(buf)
    }
    fn sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.sum_host(buf)
    }
    fn broadcast_f32(&self, buf: &mut [f32]) -> Result<()> {
        // rank 0's values: the others contribute zeros to a sum
        if self.rank() != 0 {
            buf.fill(0.0);
        }
        self.sum_host(buf)
    }
    fn abort(&self, why: &str) -> ! {
        self.host.abort(why)
    }
    fn sum_tensor(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.apply_op1_no_bwd(&AllReduce { nccl: self })?)
    }
}

/// The sum over the ranks of a tensor, into a new buffer, in buckets of [`BUCKET`] values.
struct AllReduce<'a> {
    nccl: &'a Nccl,
}

impl AllReduce<'_> {
    fn reduce<T>(&self, src: &CudaSlice<T>, layout: &Layout) -> candle_core::Result<CudaSlice<T>>
    where
        T: candle_core::cuda_backend::cudarc::nccl::safe::NcclType
            + candle_core::cuda_backend::cudarc::driver::DeviceRepr
            + candle_core::cuda_backend::cudarc::driver::ValidAsZeroBits,
    {
        let n = layout.shape().elem_count();
        let src = src.slice(layout.start_offset()..layout.start_offset() + n);
        let mut dst = self.nccl.device.alloc_zeros::<T>(n)?;
        let comm = self.nccl.comm();
        let mut at = 0;
        while at < n {
            let end = (at + BUCKET).min(n);
            let part = src.slice(at..end);
            let mut out = dst.slice_mut(at..end);
            comm.all_reduce(&part, &mut out, &ReduceOp::Sum)
                .map_err(|e| candle_core::Error::Msg(format!("NCCL all-reduce: {e:?}")))?;
            at = end;
        }
        Ok(dst)
    }
}

impl CustomOp1 for AllReduce<'_> {
    fn name(&self) -> &'static str {
        "nccl-all-reduce"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("NCCL sums CUDA tensors only")
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        if !l.is_contiguous() {
            candle_core::bail!("NCCL all-reduce: the tensor must be contiguous");
        }
        let device = s.device().clone();
        let out = match s.dtype() {
            DType::F32 => CudaStorage::wrap_cuda_slice(self.reduce(s.as_cuda_slice::<f32>()?, l)?, device),
            DType::F64 => CudaStorage::wrap_cuda_slice(self.reduce(s.as_cuda_slice::<f64>()?, l)?, device),
            other => candle_core::bail!("NCCL all-reduce of {other:?}: float32 or float64 only"),
        };
        Ok((out, l.shape().clone()))
    }
}
