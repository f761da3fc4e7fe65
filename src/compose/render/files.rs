//! Files that templates name (attachments, inline images): opened through a
//! capability, size-checked before reading, and read once per run.
//!
//! **Confinement.** A path that came out of a template expression is opened
//! through a [`cap_std::fs::Dir`] handle on the job's folder, so `..`,
//! absolute paths and symlinks cannot lead outside it (the kernel resolves
//! the path beneath the handle; there is no check-then-open race). A path
//! written literally in the job may point anywhere and is opened as given,
//! relative to the job's folder.
//!
//! **Size.** The opened handle's metadata is checked against
//! `max_attachment_size` before a byte is read, and the read itself stops one
//! byte past the limit, so a file that grows meanwhile cannot exceed it.
//! Only regular files are read: devices, FIFOs and sockets are refused
//! (they are opened non-blocking, so a FIFO without a writer cannot hang).
//!
//! **Cache.** Each path is read once per run and its bytes shared by every
//! row that attaches it. Entries are keyed by the path as written, and
//! shared between paths that name the same file (device and inode); the
//! cache keeps at most [`CACHE_BYTES`] and [`CACHE_ENTRIES`], dropping the
//! least recently used entry first.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::compose::message::FileBytes;
use cap_std::fs::{Dir, MetadataExt as _, OpenOptions, OpenOptionsExt as _};

/// Most bytes the per-run cache keeps.
pub(super) const CACHE_BYTES: u64 = 256 << 20;
/// Most files the per-run cache keeps.
pub(super) const CACHE_ENTRIES: usize = 1024;

/// Where a path came from, which decides how far it may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Origin {
    /// Written literally in the job: opened as given.
    Literal,
    /// Produced by a template expression: must stay inside the job's folder.
    Rendered,
}

/// Why a file could not be used.
#[derive(Debug, Clone)]
pub(super) enum FileError {
    /// A rendered path that leads outside the job's folder.
    Outside,
    /// Larger than `max_attachment_size`.
    TooLarge { limit: u64 },
    /// A device, FIFO, socket or folder.
    NotRegular,
    /// Opening or reading failed.
    Io(Arc<io::Error>),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Outside => f.write_str(
                "the path leads outside the job's folder (a path made from template \
                 values must stay inside it, also after `..` and symlinks)",
            ),
            FileError::TooLarge { limit } => write!(
                f,
                "the file is larger than max_attachment_size ({})",
                format_size(*limit)
            ),
            FileError::NotRegular => f.write_str(
                "not a regular file (devices, FIFOs, sockets and folders cannot be attached)",
            ),
            FileError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The job's files, opened under its folder and cached for the run.
pub(super) struct Files {
    job_dir: PathBuf,
    /// The job's folder as a capability (`None` if it cannot be opened; then
    /// every rendered path is refused).
    root: Option<Dir>,
    max_size: u64,
    cache: Mutex<Cache>,
    reads: AtomicU64,
}

#[derive(Default)]
struct Cache {
    by_path: HashMap<(Origin, String), Entry>,
    /// (device, inode, size, mtime) → bytes, for paths that name one file.
    by_identity: HashMap<Identity, Arc<FileBytes>>,
    bytes: u64,
    clock: u64,
}

type Identity = (u64, u64, u64, i64, i64);

struct Entry {
    data: Arc<FileBytes>,
    identity: Identity,
    used: u64,
}

impl Files {
    /// Files under `job_dir`, none larger than `max_size` bytes.
    pub(super) fn new(job_dir: &Path, max_size: u64) -> Files {
        let root = Dir::open_ambient_dir(job_dir, cap_std::ambient_authority()).ok();
        Files {
            job_dir: job_dir.to_path_buf(),
            root,
            max_size,
            cache: Mutex::default(),
            reads: AtomicU64::new(0),
        }
    }

    /// How many times a file's bytes were read from disk.
    #[cfg(test)]
    pub(super) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The path to show in messages for `path`.
    pub(super) fn display_path(&self, path: &str) -> PathBuf {
        self.job_dir.join(path)
    }

