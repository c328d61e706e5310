//! Small filesystem helpers: atomic writes and copies, and file hashing.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one:
/// a temporary file in the same folder, flushed to disk, then renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_atomic(path, |f| f.write_all(bytes))
}

/// Copies `from` to `to` so that readers see either the old file or the whole copy (a
/// temporary copy beside `to`, flushed, then renamed over it).
///
/// Errors: [`Error::Io`] naming `from` (cannot be read) or `to` (cannot be written).
pub fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    let mut src = fs::File::open(from).map_err(|e| Error::io(from, e))?;
    replace_atomic(to, |f| std::io::copy(&mut src, f).map(drop))
}

/// Fills a temporary file beside `path` with `fill`, flushes it and renames it over `path`;
/// the temporary file is removed when anything fails.
fn replace_atomic(
    path: &Path,
    fill: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", unique()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// A name part that no other write of this process, nor (most likely) of another process,
/// uses at the same time: the process id alone repeats across containers, where every entry
/// point is process 1, and several pods may write into one shared volume.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}.{}.{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(lower_hex(&h.finalize()))
}

/// Bytes as lowercase hex, two digits each (how the project writes SHA-256 digests).
pub fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_hash_is_sha256() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"old").expect("write");
        write_atomic(&p, b"abc").expect("write");
        assert_eq!(fs::read(&p).expect("read"), b"abc");
        assert_eq!(
            sha256_file(&p).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temporary file left"
        );
        let q = dir.path().join("b.txt");
        copy_atomic(&p, &q).expect("copy");
        assert_eq!(fs::read(&q).expect("read"), b"abc");
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 2);
        assert!(copy_atomic(&dir.path().join("absent"), &q).is_err());
    }
}
