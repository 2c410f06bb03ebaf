//! Writing files so that a reader never sees a partial one: write a temp file in the target's
//! folder, flush it to the disk (fsync), then rename it over the target and sync the folder, so
//! that after a crash or power loss the name holds either the old file or the complete new one.
//! On any error nothing is left behind.

use crate::error::{CoreError, Result};
use std::io::Write;
use std::path::Path;

/// Writes `path` through `f`, atomically.
pub fn write_atomic(path: &Path, f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    write_atomic_seekable(path, |file| {
        let mut w = std::io::BufWriter::new(file);
        f(&mut w)?;
        w.flush()
    })
}

/// As [`write_atomic`], for a writer that must seek (a zip archive's central directory).
pub fn write_atomic_seekable(
    path: &Path,
    f: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let io = |source| CoreError::Write { path: path.into(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(&temp_prefix()).tempfile_in(dir).map_err(io)?;
    f(tmp.as_file_mut()).map_err(io)?;
    // temp files are created private (0600); a finished output is an ordinary file
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    // the rename itself is durable once the folder is synced (best effort: not every
    // filesystem lets a folder be opened for it)
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The start of every temp file's name: `.partial-<host>-<pid>-`, so that a later run can tell
/// the leftovers of a killed process from the files a live one is writing (pseudo-label shards
/// share a store, on one machine or several).
fn temp_prefix() -> String {
    format!(".partial-{}-{}-", host(), std::process::id())
}

fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().replace('-', "_"))
            .unwrap_or_else(|_| "host".into())
    })
}

/// Whether a file name is a temp file of ours whose process is gone (judged on this machine
/// only; where `/proc` does not exist nothing is judged dead).
fn is_stale_temp(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(".partial-") else { return false };
    let mut parts = rest.splitn(3, '-');
    let (Some(h), Some(pid)) = (parts.next(), parts.next()) else { return false };
    let Ok(pid) = pid.parse::<u32>() else { return false };
    h == host()
        && pid != std::process::id()
        && Path::new("/proc/self").exists()
        && !Path::new("/proc").join(pid.to_string()).exists()
}

/// Prepares a command's output folder before its work: creates it, checks that a file can be
/// written in it (so an unwritable output fails first, not after the work), and removes the
/// temp files of killed runs anywhere below it.
pub fn prepare_output_dir(dir: &Path) -> Result<()> {
    let err = |source| CoreError::Write { path: dir.into(), source };
    if dir.is_file() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "it is a file, not a folder",
        )));
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    tempfile::Builder::new().prefix(&temp_prefix()).tempfile_in(dir).map_err(err)?;
    sweep_stale_temps(dir);
    Ok(())
}

/// Checks, without creating anything, that `dir` could be created and written: it is a folder
/// where a file can be made, or its nearest existing ancestor is.
pub fn check_writable(dir: &Path) -> Result<()> {
    let err = |source| CoreError::Write { path: dir.into(), source };
    let mut at = dir;
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => {
                at = Path::new(".");
                break;
            }
        }
    }
    if !at.is_dir() {
        let what = format!("{} is a file, not a folder", at.display());
        return Err(err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, what)));
    }
    tempfile::Builder::new().prefix(&temp_prefix()).tempfile_in(at).map_err(err)?;
    Ok(())
}

/// Removes the temp files that killed runs left below `dir` (see [`prepare_output_dir`]).
pub fn sweep_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            sweep_stale_temps(&path);
        } else if is_stale_temp(&e.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_writes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_atomic(&p, |w| w.write_all(b"ok")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"ok");
        let q = dir.path().join("bad.bin");
        let err = write_atomic(&q, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert!(!q.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn leftovers_of_dead_processes_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        // pid 0 never names a user process (and has no /proc entry); our own pid is alive
        let dead = dir.path().join(format!("sub/.partial-{}-0-abc", host()));
        let mine = dir.path().join(format!("sub/{}xyz", temp_prefix()));
        let other_host = dir.path().join(".partial-elsewhere-0-abc");
        let theirs = dir.path().join(".tmpKEEP");
        for p in [&dead, &mine, &other_host, &theirs] {
            std::fs::write(p, b"partial").unwrap();
        }
        prepare_output_dir(dir.path()).unwrap();
        assert!(!dead.exists(), "a dead process's temp file is removed");
        assert!(
            mine.exists() && other_host.exists() && theirs.exists(),
            "live, foreign and other files stay"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "the writability probe is gone");
    }

    #[test]
    fn an_output_that_is_a_file_or_read_only_is_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        prepare_output_dir(&dir.path().join("new/deeper")).unwrap();
        let file = dir.path().join("a_file");
        std::fs::write(&file, b"x").unwrap();
        let err = prepare_output_dir(&file).unwrap_err().to_string();
        assert!(
            err.contains("a_file") && err.contains("cannot write") && err.contains("not a folder"),
            "{err}"
        );
        let err = prepare_output_dir(&file.join("below")).unwrap_err().to_string();
        assert!(err.contains("cannot write"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("new/deeper")).unwrap().count(),
            0,
            "the probe is removed"
        );
    }
}
