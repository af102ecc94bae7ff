//! Durable file writes for the slot backends: a small file is replaced whole or not at all, and
//! an image being received lives in a partial file that disappears unless it is committed.
//!
//! Both survive a power cut at any point: a replaced file is written to a temporary file in the
//! same directory, synced, renamed over the old one, and the directory is synced so that the
//! rename itself is on disk. Every failure is a [`FileError`] naming the file and what was done.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A file operation of a slot backend failed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {path}: {source}")]
pub struct FileError {
    pub operation: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl FileError {
    /// `operation` on `path` failed with the error given to the returned closure.
    pub(crate) fn at(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| FileError {
            operation,
            path,
            source,
        }
    }
}

/// The content of `path`.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(FileError::at("read", path))
}

/// The content of `path`, or `None` when there is no such file.
pub(crate) fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::at("read", path)(e)),
    }
}

/// Makes `dir` and its parents when missing.
pub(crate) fn create_dir(dir: &Path) -> Result<(), FileError> {
    std::fs::create_dir_all(dir).map_err(FileError::at("create", dir))
}

/// Replaces `path` with `bytes` atomically (temporary file, fsync, rename, fsync of the
/// directory), mode 0644.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic_mode(path, bytes, 0o644)
}

/// [`write_atomic`] with the file's `mode`. A temporary file left by an interrupted write is
/// removed first, so it can never lend its (possibly wider) mode to the new file.
pub(crate) fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let tmp = sibling(path, ".tmp");
    remove_if_present(&tmp)?;
    let write = || -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        let mut file = opts.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        sync_parent(path)
    };
    write().map_err(FileError::at("write", path))
}

/// Syncs the directory holding `path`, so that a rename or removal in it is durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// Removes `path` if it exists; a file that is already gone is not an error.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(FileError::at("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Bytes available to an unprivileged writer on the filesystem holding `dir`.
pub(crate) fn free_space(dir: &Path) -> Result<u64, FileError> {
    let stat = rustix::fs::statvfs(dir)
        .map_err(|e| FileError::at("measure free space of", dir)(e.into()))?;
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
    pub(crate) fn create(path: PathBuf) -> Result<Self, FileError> {
        let file = File::create(&path).map_err(FileError::at("create", &path))?;
        Ok(PartFile {
            path,
            file: Some(file),
        })
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> Result<usize, FileError> {
        let written = match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(std::io::Error::other("partial file already closed")),
        };
        written.map_err(FileError::at("write", &self.path))
    }

    pub(crate) fn flush(&mut self) -> Result<(), FileError> {
        match self.file.as_mut() {
            Some(f) => f.flush().map_err(FileError::at("flush", &self.path)),
            None => Ok(()),
        }
    }

    /// Syncs the received bytes to disk and moves the file to `to` (replacing what was there).
    pub(crate) fn commit(mut self, to: &Path) -> Result<(), FileError> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(FileError::at("sync", &self.path))?;
        }
        if let Err(e) = std::fs::rename(&self.path, to) {
            // Not moved: still ours to remove.
            let _ = std::fs::remove_file(&self.path);
            return Err(FileError::at("move in", to)(e));
        }
        sync_parent(to).map_err(FileError::at("sync the directory of", to))
    }

    /// Removes the partial file.
    pub(crate) fn discard(mut self) -> Result<(), FileError> {
        self.file = None;
        remove_if_present(&self.path)?;
        sync_parent(&self.path).map_err(FileError::at("sync the directory of", &self.path))
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            if let Err(e) = remove_if_present(&self.path) {
                tracing::warn!(error = %e, "could not remove an abandoned partial update file");
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
