//! A bounded cache of open files ([`Options::max_open_files`](crate::Options)): run files are
//! read with `pread` through it, so a database of thousands of shards holds at most that many
//! descriptors for them, whatever its size. Files are opened on demand and the least recently
//! used one is closed when the cache is full. Only immutable files (runs) go through it: a
//! file with unsynced writes is never closed and reopened, because a new descriptor would not
//! see a writeback error reported before it was opened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::fs::{FileSystem, FsFile, OpenMode};
use crate::limits::RLIMIT_NOFILE_DIVISOR;

/// The cache capacity for a request of `max_open_files`: at most the soft descriptor limit
/// divided by [`RLIMIT_NOFILE_DIVISOR`] (when the limit can be read from `/proc/self/limits`),
/// and at least 1.
pub fn open_files_budget(max_open_files: usize) -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        });
    match soft {
        Some(limit) => max_open_files.min(limit / RLIMIT_NOFILE_DIVISOR),
        None => max_open_files,
    }
    .max(1)
}

/// The cache. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct FileCache {
    fs: Arc<dyn FileSystem>,
    capacity: usize,
    inner: Mutex<Lru>,
}

#[derive(Debug, Default)]
struct Lru {
    files: HashMap<PathBuf, (Arc<dyn FsFile>, u64)>,
    tick: u64,
    opened: u64,
}

impl FileCache {
    /// A cache that keeps at most `capacity` files of `fs` open (at least 1).
    pub fn new(capacity: usize, fs: Arc<dyn FileSystem>) -> FileCache {
        FileCache {
            fs,
            capacity: capacity.max(1),
            inner: Mutex::new(Lru::default()),
        }
    }

    /// The open file at `path` (opened read-only if the cache does not hold it). A caller may
    /// keep the `Arc` for one operation; the descriptor closes when the cache has evicted it
    /// and the last such `Arc` is gone.
    pub fn get(&self, path: &Path) -> Result<Arc<dyn FsFile>> {
        let mut lru = self.inner.lock();
        lru.tick += 1;
        let tick = lru.tick;
        if let Some((file, used)) = lru.files.get_mut(path) {
            *used = tick;
            return Ok(file.clone());
        }
        if lru.files.len() >= self.capacity {
            let oldest = lru
                .files
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(p, _)| p.clone());
            if let Some(p) = oldest {
                lru.files.remove(&p);
            }
        }
        let file = self
            .fs
            .open(path, OpenMode::Read)
            .map_err(|e| Error::io("opening", path, e))?;
        lru.opened += 1;
        lru.files.insert(path.to_path_buf(), (file.clone(), tick));
        Ok(file)
    }

    /// The file system the cache opens files of.
    pub fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    /// Closes the file at `path`, if open (before it is deleted).
    pub fn forget(&self, path: &Path) {
        self.inner.lock().files.remove(path);
    }

    /// Files open in the cache now.
    pub fn open_files(&self) -> usize {
        self.inner.lock().files.len()
    }

    /// Files opened since the cache was made (misses).
    pub fn opened(&self) -> u64 {
        self.inner.lock().opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_holds_at_most_its_capacity_and_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..4).map(|i| dir.path().join(format!("f{i}"))).collect();
        for p in &paths {
            std::fs::write(p, b"x").unwrap();
        }
        let cache = FileCache::new(2, crate::fs::StdFs::shared());
        cache.get(&paths[0]).unwrap();
        cache.get(&paths[1]).unwrap();
        cache.get(&paths[0]).unwrap(); // 1 is now the least recently used
        cache.get(&paths[2]).unwrap();
        assert_eq!(cache.open_files(), 2);
        assert_eq!(cache.opened(), 3);
        cache.get(&paths[0]).unwrap(); // still open: no new open
        assert_eq!(cache.opened(), 3);
        cache.get(&paths[1]).unwrap(); // was evicted: opened again
        assert_eq!(cache.opened(), 4);
        cache.forget(&paths[1]);
        assert_eq!(cache.open_files(), 1);
        let e = cache.get(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }

    #[test]
    fn the_budget_stays_under_the_descriptor_limit() {
        let text = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let soft: usize = line.split_whitespace().nth(3).unwrap().parse().unwrap();
        assert_eq!(open_files_budget(usize::MAX), soft / RLIMIT_NOFILE_DIVISOR);
        assert_eq!(open_files_budget(3), 3.min(soft / RLIMIT_NOFILE_DIVISOR));
        assert_eq!(open_files_budget(0), 1);
    }
}
