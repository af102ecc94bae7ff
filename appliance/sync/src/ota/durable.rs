//! Durable file writes for the slot backends: a small file is replaced whole or not at all, and
//! an image being received lives in a partial file that disappears unless it is committed.
//!
//! Both survive a power cut at any point: a replaced file is written to a temporary file in the
//! same directory, synced, renamed over the old one, and the directory is synced so that the
//! rename itself is on disk.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` atomically (temporary file, fsync, rename, fsync of the
/// directory).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = sibling(path, ".tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Syncs the directory holding `path`, so that a rename or removal in it is durable.
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// Removes `path` if it exists; a file that is already gone is not an error.
pub(crate) fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Bytes available to an unprivileged writer on the filesystem holding `dir`.
pub(crate) fn free_space(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// `path` with `suffix` added to its file name (`image` → `image.part`).
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// A file being received. Dropped without [`PartFile::commit`], it is removed, so an update
/// that fails or is abandoned halfway leaves nothing behind.
#[derive(Debug)]
pub(crate) struct PartFile {
    path: PathBuf,
    file: Option<File>,
}

impl PartFile {
    /// Creates (or truncates a stale) partial file.
    pub(crate) fn create(path: PathBuf) -> std::io::Result<Self> {
        let file = File::create(&path)?;
        Ok(PartFile {
            path,
            file: Some(file),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(std::io::Error::other("partial file already closed")),
        }
    }

    pub(crate) fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    /// Syncs the received bytes to disk and moves the file to `to` (replacing what was there).
    pub(crate) fn commit(mut self, to: &Path) -> std::io::Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all()?;
        }
        if let Err(e) = std::fs::rename(&self.path, to) {
            // Not moved: still ours to remove.
            let _ = std::fs::remove_file(&self.path);
            return Err(e);
        }
        sync_parent(to)
    }

    /// Removes the partial file.
    pub(crate) fn discard(mut self) -> std::io::Result<()> {
        self.file = None;
        remove_if_present(&self.path)?;
        sync_parent(&self.path)
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            if let Err(e) = remove_if_present(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove an abandoned partial update file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boot.json");
        write_atomic(&path, b"first, longer content").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(!sibling(&path, ".tmp").exists());
    }

    #[test]
    fn a_partial_file_is_gone_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("image.part");
        let target = dir.path().join("image");

        let mut dropped = PartFile::create(part.clone()).unwrap();
        dropped.write(b"half").unwrap();
        drop(dropped);
        assert!(!part.exists());

        let mut discarded = PartFile::create(part.clone()).unwrap();
        discarded.write(b"half").unwrap();
        discarded.discard().unwrap();
        assert!(!part.exists());

        let mut kept = PartFile::create(part.clone()).unwrap();
        kept.write(b"whole").unwrap();
        kept.commit(&target).unwrap();
        assert!(!part.exists());
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        assert!(free_space(dir.path()).unwrap() > 0);
    }
}
