//! A simulated file system for crash and fault tests: everything lives in memory, and for each
//! file and directory it keeps what was written and what was made durable.
//!
//! - **Power loss** ([`SimFs::power_loss`]): every file goes back to its last synced bytes
//!   followed by a random prefix of the writes made after (the last one possibly torn at a
//!   512-byte sector boundary, or zero-filled); every directory goes back to its last synced
//!   entries followed by a random prefix of the creates, renames and removes made after. What
//!   is left becomes durable, as it would be on the platter.
//! - **A failed sync loses data**: the writes it should have made durable are dropped, and
//!   the file reads back as its last synced bytes (the kernel invalidated the pages). Linux
//!   file systems differ here: ext4 keeps such pages readable but clean, so a later reopen in
//!   the same boot reads bytes that are not on disk, which no recovery that reads through the
//!   page cache can detect; this simulation does not model that case.
//! - **Crash points** ([`SimFs::crash_at`]): from the Nth mutating call on (writes, syncs,
//!   truncations, creates, renames, removes, directory syncs), every call fails with EIO, as
//!   if the process had died there; the test then drops the database and calls `power_loss`.
//! - **Faults** ([`SimFs::fail_at`]): the Nth mutating call or open fails once with a chosen
//!   errno (EIO, ENOSPC, EMFILE), and everything else goes on.
//! - **Seeded**: every random choice comes from the seed given to `power_loss`, so a failing
//!   seed replays exactly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{DirEntry, FileLock, FileSystem, FsFile, Mapped, Metadata, OpenMode};

/// Bytes of a sector: the unit a torn write keeps or loses.
pub const SECTOR_BYTES: u64 = 512;

type Ino = u64;

#[derive(Clone, Debug)]
enum FileOp {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

fn apply(data: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write(at, bytes) => {
            let end = *at as usize + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[*at as usize..end].copy_from_slice(bytes);
        }
        FileOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

#[derive(Debug)]
enum Node {
    File {
        /// What reads see (the page cache).
        data: Vec<u8>,
        /// What a power loss keeps at least.
        durable: Vec<u8>,
        /// Writes since the last sync, in order.
        pending: Vec<FileOp>,
    },
    Dir {
        entries: BTreeMap<OsString, Ino>,
        durable: BTreeMap<OsString, Ino>,
        /// Entry changes since the last directory sync: `(name, new target or removed)`.
        pending: Vec<(OsString, Option<Ino>)>,
    },
}

#[derive(Debug, Default)]
struct State {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    /// Mutating calls so far.
    ops: u64,
    /// Opens so far.
    opens: u64,
    crash_at: Option<u64>,
    crashed: bool,
    /// `(nth call, errno)`: the Nth mutating call or open fails once.
    fail_at: Option<(u64, i32)>,
    fault_fired: bool,
    locks: HashSet<PathBuf>,
}

const ROOT: Ino = 1;

/// The simulated file system. Clones share it.
#[derive(Clone, Debug)]
pub struct SimFs(Arc<Mutex<State>>);

impl Default for SimFs {
    fn default() -> Self {
        SimFs::new()
    }
}

fn err(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, what.to_string())
}

fn not_found() -> io::Error {
    err(io::ErrorKind::NotFound, "no such file or directory")
}

impl SimFs {
    /// An empty file system (just `/`).
    pub fn new() -> SimFs {
        let mut st = State {
            next_ino: ROOT + 1,
            ..State::default()
        };
        st.nodes.insert(
            ROOT,
            Node::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
                pending: Vec::new(),
            },
        );
        SimFs(Arc::new(Mutex::new(st)))
    }

