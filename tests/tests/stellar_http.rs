//! History archives over HTTP: a server started by the test on 127.0.0.1 serves the testnet
//! archive (`../shared/testdata/stellar-testnet`, read in place); importing through it equals
//! the folder import, a second checkpoint downloads only the buckets that changed, and servers
//! that cut a download short (once, or every time) or send a bucket whose content does not match
//! its name give a retry or a clear error naming the URL, leaving the store as it was.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use strata_stellar::archive::Archive;
use strata_stellar::fetch::{mirror_checkpoint, FetchOptions, FetchProgress};
use strata_stellar::key::ENTRY_TYPES;
use strata_stellar::store::LedgerStore;

fn archive_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/stellar-testnet")
}

/// How the server misbehaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Serves every file as it is.
    Honest,
    /// Cuts the first response for each bucket after half its bytes (then serves it whole).
    CutOnce,
    /// Cuts every bucket response after half its bytes.
    CutAlways,
    /// Serves one bucket's bytes under every bucket name.
    WrongContent,
    /// Sends the largest bucket steadily but slowly (8 KiB every 50 ms, about 160 KB/s).
    SlowLargest,
}

struct Server {
    url: String,
    bucket_requests: Arc<AtomicUsize>,
}

/// Starts a server for the testnet archive on an ephemeral port; it lives as long as the test.
fn serve(mode: Mode) -> Server {
    serve_root(archive_root(), mode)
}

/// Starts a server for the archive at `root`.
fn serve_root(root: PathBuf, mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bucket_requests = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let counter = bucket_requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (counter, seen, root) = (counter.clone(), seen.clone(), root.clone());
            std::thread::spawn(move || answer(stream, &root, mode, &counter, &seen));
        }
    });
    Server {
        url,
        bucket_requests,
    }
}

fn answer(
    mut stream: TcpStream,
    root: &Path,
    mode: Mode,
    counter: &AtomicUsize,
    seen: &Mutex<std::collections::HashSet<String>>,
) {
    let mut request = String::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let file = root.join(path.trim_start_matches('/'));
    let is_bucket = path.starts_with("/bucket/");
    let Ok(mut body) = std::fs::read(&file) else {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    if request.starts_with("HEAD ") {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        return;
    }
    let mut send = body.len();
    if is_bucket {
        counter.fetch_add(1, Ordering::Relaxed);
        let first = seen.lock().unwrap().insert(path.clone());
        match mode {
            Mode::Honest | Mode::SlowLargest => {}
            Mode::CutOnce if first => send = body.len() / 2,
            Mode::CutOnce => {}
            Mode::CutAlways => send = body.len() / 2,
            Mode::WrongContent => {
                // The largest bucket of the archive, whatever was asked for.
                body = std::fs::read(largest_bucket()).unwrap();
                send = body.len();
            }
        }
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    if mode == Mode::SlowLargest && file == largest_bucket() {
        for chunk in body[..send].chunks(8 << 10) {
            if stream.write_all(chunk).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        return;
    }
    let _ = stream.write_all(&body[..send]);
}

fn largest_bucket() -> PathBuf {
    fn walk(dir: &Path, best: &mut (u64, PathBuf)) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, best);
            } else {
                let len = e.metadata().unwrap().len();
                if len > best.0 {
                    *best = (len, p);
                }
            }
        }
    }
    let mut best = (0, PathBuf::new());
    walk(&archive_root().join("bucket"), &mut best);
    best.1
}

fn options() -> FetchOptions {
    FetchOptions {
        jobs: 4,
        attempts: 3,
        backoff_ms: 10,
        timeout_s: 10,
        ..FetchOptions::default()
    }
}

/// Every type's scan of a store, as counts and the first entries' bytes.
fn scans(store: &LedgerStore) -> Vec<(usize, Vec<Vec<u8>>)> {
    ENTRY_TYPES
        .iter()
        .map(|ty| {
            let all: Vec<Vec<u8>> = store
                .scan_type(ty.0)
                .unwrap()
                .map(|r| r.unwrap().1)
                .collect();
            (all.len(), all)
        })
        .collect()
}

const FIRST: u32 = 5119;
const SECOND: u32 = 5183;

