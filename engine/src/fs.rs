//! The file-system seam: every file operation of the kernel, the WAL and the indexes goes
//! through [`FileSystem`] and [`FsFile`], so that tests can put a simulated file system under a
//! whole database (one that loses power, tears writes and fails chosen calls) and embedders can
//! put their own. [`StdFs`], the default, is `std::fs` on the host.
//!
//! # Contract
//!
//! - Nothing written is durable until [`FsFile::sync_data`] on that file returns `Ok`; after a
//!   power loss a file holds its last synced bytes, possibly followed by a prefix of what was
//!   written after (the last write possibly torn).
//! - A create, rename or remove in a directory is durable only once [`FileSystem::sync_dir`] of
//!   that directory returns `Ok`; before that it may or may not survive a power loss.
//! - A failed `sync_data` may have lost the file's dirty data: the caller must not report
//!   anything written to it as durable again (the kernel poisons the WAL until reopen).
//! - [`FsFile::map`] is only used on files that are never written again (runs, indexes).
//! - Errors are `std::io::Error`s; the kernel wraps them with the path and the operation.

use std::ffi::OsString;
use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// How [`FileSystem::open`] opens a file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, read only.
    Read,
    /// An existing file, read and write.
    ReadWrite,
    /// A new file, read and write; fails with `AlreadyExists` if the name is taken.
    CreateNew,
    /// A file for writing, created or truncated to zero bytes.
    Truncate,
}

/// One directory entry, as [`FileSystem::list`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (not its path).
    pub name: OsString,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// A file's metadata, as [`FileSystem::metadata`] returns it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Length in bytes (0 for a directory).
    pub len: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// A held lock on a database directory; released when dropped.
pub struct FileLock(pub Box<dyn Send + Sync>);

impl Debug for FileLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileLock")
    }
}

/// A read-only view of a whole immutable file (a memory map for [`StdFs`]).
pub trait Mapped: Send + Sync {
    /// The file's bytes.
    fn bytes(&self) -> &[u8];
    /// Hints that access is random (no readahead). Best effort.
    fn advise_random(&self) {}
    /// Drops `[start, start + len)` from this process's page tables: the next access reads it
    /// again. Best effort; the bytes do not change.
    fn release(&self, _start: usize, _len: usize) {}
}

/// An open file.
pub trait FsFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, extending the file as needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data and length durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Maps the whole file read-only. Only for files that are never written again.
    fn map(&self) -> io::Result<Box<dyn Mapped>>;

    /// Fills `buf` from `offset`; an `UnexpectedEof` error if the file ends first.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "failed to fill whole buffer",
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The file operations strata performs (see the module's contract).
pub trait FileSystem: Send + Sync + Debug {
    /// Opens the file at `path`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>>;
    /// The metadata of `path`; `NotFound` if nothing is there.
    fn metadata(&self, path: &Path) -> io::Result<Metadata>;
    /// Renames `from` to `to`, replacing a file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Creates one directory (its parent exists).
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates a directory and every missing parent.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The entries of a directory, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// Makes the creates, renames and removes made in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on the file at `path` (created if missing) for as long as the
    /// returned guard lives; `None` if another holder has it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<FileLock>>;

    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = self.open(path, OpenMode::Read)?;
        let mut bytes = vec![0u8; file.size()? as usize];
        file.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    /// Whether anything is at `path` (an error reading it counts as absent).
    fn exists(&self, path: &Path) -> bool {
        self.metadata(path).is_ok()
    }

    /// Whether `path` is a directory (an error reading it counts as no).
    fn is_dir(&self, path: &Path) -> bool {
        self.metadata(path).is_ok_and(|m| m.is_dir)
    }
}

/// `std::io::Write` over an [`FsFile`], writing sequentially from an offset.
pub struct FileWriter {
    file: Arc<dyn FsFile>,
    offset: u64,
}

impl FileWriter {
    /// Writes to `file` from offset 0.
    pub fn new(file: Arc<dyn FsFile>) -> FileWriter {
        FileWriter { file, offset: 0 }
    }

    /// The file.
    pub fn file(&self) -> &Arc<dyn FsFile> {
        &self.file
    }
}

impl io::Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `std::io::Read` over an [`FsFile`], reading sequentially from an offset.
pub struct FileReader {
    file: Arc<dyn FsFile>,
    offset: u64,
}

impl FileReader {
    /// Reads `file` from `offset`.
    pub fn new(file: Arc<dyn FsFile>, offset: u64) -> FileReader {
        FileReader { file, offset }
    }
}

impl io::Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// `std::fs` on the host: the default [`FileSystem`].
#[derive(Copy, Clone, Debug, Default)]
pub struct StdFs;

impl StdFs {
    /// A shared handle, as [`crate::Options::fs`] holds it.
    pub fn shared() -> Arc<dyn FileSystem> {
        Arc::new(StdFs)
    }
}

#[derive(Debug)]
struct StdFile(std::fs::File);

struct StdMap(memmap2::Mmap);

impl Mapped for StdMap {
    fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn advise_random(&self) {
        let _ = self.0.advise(memmap2::Advice::Random);
    }

    fn release(&self, start: usize, len: usize) {
        const PAGE: usize = 4096;
        if start == 0 && len >= self.0.len() {
            #[expect(
                unsafe_code,
                reason = "MADV_DONTNEED on a read-only shared file mapping"
            )]
            // SAFETY: as below; the whole mapping, its last partial page included.
            let _ = unsafe { self.0.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
            return;
        }
        let first = start.div_ceil(PAGE) * PAGE;
        let end = ((start + len).min(self.0.len()) / PAGE) * PAGE;
        if end > first {
            #[expect(
                unsafe_code,
                reason = "MADV_DONTNEED on a read-only shared file mapping"
            )]
            // SAFETY: a read-only MAP_SHARED mapping of a file strata never changes; dropping
            // pages only makes the next access read them again from the page cache.
            let _ = unsafe {
                self.0.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    first,
                    end - first,
                )
            };
        }
    }
}

impl FsFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn map(&self) -> io::Result<Box<dyn Mapped>> {
        #[expect(unsafe_code, reason = "immutable files are read through a memory map")]
        // SAFETY: `map` is only called on files strata never writes or truncates again (runs
        // and indexes, replaced only by renaming a new file over the name, which leaves the
        // mapped inode intact; frozen WAL segments, written only while they were active).
        let map = unsafe { memmap2::Mmap::map(&self.0) }?;
        Ok(Box::new(StdMap(map)))
    }
}

impl FileSystem for StdFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let mut o = std::fs::File::options();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
            OpenMode::Truncate => o.write(true).create(true).truncate(true),
        };
        Ok(Arc::new(StdFile(o.open(path)?)))
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let m = std::fs::metadata(path)?;
        Ok(Metadata {
            len: if m.is_dir() { 0 } else { m.len() },
            is_dir: m.is_dir(),
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            out.push(DirEntry {
                name: entry.file_name(),
                is_dir: entry.file_type()?.is_dir(),
            });
        }
        Ok(out)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<FileLock>> {
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock(Box::new(file)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
