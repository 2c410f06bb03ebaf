//! Why this file: a client can make a large result cheaply (a 73 KB PNG of 5000×5000 zeros has a
//! 100 MB depth), and the page downloads it later, or never. So a result is kept once, as its
//! depth alone, under a random id, and the store as a whole keeps within a byte budget and a
//! time: the oldest result goes first, and every one goes after its time.

use depth_models::DepthMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One kept result.
pub(super) struct Stored {
    pub depth: DepthMap,
    made: Instant,
}

impl Stored {
    fn bytes(&self) -> u64 {
        4 * self.depth.data.len() as u64
    }
}

pub(super) struct Results {
    /// Oldest first.
    kept: Mutex<VecDeque<(String, Arc<Stored>)>>,
    budget: u64,
    ttl: Duration,
}

impl Results {
    pub(super) fn new(budget: u64, ttl: Duration) -> Self {
        Self { kept: Mutex::new(VecDeque::new()), budget, ttl }
    }

    /// Keeps `depth` and returns its id; None when it alone is larger than the budget. Older
    /// results are dropped to make room (a download already under way keeps its own copy of
    /// the handle, so it finishes).
    pub(super) fn insert(&self, depth: DepthMap) -> Option<String> {
        let stored = Arc::new(Stored { depth, made: Instant::now() });
        if stored.bytes() > self.budget {
            return None;
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let mut kept = self.kept.lock().expect("the results lock");
        self.expire(&mut kept);
        let mut total: u64 = kept.iter().map(|(_, s)| s.bytes()).sum();
        while total + stored.bytes() > self.budget {
            let Some((_, old)) = kept.pop_front() else { break };
            total -= old.bytes();
        }
        kept.push_back((id.clone(), stored));
        Some(id)
    }

    /// The result of `id`, while it is kept.
    pub(super) fn get(&self, id: &str) -> Option<Arc<Stored>> {
        let mut kept = self.kept.lock().expect("the results lock");
        self.expire(&mut kept);
        kept.iter().find(|(k, _)| k == id).map(|(_, s)| s.clone())
    }

    fn expire(&self, kept: &mut VecDeque<(String, Arc<Stored>)>) {
        while kept.front().is_some_and(|(_, s)| s.made.elapsed() > self.ttl) {
            kept.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(n: usize) -> DepthMap {
        DepthMap { width: n as u32, height: 1, data: vec![1.0; n] }
    }

    #[test]
    fn the_oldest_go_first_and_nothing_outlives_its_time() {
        let r = Results::new(40, Duration::from_secs(3600));
        let a = r.insert(map(4)).unwrap();
        let b = r.insert(map(4)).unwrap();
        assert!(r.get(&a).is_some() && r.get(&b).is_some());
        // 16 + 16 + 16 > 40: a goes
        let c = r.insert(map(4)).unwrap();
        assert!(r.get(&a).is_none() && r.get(&b).is_some() && r.get(&c).is_some());
        assert!(r.insert(map(11)).is_none(), "larger than the whole budget");
        assert!(r.get("not-an-id").is_none());
        let short = Results::new(40, Duration::from_millis(1));
        let d = short.insert(map(1)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.get(&d).is_none());
    }
}