#[test]
fn import_over_http_equals_the_folder_import_and_reuses_what_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(Mode::Honest);
    let cache = tmp.path().join("cache");
    let events = Mutex::new(Vec::new());
    let progress = |p: FetchProgress| events.lock().unwrap().push(format!("{p:?}"));
    let first = mirror_checkpoint(&server.url, Some(FIRST), &cache, &options(), &progress).unwrap();
    assert_eq!(first.checkpoint, FIRST);
    assert!(first.fetched > 5, "{first:?}");
    assert_eq!(first.held, 0);
    assert_eq!(
        server.bucket_requests.load(Ordering::Relaxed),
        first.fetched
    );
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.starts_with("BucketDone")));

    let mut over_http = LedgerStore::open(tmp.path().join("http")).unwrap();
    over_http
        .import_archive(&Archive::new(&cache), Some(FIRST))
        .unwrap();
    let mut from_folder = LedgerStore::open(tmp.path().join("folder")).unwrap();
    from_folder
        .import_archive(&Archive::new(archive_root()), Some(FIRST))
        .unwrap();
    assert_eq!(
        over_http.state().unwrap().slots,
        from_folder.state().unwrap().slots
    );
    assert_eq!(scans(&over_http), scans(&from_folder));

    // The next checkpoint: only the buckets that changed are downloaded.
    let has_first = Archive::new(archive_root()).state(FIRST).unwrap().slots();
    let has_second = Archive::new(archive_root()).state(SECOND).unwrap().slots();
    let mut new: Vec<_> = has_second
        .iter()
        .filter(|h| **h != [0; 32] && !has_first.contains(h))
        .collect();
    new.sort();
    new.dedup();
    let before = server.bucket_requests.load(Ordering::Relaxed);
    let second = mirror_checkpoint(&server.url, Some(SECOND), &cache, &options(), &|_| {}).unwrap();
    assert_eq!(second.fetched, new.len(), "{second:?}");
    assert!(second.held > 0, "{second:?}");
    assert_eq!(
        server.bucket_requests.load(Ordering::Relaxed) - before,
        new.len()
    );
    over_http
        .import_archive(&Archive::new(&cache), Some(SECOND))
        .unwrap();
    from_folder
        .import_archive(&Archive::new(archive_root()), Some(SECOND))
        .unwrap();
    assert_eq!(scans(&over_http), scans(&from_folder));
}

#[test]
fn a_download_cut_once_is_retried_and_the_import_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(Mode::CutOnce);
    let cache = tmp.path().join("cache");
    let report = mirror_checkpoint(&server.url, Some(FIRST), &cache, &options(), &|_| {}).unwrap();
    assert_eq!(report.retries as usize, report.fetched, "{report:?}");
    let mut store = LedgerStore::open(tmp.path().join("db")).unwrap();
    store
        .import_archive(&Archive::new(&cache), Some(FIRST))
        .unwrap();
    let mut reference = LedgerStore::open(tmp.path().join("ref")).unwrap();
    reference
        .import_archive(&Archive::new(archive_root()), Some(FIRST))
        .unwrap();
    assert_eq!(scans(&store), scans(&reference));
}

/// Every `.tmp` under `dir`.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(leftovers(&p));
            } else if p.to_string_lossy().ends_with(".tmp") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn cut_off_and_wrong_content_servers_give_errors_naming_the_url_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let mut store = LedgerStore::open(&db).unwrap();
    store
        .import_archive(&Archive::new(archive_root()), Some(FIRST))
        .unwrap();
    let before = scans(&store);
    for (mode, expect) in [
        (Mode::CutAlways, "cut short"),
        (Mode::WrongContent, "content does not match its name"),
    ] {
        let server = serve(mode);
        let cache = tmp.path().join(format!("cache-{expect}"));
        let e = mirror_checkpoint(&server.url, Some(SECOND), &cache, &options(), &|_| {})
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("{}/bucket/", server.url)), "{e}");
        assert!(e.contains(expect), "{e}");
        assert!(leftovers(&cache).is_empty(), "{:?}", leftovers(&cache));
        assert_eq!(scans(&store), before);
        assert_eq!(store.state().unwrap().checkpoint, FIRST);
    }
    store.close().unwrap();
    let store = LedgerStore::open_existing(&db).unwrap();
    assert_eq!(scans(&store), before);
}