    /// The bytes of `path` (relative to the job's folder), read at most once
    /// per run.
    pub(super) fn read(&self, path: &str, origin: Origin) -> Result<Arc<FileBytes>, FileError> {
        // Held while a missing file is read, so rows on other threads wait
        // for those bytes instead of reading the file again.
        let mut cache = self.cache.lock().expect("file cache poisoned");
        let key = (origin, path.to_string());
        cache.clock += 1;
        let now = cache.clock;
        if let Some(e) = cache.by_path.get_mut(&key) {
            e.used = now;
            return Ok(Arc::clone(&e.data));
        }
        let mut file = self.open(path, origin)?;
        let meta = file.metadata().map_err(io_error)?;
        if !meta.is_file() {
            return Err(FileError::NotRegular);
        }
        if meta.len() > self.max_size {
            return Err(FileError::TooLarge {
                limit: self.max_size,
            });
        }
        let identity = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        let data = match cache.by_identity.get(&identity) {
            Some(data) => Arc::clone(data),
            None => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                let mut data = Vec::with_capacity(meta.len() as usize);
                // One byte past the limit tells a file that grew from one
                // that fits; nothing more is ever read.
                (&mut file)
                    .take(self.max_size + 1)
                    .read_to_end(&mut data)
                    .map_err(io_error)?;
                if data.len() as u64 > self.max_size {
                    return Err(FileError::TooLarge {
                        limit: self.max_size,
                    });
                }
                Arc::new(FileBytes::from(data))
            }
        };
        cache.insert(key, identity, Arc::clone(&data));
        Ok(data)
    }

    fn open(&self, path: &str, origin: Origin) -> Result<cap_std::fs::File, FileError> {
        // A FIFO without a writer would block the open; a terminal must not
        // become ours. Neither changes how a regular file reads.
        let flags = libc::O_NONBLOCK | libc::O_NOCTTY;
        match origin {
            Origin::Literal => {
                use std::os::unix::fs::OpenOptionsExt as _;
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(flags)
                    .open(self.job_dir.join(path))
                    .map(cap_std::fs::File::from_std)
                    .map_err(io_error)
            }
            Origin::Rendered => {
                let mut options = OpenOptions::new();
                options.read(true).custom_flags(flags);
                if Path::new(path).is_absolute() {
                    return Err(FileError::Outside);
                }
                let root = self.root.as_ref().ok_or(FileError::Outside)?;
                root.open_with(path, &options).map_err(|e| {
                    // cap-std reports an escape (`..`, an absolute symlink, a
                    // symlink leading out) as this permission error.
                    if e.kind() == io::ErrorKind::PermissionDenied
                        && e.to_string().contains("outside")
                    {
                        FileError::Outside
                    } else {
                        io_error(e)
                    }
                })
            }
        }
    }
}

impl Cache {
    fn insert(&mut self, key: (Origin, String), identity: Identity, data: Arc<FileBytes>) {
        let size = data.len() as u64;
        if size > CACHE_BYTES {
            return;
        }
        while !self.by_path.is_empty()
            && (self.bytes + size > CACHE_BYTES || self.by_path.len() >= CACHE_ENTRIES)
        {
            self.evict_oldest();
        }
        self.clock += 1;
        let used = self.clock;
        self.by_identity.insert(identity, Arc::clone(&data));
        if let Some(old) = self.by_path.insert(
            key,
            Entry {
                data,
                identity,
                used,
            },
        ) {
            self.bytes -= old.data.len() as u64;
        }
        self.bytes += size;
    }

    fn evict_oldest(&mut self) {
        let Some(key) = self
            .by_path
            .iter()
            .min_by_key(|(_, e)| e.used)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        let old = self.by_path.remove(&key).expect("key just found");
        self.bytes -= old.data.len() as u64;
        if !self.by_path.values().any(|e| e.identity == old.identity) {
            self.by_identity.remove(&old.identity);
        }
    }
}

/// Read a file named outside any template (on the command line): the same
/// rules as for a job's literal paths, without the cache. Errors are
/// [`io::Error`]s whose text says what was refused.
pub fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let refused = |e: FileError| io::Error::other(e.to_string());
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused(FileError::NotRegular));
    }
    let too_large = || refused(FileError::TooLarge { limit: max });
    if meta.len() > max {
        return Err(too_large());
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    (&mut file).take(max + 1).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Err(too_large());
    }
    Ok(data)
}

