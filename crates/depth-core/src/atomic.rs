//! Writing files so that a reader never sees a partial one: write a temp file in the target's
//! folder, flush it to the disk (fsync), then rename it over the target and sync the folder, so
//! that after a crash or power loss the name holds either the old file or the complete new one.
//! On any error nothing is left behind.

use crate::error::{CoreError, Result};
use std::io::Write;
use std::path::Path;

/// Writes `path` through `f`, atomically.
pub fn write_atomic(path: &Path, f: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    let io = |source| CoreError::Write { path: path.into(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        f(&mut w).map_err(io)?;
        w.flush().map_err(io)?;
    }
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

/// Creates the folder `dir` if needed and checks that a file can be written in it, so that a
/// command fails on an unwritable output before its long work, not after.
pub fn ensure_writable_dir(dir: &Path) -> Result<()> {
    let err = |source| CoreError::Write { path: dir.into(), source };
    if dir.is_file() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "it is a file, not a folder",
        )));
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    Ok(())
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
    fn an_output_that_is_a_file_or_read_only_is_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        ensure_writable_dir(&dir.path().join("new/deeper")).unwrap();
        let file = dir.path().join("a_file");
        std::fs::write(&file, b"x").unwrap();
        let err = ensure_writable_dir(&file).unwrap_err().to_string();
        assert!(
            err.contains("a_file") && err.contains("cannot write") && err.contains("not a folder"),
            "{err}"
        );
        let err = ensure_writable_dir(&file.join("below")).unwrap_err().to_string();
        assert!(err.contains("cannot write"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("new/deeper")).unwrap().count(),
            0,
            "the probe is removed"
        );
    }
}