#[test]
fn https_without_the_tls_feature_is_refused_by_name() {
    if strata_stellar::fetch::HTTPS_SUPPORTED {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let e = mirror_checkpoint(
        "https://example.invalid/archive",
        None,
        tmp.path(),
        &options(),
        &|_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`tls` feature"), "{e}");
}

/// The store keeps buckets by content: the next checkpoint reads only the buckets it lacks, a
/// bucket named by both checkpoints is stored once, and the result equals a fresh import.
#[test]
fn the_next_checkpoint_reads_only_the_buckets_the_store_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = Archive::new(archive_root());
    let mut store = LedgerStore::open(tmp.path().join("db")).unwrap();
    let first = store.import_archive(&archive, Some(FIRST)).unwrap();
    assert_eq!(first.held, 0);
    let distinct = |c: u32| {
        let mut v: Vec<[u8; 32]> = archive
            .state(c)
            .unwrap()
            .slots()
            .into_iter()
            .filter(|h| *h != [0; 32])
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(first.buckets, distinct(FIRST).len());
    let second = store.import_archive(&archive, Some(SECOND)).unwrap();
    let new = distinct(SECOND)
        .into_iter()
        .filter(|h| !distinct(FIRST).contains(h))
        .count();
    assert_eq!(second.buckets, new, "{second:?}");
    assert_eq!(
        second.buckets + second.held,
        distinct(SECOND).len(),
        "{second:?}"
    );
    assert!(second.held > 0);
    // One whole-marker per distinct bucket of the current state: nothing stored twice, and
    // the first checkpoint's buckets that the second does not name are gone.
    let markers = store.db().prefix(&[0x03]).unwrap().count();
    assert_eq!(markers, distinct(SECOND).len());
    let mut fresh = LedgerStore::open(tmp.path().join("fresh")).unwrap();
    fresh.import_archive(&archive, Some(SECOND)).unwrap();
    assert_eq!(scans(&store), scans(&fresh));
}

/// An archive of one checkpoint (ledger 63) whose bucket list is the synthetic pair of
/// `entries` TTL entries (the older bucket holds them all): written under `root`, gzipped.
fn synthetic_archive(root: &Path, entries: u64) -> u64 {
    let plain = tempfile::tempdir().unwrap();
    let sources = strata_stellar::store::synthetic::write_buckets(plain.path(), entries).unwrap();
    let archive = Archive::new(root);
    let mut names = Vec::new();
    let mut largest = 0;
    for source in &sources {
        let name = source.expected.unwrap();
        let from = source.path.as_ref().unwrap();
        largest = largest.max(std::fs::metadata(from).unwrap().len());
        let to = archive.bucket_path(&name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&to).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::copy(&mut std::fs::File::open(from).unwrap(), &mut gz).unwrap();
        gz.finish().unwrap();
        names.push(name.iter().map(|b| format!("{b:02x}")).collect::<String>());
    }
    let zeros = "0".repeat(64);
    let levels: Vec<String> = (0..11)
        .map(|level| {
            let (curr, snap) = match level {
                0 => (names[0].as_str(), names[1].as_str()),
                _ => (zeros.as_str(), zeros.as_str()),
            };
            format!(r#"{{"curr":"{curr}","snap":"{snap}"}}"#)
        })
        .collect();
    let has = format!(
        r#"{{"currentLedger":63,"currentBuckets":[{}]}}"#,
        levels.join(",")
    );
    for path in [
        root.join(".well-known").join("stellar-history.json"),
        archive.has_path(63),
    ] {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &has).unwrap();
    }
    largest
}

/// Peak memory of a whole URL import does not follow the bucket's size: a child process
/// fetches and imports a generated bucket (`STRATA_HTTP_BUCKET_ENTRIES`, default 150,000
/// entries, about 8 MB; 3,600,000 makes a 200 MB bucket) and stays under 64 MiB.
#[test]
fn a_url_import_holds_bounded_memory_whatever_the_bucket_size() {
    let entries = std::env::var("STRATA_HTTP_BUCKET_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150_000u64);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    let largest = synthetic_archive(&root, entries);
    let server = serve_root(root, Mode::Honest);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata_child"))
        .arg("stellar-url-import")
        .arg(&server.url)
        .arg(tmp.path().join("db"))
        .arg(tmp.path().join("cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fields: Vec<u64> = stdout
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    let (downloaded, imported, peak) = (fields[0], fields[1], fields[2]);
    assert_eq!(imported, entries + entries / 10);
    eprintln!(
        "bucket of {largest} bytes ({downloaded} bytes downloaded, {imported} entries): peak RSS {:.1} MiB",
        peak as f64 / (1 << 20) as f64
    );
    assert!(peak < 64 << 20, "peak RSS {peak} bytes");
}

/// A download that arrives steadily but takes longer than `timeout_s` is not cut: the body's
/// deadline grows with its length (`min_bytes_per_s`).
#[test]
fn a_slow_steady_download_is_not_cut_by_the_response_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(Mode::SlowLargest);
    let options = FetchOptions {
        timeout_s: 1,
        ..options()
    };
    let report = mirror_checkpoint(
        &server.url,
        None,
        &tmp.path().join("cache"),
        &options,
        &|_| {},
    )
    .unwrap();
    assert_eq!(report.retries, 0, "{report:?}");
}