fn io_error(e: io::Error) -> FileError {
    FileError::Io(Arc::new(e))
}

/// A size in the largest decimal unit that divides it (`25MB`, `1500KB`).
pub(super) fn format_size(n: u64) -> String {
    for (unit, f) in [("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000)] {
        if n >= f && n.is_multiple_of(f) {
            return format!("{}{unit}", n / f);
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let full = d.path().join(p);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, c).unwrap();
        }
        d
    }

    #[test]
    fn rendered_paths_stay_inside_the_job_folder() {
        let outer = dir_with(&[("secret.txt", "s"), ("job/ok/a.txt", "a")]);
        let job = outer.path().join("job");
        std::os::unix::fs::symlink(outer.path().join("secret.txt"), job.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", job.join("abs")).unwrap();
        std::os::unix::fs::symlink("ok/a.txt", job.join("inner")).unwrap();
        let files = Files::new(&job, crate::job::manifest::DEFAULT_MAX_ATTACHMENT_SIZE);
        let read = |p: &str| files.read(p, Origin::Rendered);
        assert_eq!(&read("ok/a.txt").unwrap()[..], b"a");
        assert_eq!(&read("ok/../ok/a.txt").unwrap()[..], b"a");
        assert_eq!(&read("inner").unwrap()[..], b"a");
        for bad in [
            "../secret.txt",
            "ok/../../secret.txt",
            "/etc/passwd",
            "link",
            "abs",
        ] {
            assert!(
                matches!(read(bad), Err(FileError::Outside)),
                "{bad}: {:?}",
                read(bad)
            );
        }
        // Written literally in the job, the same paths are allowed.
        let literal = files.read("../secret.txt", Origin::Literal).unwrap();
        assert_eq!(&literal[..], b"s");
        assert!(files.read("link", Origin::Literal).is_ok());
    }

    #[test]
    fn size_is_checked_before_reading_and_reads_are_capped() {
        let d = dir_with(&[("big.bin", "0123456789"), ("fits.bin", "0123")]);
        let files = Files::new(d.path(), 5);
        assert!(matches!(
            files.read("big.bin", Origin::Rendered),
            Err(FileError::TooLarge { limit: 5 })
        ));
        assert_eq!(files.reads(), 0, "refused on metadata, before reading");
        assert!(files.read("fits.bin", Origin::Rendered).is_ok());
        assert!(matches!(
            files.read("/dev/zero", Origin::Literal),
            Err(FileError::NotRegular)
        ));
    }

    #[test]
    fn a_file_is_read_once_however_many_rows_attach_it() {
        let d = dir_with(&[("logo.png", "PNG"), ("other.png", "O")]);
        let files = Files::new(d.path(), crate::job::manifest::DEFAULT_MAX_ATTACHMENT_SIZE);
        let first = files.read("logo.png", Origin::Rendered).unwrap();
        for _ in 0..100 {
            let again = files.read("logo.png", Origin::Rendered).unwrap();
            assert!(Arc::ptr_eq(&first, &again));
        }
        // Another name for the same file shares its bytes too.
        let dotted = files.read("./logo.png", Origin::Rendered).unwrap();
        assert!(Arc::ptr_eq(&first, &dotted));
        files.read("other.png", Origin::Rendered).unwrap();
        assert_eq!(files.reads(), 2);
    }

    #[test]
    fn the_cache_drops_the_least_recently_used_file() {
        let mut cache = Cache::default();
        let big = Arc::new(FileBytes::from(vec![0u8; (CACHE_BYTES / 2) as usize]));
        cache.insert((Origin::Literal, "a".into()), (1, 1, 0, 0, 0), big.clone());
        cache.insert((Origin::Literal, "b".into()), (1, 2, 0, 0, 0), big.clone());
        cache.insert((Origin::Literal, "c".into()), (1, 3, 0, 0, 0), big);
        assert!(cache.bytes <= CACHE_BYTES);
        assert!(!cache.by_path.contains_key(&(Origin::Literal, "a".into())));
        assert!(cache.by_path.contains_key(&(Origin::Literal, "c".into())));
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        assert_eq!(format_size(25_000_000), "25MB");
        assert_eq!(format_size(1234), "1234 bytes");
    }
}
