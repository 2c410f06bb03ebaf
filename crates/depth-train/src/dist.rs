//! Data parallelism: the ranks of one job, found from the launcher's environment, and the
//! collectives the trainer needs (sum, broadcast) on an engine the field trusts — MPI (OpenMPI,
//! the `mpi` feature) for the CPU, NCCL (the `nccl` feature, `nccl.rs`) for GPUs. No collective
//! is written here: one process per rank, the launcher (`mpirun -np N`, `torchrun
//! --nproc-per-node N`) starts them and kills the rest when one dies.
//!
//! Candle's backward returns every gradient at its end (no per-tensor hooks), so the gradients
//! are summed after it, in buckets of [`BUCKET`] values, not overlapped with it as PyTorch's DDP
//! does. On a GPU they stay on it: [`on_device`] puts NCCL under the job once the device is
//! open, bootstrapped by the launcher's collective (MPI, or torchrun's `MASTER_ADDR`).

use crate::error::{Result, TrainError};
use candle_core::{Device, Tensor};
use std::sync::Arc;

/// Gradient values per all-reduce call (16 MiB of f32): bounds the messages, not the copy.
pub const BUCKET: usize = 4 << 20;

/// Where this process stands in its job, as the launcher said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world: usize,
    /// Started by an MPI launcher (mpirun/mpiexec), so MPI is the backend.
    pub mpi: bool,
}

impl Launch {
    /// The job of one process.
    pub const SOLO: Launch = Launch { rank: 0, world: 1, mpi: false };

