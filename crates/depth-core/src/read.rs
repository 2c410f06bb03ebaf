//! Why this file: every command reads files a user named — configs, lists, images, depth
//! arrays, weights. A name can point anywhere: a FIFO blocks the reader forever, `/dev/zero`
//! or `/dev/urandom` grow a buffer until the allocator fails. So every reader goes through
//! here: only regular files are opened (checked from the metadata before opening, links
//! followed), and a whole-file read takes at most the limit of its kind, checked against the
//! file's size before anything is allocated and again while reading.

use crate::error::{CoreError, Result};
use std::io::Read;
use std::path::Path;

/// Text files: configs, image lists, split files, annotations, manifests' JSON.
pub const TEXT_LIMIT: u64 = 256 << 20;
/// One image file.
pub const IMAGE_LIMIT: u64 = 1 << 30;
/// One array or depth file (`.npy`, `.pfm`, `.dpt`, 16-bit PNG).
pub const ARRAY_LIMIT: u64 = 8 << 30;

/// The metadata of `path`, which must be a regular file (after following links).
pub fn regular(path: &Path) -> Result<std::fs::Metadata> {
    let meta = std::fs::metadata(path).map_err(|e| CoreError::io(path, e))?;
    if !meta.is_file() {
        let kind = file_kind(&meta);
        return Err(CoreError::NotAFile { path: path.into(), kind });
    }
    Ok(meta)
}

/// Opens `path` for reading once it is known to be a regular file.
pub fn open(path: &Path) -> Result<std::fs::File> {
    regular(path)?;
    std::fs::File::open(path).map_err(|e| CoreError::io(path, e))
}

/// The whole of the regular file `path`, at most `limit` bytes.
pub fn bytes(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let size = regular(path)?.len();
    let too_large = |bytes| CoreError::TooLarge { path: path.into(), bytes, limit };
    if size > limit {
        return Err(too_large(size));
    }
    let file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    let mut buf = Vec::with_capacity(size as usize);
    // a file that grows while it is read is cut at the limit, not followed
    file.take(limit.saturating_add(1)).read_to_end(&mut buf).map_err(|e| CoreError::io(path, e))?;
    if buf.len() as u64 > limit {
        return Err(too_large(buf.len() as u64));
    }
    Ok(buf)
}

/// The whole of the regular text file `path` (at most [`TEXT_LIMIT`] bytes, UTF-8).
pub fn text(path: &Path) -> Result<String> {
    String::from_utf8(bytes(path, TEXT_LIMIT)?)
        .map_err(|e| CoreError::io(path, std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.toml");
        std::fs::write(&f, "x = 1\n").unwrap();
        assert_eq!(text(&f).unwrap(), "x = 1\n");
        let err = bytes(&f, 3).unwrap_err().to_string();
        assert!(err.contains("a.toml") && err.contains("6 bytes") && err.contains("3"), "{err}");
        // no limit at all still reads the whole file
        assert_eq!(bytes(&f, u64::MAX).unwrap(), b"x = 1\n");
        for (path, kind) in [(Path::new("/dev/zero"), "character device"), (dir.path(), "folder")] {
            let err = text(path).unwrap_err().to_string();
            assert!(err.contains(kind), "{err}");
        }
        // a FIFO is refused without opening it (opening would wait for a writer forever)
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(text(&fifo).unwrap_err().to_string().contains("FIFO"));
        assert!(open(&fifo).unwrap_err().to_string().contains("FIFO"));
        // a link to /dev/zero is what it points to
        let link = dir.path().join("zero.png");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(bytes(&link, IMAGE_LIMIT).unwrap_err().to_string().contains("character device"));
    }
}