    /// A shared handle for [`strata::Options::fs`].
    pub fn shared(&self) -> Arc<dyn FileSystem> {
        Arc::new(self.clone())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the `n`th mutating call from now on (1 = the next one), and every call after it,
    /// fail with EIO: the process died there.
    pub fn crash_at(&self, n: u64) {
        let mut st = self.state();
        st.crash_at = Some(st.ops + n);
    }

    /// Makes the `n`th mutating call or open from now on (1 = the next one) fail once with
    /// `errno`.
    pub fn fail_at(&self, n: u64, errno: i32) {
        let mut st = self.state();
        st.fail_at = Some((st.ops + st.opens + n, errno));
        st.fault_fired = false;
    }

    /// Whether the crash point was reached.
    pub fn crashed(&self) -> bool {
        self.state().crashed
    }

    /// Whether the fault set by [`SimFs::fail_at`] fired.
    pub fn fault_fired(&self) -> bool {
        self.state().fault_fired
    }

    /// Mutating calls made so far.
    pub fn mutating_calls(&self) -> u64 {
        self.state().ops
    }

    /// Mutating calls and opens made so far (what [`SimFs::fail_at`] counts).
    pub fn fault_points(&self) -> u64 {
        let st = self.state();
        st.ops + st.opens
    }

    /// Loses power: every file and directory keeps its durable state plus a random prefix of
    /// what came after (see the module docs), chosen by `seed`. Clears the crash point,
    /// faults and locks (a new process starts).
    pub fn power_loss(&self, seed: u64) {
        if std::env::var_os("STRATA_SIM_TRACE").is_some() {
            eprintln!("sim: power loss (tear seed {seed})");
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut st = self.state();
        let mut inos: Vec<Ino> = st.nodes.keys().copied().collect();
        inos.sort();
        for ino in inos {
            match st.nodes.get_mut(&ino).expect("node") {
                Node::File {
                    data,
                    durable,
                    pending,
                } => {
                    let kept = kept_prefix(&mut rng, pending.len());
                    let mut next = std::mem::take(durable);
                    for op in &pending[..kept] {
                        apply(&mut next, op);
                    }
                    if let Some(FileOp::Write(at, bytes)) = pending.get(kept) {
                        tear(&mut rng, &mut next, *at, bytes);
                    }
                    *data = next.clone();
                    *durable = next;
                    pending.clear();
                }
                Node::Dir {
                    entries,
                    durable,
                    pending,
                } => {
                    let kept = kept_prefix(&mut rng, pending.len());
                    let mut next = std::mem::take(durable);
                    for (name, target) in &pending[..kept] {
                        match target {
                            Some(ino) => next.insert(name.clone(), *ino),
                            None => next.remove(name),
                        };
                    }
                    *entries = next.clone();
                    *durable = next;
                    pending.clear();
                }
            }
        }
        st.crash_at = None;
        st.crashed = false;
        st.fail_at = None;
        st.locks.clear();
    }

    /// Every path under `dir` (files and directories), sorted.
    pub fn walk(&self, dir: &Path) -> Vec<PathBuf> {
        let st = self.state();
        let mut out = Vec::new();
        let Ok(ino) = resolve(&st, dir) else {
            return out;
        };
        fn rec(st: &State, ino: Ino, at: &Path, out: &mut Vec<PathBuf>) {
            if let Some(Node::Dir { entries, .. }) = st.nodes.get(&ino) {
                for (name, child) in entries {
                    let p = at.join(name);
                    out.push(p.clone());
                    rec(st, *child, &p, out);
                }
            }
        }
        rec(&st, ino, dir, &mut out);
        out.sort();
        out
    }

    /// Counts a mutating call: fails it if the process is dead or a fault is due.
    fn mutate(&self, st: &mut State, what: &str, path: &Path) -> io::Result<()> {
        st.ops += 1;
        let trace = std::env::var_os("STRATA_SIM_TRACE").is_some();
        if trace {
            // Mutating calls count crash points; every call (opens too) counts fault points.
            eprintln!(
                "sim mutating call {} (call {}): {what} {}",
                st.ops,
                st.ops + st.opens,
                path.display()
            );
        }
        if st.crashed || st.crash_at.is_some_and(|n| st.ops >= n) {
            if trace && !st.crashed {
                eprintln!("sim: the process dies here; every later call fails");
            }
            st.crashed = true;
            return Err(io::Error::from_raw_os_error(5));
        }
        self.fault(st)
    }

    fn fault(&self, st: &mut State) -> io::Result<()> {
        if let Some((n, errno)) = st.fail_at {
            if st.ops + st.opens == n {
                if std::env::var_os("STRATA_SIM_TRACE").is_some() {
                    eprintln!("sim: call {n} fails with errno {errno}");
                }
                st.fault_fired = true;
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        Ok(())
    }

    fn dead(&self, st: &State) -> io::Result<()> {
        if st.crashed {
            return Err(io::Error::from_raw_os_error(5));
        }
        Ok(())
    }
}

/// How many of `n` pending changes survive a power loss: none half the time, else any number.
fn kept_prefix(rng: &mut StdRng, n: usize) -> usize {
    if n == 0 || rng.random_bool(0.5) {
        0
    } else {
        rng.random_range(0..=n)
    }
}

/// Applies part of a write cut by a power loss: its first sectors, or zeros in its place.
fn tear(rng: &mut StdRng, data: &mut Vec<u8>, at: u64, bytes: &[u8]) {
    match rng.random_range(0..3) {
        0 => {}
        1 => {
            let end = at + bytes.len() as u64;
            let sectors: Vec<u64> = (at.div_ceil(SECTOR_BYTES)..end.div_ceil(SECTOR_BYTES))
                .map(|s| s * SECTOR_BYTES)
                .collect();
            if let Some(&cut) = sectors.get(rng.random_range(0..sectors.len().max(1))) {
                let keep = (cut.saturating_sub(at)) as usize;
                apply(
                    data,
                    &FileOp::Write(at, bytes[..keep.min(bytes.len())].to_vec()),
                );
            }
        }
        _ => apply(data, &FileOp::Write(at, vec![0u8; bytes.len()])),
    }
}

fn components(path: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            _ => return Err(err(io::ErrorKind::InvalidInput, "path must be absolute")),
        }
    }
    if !path.is_absolute() {
        return Err(err(io::ErrorKind::InvalidInput, "path must be absolute"));
    }
    Ok(out)
}

fn resolve(st: &State, path: &Path) -> io::Result<Ino> {
    let mut ino = ROOT;
    for name in components(path)? {
        match st.nodes.get(&ino) {
            Some(Node::Dir { entries, .. }) => {
                ino = *entries.get(name).ok_or_else(not_found)?;
            }
            _ => return Err(not_found()),
        }
    }
    Ok(ino)
}

/// The directory holding `path`, and `path`'s name in it.
fn parent_of(st: &State, path: &Path) -> io::Result<(Ino, OsString)> {
    let name = path
        .file_name()
        .ok_or_else(|| err(io::ErrorKind::InvalidInput, "no file name"))?;
    let parent = path.parent().ok_or_else(not_found)?;
    let ino = resolve(st, parent)?;
    match st.nodes.get(&ino) {
        Some(Node::Dir { .. }) => Ok((ino, name.to_os_string())),
        _ => Err(err(io::ErrorKind::NotADirectory, "not a directory")),
    }
}

fn set_entry(st: &mut State, dir: Ino, name: &OsStr, target: Option<Ino>) {
    if let Some(Node::Dir {
        entries, pending, ..
    }) = st.nodes.get_mut(&dir)
    {
        match target {
            Some(t) => entries.insert(name.to_os_string(), t),
            None => entries.remove(name),
        };
        pending.push((name.to_os_string(), target));
    }
}

fn new_node(st: &mut State, node: Node) -> Ino {
    let ino = st.next_ino;
    st.next_ino += 1;
    st.nodes.insert(ino, node);
    ino
}

fn empty_file() -> Node {
    Node::File {
        data: Vec::new(),
        durable: Vec::new(),
        pending: Vec::new(),
    }
}

fn empty_dir() -> Node {
    Node::Dir {
        entries: BTreeMap::new(),
        durable: BTreeMap::new(),
        pending: Vec::new(),
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    ino: Ino,
    path: PathBuf,
    writable: bool,
}

struct SimMap(Vec<u8>);

impl Mapped for SimMap {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl SimFile {
    fn with_data<T>(&self, f: impl FnOnce(&Vec<u8>) -> T) -> io::Result<T> {
        let st = self.fs.state();
        self.fs.dead(&st)?;
        match st.nodes.get(&self.ino) {
            Some(Node::File { data, .. }) => Ok(f(data)),
            _ => Err(not_found()),
        }
    }

    fn change(&self, op: FileOp) -> io::Result<()> {
        if !self.writable {
            return Err(err(io::ErrorKind::PermissionDenied, "opened read-only"));
        }
        let mut st = self.fs.state();
        let what = match &op {
            FileOp::Write(at, b) => format!("write {} bytes at {at}", b.len()),
            FileOp::SetLen(len) => format!("set_len {len}"),
        };
        self.fs.mutate(&mut st, &what, &self.path)?;
        match st.nodes.get_mut(&self.ino) {
            Some(Node::File { data, pending, .. }) => {
                apply(data, &op);
                pending.push(op);
                Ok(())
            }
            _ => Err(not_found()),
        }
    }
}

impl FsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with_data(|data| {
            let start = (offset as usize).min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            n
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.change(FileOp::Write(offset, buf.to_vec()))
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.fs.state();
        let result = self.fs.mutate(&mut st, "sync_data", &self.path);
        let crashed = st.crashed;
        match st.nodes.get_mut(&self.ino) {
            Some(Node::File {
                data,
                durable,
                pending,
            }) => {
                if result.is_ok() {
                    for op in pending.iter() {
                        apply(durable, op);
                    }
                    pending.clear();
                } else if !crashed {
                    // A failed sync drops the pending writes: reads see the synced bytes.
                    pending.clear();
                    *data = durable.clone();
                }
                result
            }
            _ => result.and(Err(not_found())),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.change(FileOp::SetLen(len))
    }

    fn size(&self) -> io::Result<u64> {
        self.with_data(|d| d.len() as u64)
    }

    fn map(&self) -> io::Result<Box<dyn Mapped>> {
        self.with_data(|d| Box::new(SimMap(d.clone())) as Box<dyn Mapped>)
    }
}

struct SimLock {
    fs: SimFs,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.state().locks.remove(&self.path);
    }
}

impl FileSystem for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let mut st = self.state();
        self.dead(&st)?;
        st.opens += 1;
        if std::env::var_os("STRATA_SIM_TRACE").is_some() {
            eprintln!(
                "sim call {}: open {mode:?} {}",
                st.ops + st.opens,
                path.display()
            );
        }
        self.fault(&mut st)?;
        let found = resolve(&st, path);
        let ino = match (mode, found) {
            (OpenMode::Read | OpenMode::ReadWrite, Ok(ino)) => ino,
            (OpenMode::Read | OpenMode::ReadWrite, Err(e)) => return Err(e),
            (OpenMode::CreateNew, Ok(_)) => {
                return Err(err(io::ErrorKind::AlreadyExists, "file exists"))
            }
            (OpenMode::Truncate, Ok(ino)) => {
                self.mutate(&mut st, "truncate", path)?;
                match st.nodes.get_mut(&ino) {
                    Some(Node::File { data, pending, .. }) => {
                        data.clear();
                        pending.push(FileOp::SetLen(0));
                    }
                    _ => return Err(err(io::ErrorKind::IsADirectory, "is a directory")),
                }
                ino
            }
            (OpenMode::CreateNew | OpenMode::Truncate, Err(_)) => {
                let (dir, name) = parent_of(&st, path)?;
                self.mutate(&mut st, "create", path)?;
                let ino = new_node(&mut st, empty_file());
                set_entry(&mut st, dir, &name, Some(ino));
                ino
            }
        };
        if let Some(Node::Dir { .. }) = st.nodes.get(&ino) {
            return Err(err(io::ErrorKind::IsADirectory, "is a directory"));
        }
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            ino,
            path: path.to_path_buf(),
            writable: mode != OpenMode::Read,
        }))
    }

    fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        let st = self.state();
        self.dead(&st)?;
        let ino = resolve(&st, path)?;
        Ok(match st.nodes.get(&ino) {
            Some(Node::File { data, .. }) => Metadata {
                len: data.len() as u64,
                is_dir: false,
            },
            _ => Metadata {
                len: 0,
                is_dir: true,
            },
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state();
        self.dead(&st)?;
        let ino = resolve(&st, from)?;
        let (from_dir, from_name) = parent_of(&st, from)?;
        let (to_dir, to_name) = parent_of(&st, to)?;
        if let Ok(existing) = resolve(&st, to) {
            let is_dir = |i| matches!(st.nodes.get(&i), Some(Node::Dir { .. }));
            if is_dir(existing) != is_dir(ino) {
                return Err(err(
                    io::ErrorKind::Other,
                    "rename between a file and a directory",
                ));
            }
            if let Some(Node::Dir { entries, .. }) = st.nodes.get(&existing) {
                if !entries.is_empty() {
                    return Err(err(io::ErrorKind::DirectoryNotEmpty, "directory not empty"));
                }
            }
        }
        self.mutate(&mut st, &format!("rename to {}", to.display()), from)?;
        set_entry(&mut st, from_dir, &from_name, None);
        set_entry(&mut st, to_dir, &to_name, Some(ino));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        self.dead(&st)?;
        let ino = resolve(&st, path)?;
        if let Some(Node::Dir { .. }) = st.nodes.get(&ino) {
            return Err(err(io::ErrorKind::IsADirectory, "is a directory"));
        }
        let (dir, name) = parent_of(&st, path)?;
        self.mutate(&mut st, "remove_file", path)?;
        set_entry(&mut st, dir, &name, None);
        Ok(())
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        self.dead(&st)?;
        if resolve(&st, path).is_ok() {
            return Err(err(io::ErrorKind::AlreadyExists, "file exists"));
        }
        let (dir, name) = parent_of(&st, path)?;
        self.mutate(&mut st, "create_dir", path)?;
        let ino = new_node(&mut st, empty_dir());
        set_entry(&mut st, dir, &name, Some(ino));
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut at = PathBuf::from("/");
        for name in components(path)? {
            at.push(name);
            if !self.is_dir(&at) {
                self.create_dir(&at)?;
            }
        }
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        self.dead(&st)?;
        resolve(&st, path)?;
        let (dir, name) = parent_of(&st, path)?;
        self.mutate(&mut st, "remove_dir_all", path)?;
        // Unlinking the directory makes everything under it unreachable at once; a power loss
        // may bring it back whole, which is what a crash mid-removal can leave.
        set_entry(&mut st, dir, &name, None);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let st = self.state();
        self.dead(&st)?;
        let ino = resolve(&st, dir)?;
        match st.nodes.get(&ino) {
            Some(Node::Dir { entries, .. }) => Ok(entries
                .iter()
                .map(|(name, child)| DirEntry {
                    name: name.clone(),
                    is_dir: matches!(st.nodes.get(child), Some(Node::Dir { .. })),
                })
                .collect()),
            _ => Err(err(io::ErrorKind::NotADirectory, "not a directory")),
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state();
        self.dead(&st)?;
        let ino = resolve(&st, dir)?;
        self.mutate(&mut st, "sync_dir", dir)?;
        if let Some(Node::Dir {
            durable, pending, ..
        }) = st.nodes.get_mut(&ino)
        {
            for (name, target) in pending.drain(..) {
                match target {
                    Some(t) => durable.insert(name, t),
                    None => durable.remove(&name),
                };
            }
        }
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<FileLock>> {
        if !self.exists(path) {
            drop(self.open(path, OpenMode::CreateNew)?);
        }
        let mut st = self.state();
        self.dead(&st)?;
        if !st.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(FileLock(Box::new(SimLock {
            fs: self.clone(),
            path: path.to_path_buf(),
        }))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_and_entries_can_be_lost_and_synced_ones_cannot() {
        for seed in 0..64 {
            let fs = SimFs::new();
            fs.create_dir(Path::new("/d")).unwrap();
            fs.sync_dir(Path::new("/")).unwrap();
            let f = fs.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
            f.write_all_at(b"durable", 0).unwrap();
            f.sync_data().unwrap();
            fs.sync_dir(Path::new("/d")).unwrap();
            f.write_all_at(b" and not", 7).unwrap();
            let g = fs.open(Path::new("/d/b"), OpenMode::CreateNew).unwrap();
            g.sync_data().unwrap();
            drop((f, g));
            fs.power_loss(seed);
            let a = fs.read(Path::new("/d/a")).unwrap();
            assert!(a.starts_with(b"durable"), "seed {seed}: {a:?}");
            assert!(
                b"durable and not".starts_with(&a) || a.len() == 15,
                "seed {seed}: {a:?}"
            );
        }
    }
}
