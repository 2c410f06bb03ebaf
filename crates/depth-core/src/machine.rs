//! Why this file: sizes a user sets (a batch, a crop, a number of workers) are checked against
//! the machine before anything is allocated, so that an impossible run is refused with the
//! setting named instead of dying in the allocator with a partial run folder behind.

/// The memory the kernel says is available to a new allocation now (`MemAvailable`), in bytes;
/// None where it cannot tell (not Linux).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_machine_has_some_memory() {
        let m = super::available_memory().expect("Linux reports MemAvailable");
        assert!(m > 1 << 20, "{m}");
    }
}