    /// OpenMPI's `OMPI_COMM_WORLD_RANK/SIZE`, MPICH's and Slurm's `PMI_RANK/SIZE`, or torchrun's
    /// `RANK`/`WORLD_SIZE`; one process when none is set.
    pub fn from_env() -> Result<Launch> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Launch::from_env`] over any variable lookup (tested without touching the environment).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Launch> {
        let launchers = [
            ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", true),
            ("PMI_RANK", "PMI_SIZE", true),
            ("RANK", "WORLD_SIZE", false),
        ];
        for (rank_var, world_var, mpi) in launchers {
            let (Some(rank), Some(world)) = (var(rank_var), var(world_var)) else { continue };
            let parse = |name: &str, v: &str| {
                v.trim().parse::<usize>().map_err(|_| TrainError::Dist {
                    reason: format!(
                        "{name}={v:?} is not a number; the launcher sets it, do not set it by hand"
                    ),
                })
            };
            let (rank, world) = (parse(rank_var, &rank)?, parse(world_var, &world)?);
            if world == 0 || rank >= world {
                return Err(TrainError::Dist {
                    reason: format!("{rank_var}={rank} is not below {world_var}={world}"),
                });
            }
            return Ok(Launch { rank, world, mpi });
        }
        Ok(Self::SOLO)
    }
}

/// The collectives of data-parallel training. Every rank calls them in the same order with
/// the same lengths; every rank gets the same bits back.
pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// Element-wise sum over the ranks, in place.
    fn sum_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Element-wise sum over the ranks, in place.
    fn sum_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Rank 0's values on every rank.
    fn broadcast_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Ends the whole job after `why` is printed: the other ranks may be waiting in a
    /// collective this rank will never join.
    fn abort(&self, why: &str) -> !;
    /// Element-wise sum over the ranks of a float32 tensor, on its device. This default goes
    /// through the host ([`sum_f32`](Self::sum_f32)); NCCL sums on the GPU.
    fn sum_tensor(&self, t: &Tensor) -> Result<Tensor> {
        let mut v = t.flatten_all()?.to_vec1::<f32>()?;
        self.sum_f32(&mut v)?;
        Ok(Tensor::from_vec(v, t.shape(), t.device())?)
    }
    /// Rank 0's 128 bytes on every rank (NCCL's unique id). This default sends each byte as
    /// an exact float32 through [`broadcast_f32`](Self::broadcast_f32).
    fn broadcast_id(&self, id: &mut [u8; 128]) -> Result<()> {
        let mut v: Vec<f32> = id.iter().map(|&b| f32::from(b)).collect();
        self.broadcast_f32(&mut v)?;
        for (b, x) in id.iter_mut().zip(v) {
            *b = x as u8;
        }
        Ok(())
    }
}

/// One process: every collective is the identity.
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn sum_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn sum_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn abort(&self, why: &str) -> ! {
        eprintln!("error: {why}");
        std::process::exit(1)
    }
}

/// The job this process belongs to: [`Solo`] when launched alone, MPI under `mpirun`. Keep the
/// returned value until the process ends: MPI is finalised when it is dropped and cannot be
/// started again in the same process.
pub fn connect() -> Result<Arc<dyn Collective>> {
    let launch = Launch::from_env()?;
    if launch.world == 1 {
        return Ok(Arc::new(Solo));
    }
    if !launch.mpi {
        return Ok(Arc::new(crate::torchrun::Torchrun::from_env(launch)?));
    }
    mpi_backend::connect(launch)
}

/// The job's collective for gradients on `device`: NCCL on a GPU of a job of several ranks
/// (a build with the `nccl` feature), else `host` itself.
pub fn on_device(host: Arc<dyn Collective>, device: &Device) -> Result<Arc<dyn Collective>> {
    if host.world() == 1 || !device.is_cuda() {
        return Ok(host);
    }
    #[cfg(feature = "nccl")]
    {
        Ok(Arc::new(crate::nccl::Nccl::connect(host, device)?))
    }
    #[cfg(not(feature = "nccl"))]
    {
        tracing::warn!(
            "gradients go through the host ({} ranks on CUDA without NCCL): build with --features nccl",
            host.world()
        );
        Ok(host)
    }
}

#[cfg(feature = "mpi")]
mod mpi_backend {
    use super::{Collective, Launch};
    use crate::error::{Result, TrainError};
    use mpi::Threading;
    use mpi::collective::SystemOperation;
    use mpi::environment::Universe;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;
    use std::sync::{Arc, Mutex};

    /// MPI's world communicator. MPI is started at its SERIALIZED level (any thread may call,
    /// one call at a time): the trainer's calls come from whichever thread holds it, and the
    /// mutex keeps them one at a time.
    pub struct Mpi {
        world: Mutex<SimpleCommunicator>,
        rank: usize,
        size: usize,
        /// Finalises MPI when dropped (after the communicator).
        _universe: Universe,
    }

    // SAFETY: MPI runs at `Threading::Serialized` (checked in `connect`): calls may come from
    // any thread as long as no two overlap, which the mutex guarantees; the universe is only
    // dropped.
    unsafe impl Send for Mpi {}
    unsafe impl Sync for Mpi {}

    pub fn connect(launch: Launch) -> Result<Arc<dyn Collective>> {
        let (universe, level) =
            mpi::initialize_with_threading(Threading::Serialized).ok_or_else(|| TrainError::Dist {
                reason: "MPI is already initialised in this process: connect once and keep the job".into(),
            })?;
        if level < Threading::Serialized {
            return Err(TrainError::Dist {
                reason: format!(
                    "this MPI provides thread level {level:?}; the trainer needs Serialized (calls from \
                     any thread, one at a time): use an MPI built with thread support (OpenMPI has it)"
                ),
            });
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        if (rank, size) != (launch.rank, launch.world) {
            return Err(TrainError::Dist {
                reason: format!(
                    "the launcher says rank {} of {}, MPI says rank {rank} of {size}: mixed MPI installations?",
                    launch.rank, launch.world
                ),
            });
        }
        Ok(Arc::new(Mpi { world: Mutex::new(world), rank, size, _universe: universe }))
    }

    impl Mpi {
        fn comm(&self) -> std::sync::MutexGuard<'_, SimpleCommunicator> {
            self.world.lock().expect("an MPI call panicked")
        }
    }

    impl Collective for Mpi {
        fn rank(&self) -> usize {
            self.rank
        }
        fn world(&self) -> usize {
            self.size
        }
        fn sum_f32(&self, buf: &mut [f32]) -> Result<()> {
            let comm = self.comm();
            for chunk in buf.chunks_mut(super::BUCKET) {
                let send = chunk.to_vec();
                comm.all_reduce_into(&send[..], chunk, SystemOperation::sum());
            }
            Ok(())
        }
        fn sum_f64(&self, buf: &mut [f64]) -> Result<()> {
            let send = buf.to_vec();
            self.comm().all_reduce_into(&send[..], buf, SystemOperation::sum());
            Ok(())
        }
        fn broadcast_f32(&self, buf: &mut [f32]) -> Result<()> {
            let comm = self.comm();
            let root = comm.process_at_rank(0);
            for chunk in buf.chunks_mut(super::BUCKET) {
                root.broadcast_into(chunk);
            }
            Ok(())
        }
        fn abort(&self, why: &str) -> ! {
            eprintln!("error: {why}; stopping every rank of the job");
            // a poisoned lock (a panic inside a call) still holds the communicator
            let comm = self.world.lock().unwrap_or_else(|p| p.into_inner());
            comm.abort(1)
        }
    }
}

#[cfg(not(feature = "mpi"))]
mod mpi_backend {
    use super::{Collective, Launch};
    use crate::error::{Result, TrainError};
    use std::sync::Arc;

    pub fn connect(launch: Launch) -> Result<Arc<dyn Collective>> {
        Err(TrainError::Dist {
            reason: format!(
                "launched by mpirun as rank {} of {}, but this build has no MPI backend: build with \
                 `--features mpi` (needs OpenMPI: apt-get install libopenmpi-dev openmpi-bin libclang-dev)",
                launch.rank, launch.world
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(vars: &[(&str, &str)]) -> Result<Launch> {
        Launch::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn the_launchers_environment_gives_rank_and_world() {
        assert_eq!(launch(&[]).unwrap(), Launch::SOLO);
        let ompi = launch(&[("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "4")]).unwrap();
        assert_eq!(ompi, Launch { rank: 1, world: 4, mpi: true });
        let pmi = launch(&[("PMI_RANK", "0"), ("PMI_SIZE", "2")]).unwrap();
        assert_eq!(pmi, Launch { rank: 0, world: 2, mpi: true });
        let torchrun = launch(&[("RANK", "3"), ("WORLD_SIZE", "8")]).unwrap();
        assert_eq!(torchrun, Launch { rank: 3, world: 8, mpi: false });
        // OpenMPI's own variables win over a stray RANK
        let both = launch(&[
            ("RANK", "5"),
            ("WORLD_SIZE", "8"),
            ("OMPI_COMM_WORLD_RANK", "0"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
        ]);
        assert_eq!(both.unwrap(), Launch { rank: 0, world: 2, mpi: true });
        // a rank alone is no launch
        assert_eq!(launch(&[("RANK", "1")]).unwrap(), Launch::SOLO);
    }

    #[test]
    fn a_bad_launch_environment_is_named() {
        let e = launch(&[("RANK", "2"), ("WORLD_SIZE", "2")]).unwrap_err().to_string();
        assert!(e.contains("RANK=2") && e.contains("WORLD_SIZE=2"), "{e}");
        let e = launch(&[("PMI_RANK", "x"), ("PMI_SIZE", "2")]).unwrap_err().to_string();
        assert!(e.contains("PMI_RANK") && e.contains("\"x\""), "{e}");
    }

    #[test]
    fn solo_collectives_are_the_identity() {
        let mut a = [1.5f32, -2.0];
        let mut b = [3.25f64];
        Solo.sum_f32(&mut a).unwrap();
        Solo.broadcast_f32(&mut a).unwrap();
        Solo.sum_f64(&mut b).unwrap();
        assert_eq!((a, b, Solo.rank(), Solo.world()), ([1.5, -2.0], [3.25], 0, 1));
    }
}
