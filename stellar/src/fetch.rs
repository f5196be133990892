//! History archives over HTTP: [`mirror_checkpoint`] copies one checkpoint's state file and
//! every bucket it names from an archive's base URL (stellar.org's archives are plain static
//! files) into a local folder laid out as an archive, which [`crate::archive::Archive`] then
//! reads like any other. Buckets the folder already holds are not fetched again, so the next
//! checkpoint downloads only the buckets that changed.
//!
//! Each bucket is **streamed**: the response body is written to `<bucket>.tmp` as it arrives
//! and, in the same pass, gunzipped into a SHA-256; the file is renamed into place only when
//! the hash equals the bucket's name. Memory per download is a few fixed buffers
//! ([`FETCH_BUFFER_BYTES`] and the decompressor's window), whatever the bucket's size; up to
//! `jobs` downloads run at once. Transient failures (a refused or reset connection, a body cut
//! short, a timeout, a 5xx status) are retried with exponential backoff; a permanent one (a
//! 4xx status, content that does not match its name, a body that is not gzip) is an error
//! naming the URL. Either way nothing half-fetched is left under a bucket's name.
//!
//! Plain `http://` is built in; `https://` needs the `tls` feature (rustls), and without it
//! such a URL is refused with an error that says so.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::archive::{read_has, Archive};
use crate::bucket::EMPTY_BUCKET;
use crate::error::{Error, Result};
use crate::limits::MAX_HAS_BYTES;

/// Bytes of each read from a response body and from the decompressor.
pub const FETCH_BUFFER_BYTES: usize = 64 << 10;

/// Options of [`mirror_checkpoint`].
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Downloads at once (default 8, at least 1).
    pub jobs: usize,
    /// Attempts per file before a transient failure becomes an error (default 5).
    pub attempts: u32,
    /// Wait before the first retry, in milliseconds; doubled for each next one (default 250).
    pub backoff_ms: u64,
    /// Longest wait, in seconds, to connect and to receive a response's headers (default 60).
    pub timeout_s: u64,
    /// Slowest download accepted, in bytes per second (default 16 KiB/s): a bucket's body may
    /// take `timeout_s` plus its length (from a HEAD request) at this rate before the attempt
    /// fails and is retried. A body of unknown length has no deadline.
    pub min_bytes_per_s: u64,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            jobs: 8,
            attempts: 5,
            backoff_ms: 250,
            timeout_s: 60,
            min_bytes_per_s: 16 << 10,
        }
    }
}

/// What [`mirror_checkpoint`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchReport {
    /// The checkpoint ledger fetched.
    pub checkpoint: u32,
    /// Buckets downloaded.
    pub fetched: usize,
    /// Buckets already held by the folder.
    pub held: usize,
    /// Compressed bytes downloaded.
    pub bytes: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
}

/// Progress of a fetch, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub enum FetchProgress {
    /// The buckets to download (and their count) are known.
    Planned {
        /// Buckets to download.
        buckets: usize,
    },
    /// Compressed bytes arrived.
    Bytes(u64),
    /// One bucket is in place.
    BucketDone,
}

/// A failure of one attempt: worth retrying, or not.
enum Attempt {
    Transient(String),
    Permanent(String),
}

/// The URL of a path under an archive's base URL.
fn url_of(base: &str, rel: &Path) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        rel.to_string_lossy().trim_start_matches('/')
    )
}

fn agent(options: &FetchOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(options.timeout_s)))
        .timeout_recv_response(Some(Duration::from_secs(options.timeout_s)))
        .build()
        .new_agent()
}

