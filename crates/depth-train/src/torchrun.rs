//! Why this file: a job launched torchrun-style (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`, as torchrun and many Slurm scripts set them) has no MPI to
//! bootstrap NCCL with. The one thing NCCL needs from outside — rank 0's 128-byte unique id on
//! every rank — travels here over TCP: rank 0 listens on `MASTER_PORT + 1` (torchrun's own
//! store already holds `MASTER_PORT`), the other ranks connect to `MASTER_ADDR` and read it.
//! Nothing else runs over this: the gradients and statistics go through NCCL.

use crate::dist::{Collective, Launch};
use crate::error::{Result, TrainError};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long rank 0 waits for every rank to fetch the id, and a rank for rank 0 to listen.
const RENDEZVOUS: Duration = Duration::from_secs(300);

/// One rank of a torchrun-style job before NCCL is up: it can only hand out NCCL's id.
pub struct Torchrun {
    launch: Launch,
    addr: String,
    port: u16,
}

impl Torchrun {
    pub fn from_env(launch: Launch) -> Result<Self> {
        Self::from_vars(launch, |k| std::env::var(k).ok())
    }

    /// [`Torchrun::from_env`] over any variable lookup.
    pub fn from_vars(launch: Launch, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let missing = |name: &str| TrainError::Dist {
            reason: format!(
                "launched as rank {} of {} (RANK, WORLD_SIZE) without {name}: torchrun sets it; a script \
                 must set MASTER_ADDR and MASTER_PORT as torchrun does",
                launch.rank, launch.world
            ),
        };
        let addr = var("MASTER_ADDR").ok_or_else(|| missing("MASTER_ADDR"))?;
        let port = var("MASTER_PORT").ok_or_else(|| missing("MASTER_PORT"))?;
        let port = port.trim().parse::<u16>().ok().filter(|p| *p < u16::MAX).ok_or_else(|| {
            TrainError::Dist { reason: format!("MASTER_PORT={port:?} is not a port below 65535") }
        })?;
        Ok(Self { launch, addr, port })
    }

    fn needs_nccl(&self) -> TrainError {
        TrainError::Dist {
            reason: format!(
                "rank {} of {} launched torchrun-style: its collectives are NCCL's, on a GPU (device = \
                 \"cuda\", a build with --features nccl); on CPUs launch with `mpirun -np {}`",
                self.launch.rank, self.launch.world, self.launch.world
            ),
        }
    }

    fn serve(&self, id: &[u8; 128]) -> Result<()> {
        let port = self.port + 1;
        let fail = |what: String| TrainError::Dist { reason: format!("rank 0, port {port}: {what}") };
        let listener =
            TcpListener::bind(("0.0.0.0", port)).map_err(|e| fail(format!("cannot listen ({e})")))?;
        listener.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
        let deadline = Instant::now() + RENDEZVOUS;
        let mut served = 1;
        while served < self.launch.world {
            match listener.accept() {
                Ok((mut peer, _)) => {
                    peer.set_nonblocking(false)
                        .and_then(|_| peer.write_all(id))
                        .map_err(|e| fail(e.to_string()))?;
                    served += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    return Err(fail(format!(
                        "{served} of {} ranks came in {RENDEZVOUS:?} ({e})",
                        self.launch.world
                    )));
                }
            }
        }
        Ok(())
    }

    fn fetch(&self, id: &mut [u8; 128]) -> Result<()> {
        let (addr, port) = (self.addr.as_str(), self.port + 1);
        let deadline = Instant::now() + RENDEZVOUS;
        let fail = |what: String| TrainError::Dist {
            reason: format!("rank {}: rank 0 at {addr}:{port}: {what}", self.launch.rank),
        };
        let mut peer = loop {
            match TcpStream::connect((addr, port)) {
                Ok(p) => break p,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(fail(format!("no answer in {RENDEZVOUS:?} ({e})"))),
            }
        };
        peer.set_read_timeout(Some(RENDEZVOUS)).map_err(|e| fail(e.to_string()))?;
        peer.read_exact(id).map_err(|e| fail(format!("the id did not arrive ({e})")))
    }
}

impl Collective for Torchrun {
    fn rank(&self) -> usize {
        self.launch.rank
    }
    fn world(&self) -> usize {
        self.launch.world
    }
    fn sum_f32(&self, _: &mut [f32]) -> Result<()> {
        Err(self.needs_nccl())
    }
    fn sum_f64(&self, _: &mut [f64]) -> Result<()> {
        Err(self.needs_nccl())
    }
    fn broadcast_f32(&self, _: &mut [f32]) -> Result<()> {
        Err(self.needs_nccl())
    }
    /// torchrun's agent stops the other workers when one exits with an error.
    fn abort(&self, why: &str) -> ! {
        eprintln!("error: {why}; exiting so that the launcher stops every rank");
        std::process::exit(1)
    }
    fn broadcast_id(&self, id: &mut [u8; 128]) -> Result<()> {
        if self.launch.rank == 0 { self.serve(id) } else { self.fetch(id) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank(rank: usize, world: usize, port: u16) -> Torchrun {
        let vars = [("MASTER_ADDR", "127.0.0.1".to_string()), ("MASTER_PORT", port.to_string())];
        Torchrun::from_vars(Launch { rank, world, mpi: false }, |k| {
            vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        })
        .unwrap()
    }

    #[test]
    fn every_rank_gets_rank_zeros_id_whoever_comes_first() {
        // a free port pair: the OS picks one, it is released, port + 1 is ours for the test
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port() - 1;
        let world = 4;
        let handles: Vec<_> = (1..world)
            .map(|r| {
                std::thread::spawn(move || {
                    let mut id = [0u8; 128];
                    rank(r, world, port).broadcast_id(&mut id).unwrap();
                    id
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200)); // the others wait for rank 0
        let mut id: [u8; 128] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let sent = id;
        rank(0, world, port).broadcast_id(&mut id).unwrap();
        for h in handles {
            assert_eq!(h.join().unwrap(), sent);
        }
    }

    #[test]
    fn the_sums_need_nccl_and_the_variables_are_named() {
        let r = rank(1, 2, 29500);
        let err = r.sum_f64(&mut [1.0]).unwrap_err().to_string();
        assert!(err.contains("--features nccl") && err.contains("mpirun -np 2"), "{err}");
        let err = Torchrun::from_vars(Launch { rank: 0, world: 2, mpi: false }, |_| None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("MASTER_ADDR"), "{err}");
    }
}