fn classify(e: ureq::Error) -> Attempt {
    match e {
        ureq::Error::StatusCode(code) if (500..600).contains(&code) || code == 429 => {
            Attempt::Transient(format!("HTTP status {code}"))
        }
        ureq::Error::StatusCode(code) => Attempt::Permanent(format!("HTTP status {code}")),
        e @ (ureq::Error::Io(_)
        | ureq::Error::Timeout(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::HostNotFound) => Attempt::Transient(e.to_string()),
        e => Attempt::Permanent(e.to_string()),
    }
}

/// Runs `attempt` up to `options.attempts` times while it fails transiently, sleeping with
/// exponential backoff between tries. Counts retries in `retries`.
fn with_retries<T>(
    url: &str,
    options: &FetchOptions,
    retries: &AtomicUsize,
    stop: &AtomicBool,
    mut attempt: impl FnMut() -> std::result::Result<T, Attempt>,
) -> Result<T> {
    let mut wait = Duration::from_millis(options.backoff_ms);
    let attempts = options.attempts.max(1);
    for n in 1..=attempts {
        match attempt() {
            Ok(t) => return Ok(t),
            Err(Attempt::Permanent(reason)) => {
                return Err(Error::Fetch {
                    url: url.to_string(),
                    reason,
                })
            }
            Err(Attempt::Transient(reason)) => {
                if n == attempts || stop.load(Ordering::Relaxed) {
                    return Err(Error::Fetch {
                        url: url.to_string(),
                        reason: format!("{reason} (after {n} attempts)"),
                    });
                }
                retries.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(wait);
                wait *= 2;
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// Downloads the small file at `url` whole (at most [`MAX_HAS_BYTES`]) into `to`, atomically.
fn fetch_small(agent: &ureq::Agent, url: &str, to: &Path) -> std::result::Result<(), Attempt> {
    let response = agent.get(url).call().map_err(classify)?;
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(MAX_HAS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Attempt::Transient(e.to_string()))?;
    if bytes.len() as u64 > MAX_HAS_BYTES {
        return Err(Attempt::Permanent(format!(
            "more than {MAX_HAS_BYTES} bytes, the limit of a history archive state"
        )));
    }
    write_atomic(to, &bytes).map_err(|e| Attempt::Permanent(format!("{}: {e}", to.display())))
}

fn write_atomic(to: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = tmp_path(to);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, to)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Whether `https://` URLs can be read (the `tls` feature).
pub const HTTPS_SUPPORTED: bool = cfg!(feature = "tls");

/// Reads the state file just fetched from `url` to `path`; a bad one is removed from the cache
/// and named by its URL.
fn checked_has(path: &Path, url: &str) -> Result<crate::archive::HistoryArchiveState> {
    read_has(path).map_err(|e| {
        let _ = std::fs::remove_file(path);
        Error::Fetch {
            url: url.to_string(),
            reason: e.to_string(),
        }
    })
}

/// Takes the cache folder's lock (`.lock` in it, made if missing) for one fetch at a time,
/// and removes the `.tmp` files an interrupted fetch left.
fn lock_cache(mirror: &Path) -> Result<strata::FileLock> {
    use strata::FileSystem;
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(mirror).map_err(io_err(mirror))?;
    let path = mirror.join(".lock");
    let Some(lock) = strata::StdFs.try_lock(&path).map_err(io_err(&path))? else {
        return Err(Error::Archive {
            path,
            reason: "another import is using this cache folder".into(),
        });
    };
    fn sweep(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                sweep(&p);
            } else if p.extension().is_some_and(|x| x == "tmp") {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    sweep(mirror);
    Ok(lock)
}

/// A reader that copies what it reads into a file and counts it.
struct Tee<'a, R: Read> {
    inner: R,
    file: &'a mut File,
    bytes: u64,
    /// The body failed to read (the connection broke).
    broken: bool,
    progress: &'a (dyn Fn(FetchProgress) + Sync),
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.broken = true)?;
        self.file.write_all(&buf[..n])?;
        self.bytes += n as u64;
        (self.progress)(FetchProgress::Bytes(n as u64));
        Ok(n)
    }
}

/// One attempt at one bucket: stream the body to `<path>.tmp` while gunzipping it into a
/// SHA-256; rename into place if the hash is the bucket's name. Returns compressed bytes.
fn fetch_bucket(
    agent: &ureq::Agent,
    options: &FetchOptions,
    url: &str,
    path: &Path,
    hash: &[u8; 32],
    progress: &(dyn Fn(FetchProgress) + Sync),
) -> std::result::Result<u64, Attempt> {
    let local = |e: io::Error| Attempt::Permanent(format!("{}: {e}", path.display()));
    // The body's deadline grows with its length: a large bucket on a slow link is not cut
    // while it is still arriving.
    let length = agent.head(url).call().ok().and_then(|r| {
        r.headers()
            .get("content-length")?
            .to_str()
            .ok()?
            .parse::<u64>()
            .ok()
    });
    let deadline = length.map(|n| {
        Duration::from_secs(options.timeout_s)
            + Duration::from_secs(n / options.min_bytes_per_s.max(1))
    });
    let response = agent
        .get(url)
        .config()
        .timeout_recv_body(deadline)
        .build()
        .call()
        .map_err(classify)?;
    let announced: Option<u64> = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(local)?;
    }
    let tmp = tmp_path(path);
    let mut file = File::create(&tmp).map_err(local)?;
    let result = (|| {
        let mut tee = Tee {
            inner: response.into_body().into_reader(),
            file: &mut file,
            bytes: 0,
            broken: false,
            progress,
        };
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; FETCH_BUFFER_BYTES];
        // A body that stops before the length the server announced, or whose connection
        // breaks, was cut short (worth a retry); a whole body that does not gunzip is not.
        let cut = |tee: &Tee<'_, _>, e: &io::Error| {
            // Without an announced length, a body that stops short looks like a damaged
            // stream: worth the (bounded) retries too.
            if tee.broken || announced.is_none_or(|n| tee.bytes < n) {
                Attempt::Transient(format!(
                    "body cut short after {} of {} bytes: {e}",
                    tee.bytes,
                    announced.map_or("?".into(), |n| n.to_string())
                ))
            } else {
                Attempt::Permanent(format!("not a whole gzip stream: {e}"))
            }
        };
        {
            let mut gz = flate2::read::MultiGzDecoder::new(&mut tee);
            loop {
                match gz.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => sha.update(&buf[..n]),
                    Err(e) => {
                        drop(gz);
                        return Err(cut(&tee, &e));
                    }
                }
            }
        }
        // Whatever follows the gzip stream is kept too, as the archive has it.
        if let Err(e) = io::copy(&mut tee, &mut io::sink()) {
            return Err(cut(&tee, &e));
        }
        if announced.is_some_and(|n| tee.bytes < n) {
            let e = io::Error::from(io::ErrorKind::UnexpectedEof);
            return Err(cut(&tee, &e));
        }
        let found: [u8; 32] = sha.finalize().into();
        if found != *hash {
            return Err(Attempt::Permanent(format!(
                "content does not match its name: SHA-256 of the uncompressed bucket is {}",
                hex::encode(found)
            )));
        }
        Ok(tee.bytes)
    })();
    match result {
        Ok(bytes) => {
            file.sync_all().map_err(local)?;
            std::fs::rename(&tmp, path).map_err(local)?;
            progress(FetchProgress::BucketDone);
            Ok(bytes)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Copies checkpoint `checkpoint` (default: the archive's latest) of the archive at `base_url`
/// into the folder `mirror`: its state file, and every bucket it names that the folder does
/// not already hold. Returns what was fetched; `Archive::new(mirror)` then reads the
/// checkpoint. See the [module documentation](self).
pub fn mirror_checkpoint(
    base_url: &str,
    checkpoint: Option<u32>,
    mirror: &Path,
    options: &FetchOptions,
    progress: &(dyn Fn(FetchProgress) + Sync),
) -> Result<FetchReport> {
    if base_url.starts_with("https://") && !HTTPS_SUPPORTED {
        return Err(Error::Fetch {
            url: base_url.to_string(),
            reason:
                "https needs strata built with the `tls` feature (cargo build --features tls); \
                     stellar.org's archives also answer over plain http"
                    .into(),
        });
    }
    if let Some(c) = checkpoint {
        crate::archive::check_checkpoint(c, Path::new(&url_of(base_url, Path::new("history"))))?;
    }
    let _lock = lock_cache(mirror)?;
    let agent = agent(options);
    let archive = Archive::new(mirror);
    let retries = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let state_rel = |path: PathBuf| {
        path.strip_prefix(mirror)
            .expect("under the mirror")
            .to_path_buf()
    };
    let has_path = match checkpoint {
        Some(c) => {
            let path = archive.has_path(c);
            let url = url_of(base_url, &state_rel(path.clone()));
            with_retries(&url, options, &retries, &stop, || {
                fetch_small(&agent, &url, &path)
            })?;
            checked_has(&path, &url)?;
            path
        }
        None => {
            let path = mirror.join(".well-known").join("stellar-history.json");
            let url = url_of(base_url, &state_rel(path.clone()));
            with_retries(&url, options, &retries, &stop, || {
                fetch_small(&agent, &url, &path)
            })?;
            let latest = checked_has(&path, &url)?.current_ledger;
            let at = archive.has_path(latest);
            if let Some(dir) = at.parent() {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            std::fs::copy(&path, &at).map_err(|source| Error::Io {
                path: at.clone(),
                source,
            })?;
            at
        }
    };
    let has = read_has(&has_path)?;
    let mut wanted: Vec<[u8; 32]> = has
        .slots()
        .into_iter()
        .filter(|h| *h != EMPTY_BUCKET)
        .collect();
    wanted.sort();
    wanted.dedup();
    let (held, missing): (Vec<_>, Vec<_>) = wanted
        .into_iter()
        .partition(|h| archive.bucket_path(h).is_file());
    progress(FetchProgress::Planned {
        buckets: missing.len(),
    });
    let next = AtomicUsize::new(0);
    let bytes = Mutex::new(0u64);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.clamp(1, missing.len().max(1)) {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(hash) = missing.get(i) else {
                    return;
                };
                let path = archive.bucket_path(hash);
                let url = url_of(base_url, &state_rel(path.clone()));
                match with_retries(&url, options, &retries, &stop, || {
                    fetch_bucket(&agent, options, &url, &path, hash, progress)
                }) {
                    Ok(n) => *bytes.lock().expect("bytes") += n,
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        first_error.lock().expect("error").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("error") {
        return Err(e);
    }
    Ok(FetchReport {
        checkpoint: has.current_ledger,
        fetched: missing.len(),
        held: held.len(),
        bytes: bytes.into_inner().expect("bytes"),
        retries: retries.load(Ordering::Relaxed) as u64,
    })
}
