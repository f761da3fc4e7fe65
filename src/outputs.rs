//! Output files that hold recipients' addresses (the journal, the report and
//! its scratch file, the `.eml` files of a dry run or the capture server):
//! created readable by their owner only (mode 0600), never through a symbolic
//! link, and with errors that name the file, say why, and map to the exit
//! codes the README lists — 73 when a file cannot be created, 74 when writing it
//! failed part way.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::Error;

/// The permission bits of every output file.
pub const MODE: u32 = 0o600;

/// Options for opening an output file: mode 0600 when created, and
/// `O_NOFOLLOW`, so a symbolic link planted at the path is refused rather
/// than followed to a file of someone else's choosing. Set read, write,
/// append, create and truncate on them as needed.
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    o
}

/// Create (or replace) `path` for writing, as [`options`] describes.
pub fn create(path: &Path) -> io::Result<File> {
    options().write(true).create(true).truncate(true).open(path)
}

/// Write `bytes` to a new temporary sibling of `path` (mode 0600), then
/// rename it into place, so a reader never sees a partial file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let result = options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Why an I/O operation on an output file failed, in words: the system's
/// message, with a symbolic link (ELOOP from `O_NOFOLLOW`) spelled out.
pub fn reason(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ELOOP) {
        "it is a symbolic link, which mailshot does not follow for its output files; \
         remove the link"
            .to_owned()
    } else {
        e.to_string()
    }
}

/// The error for an output file (`what`: "journal", "report", ...) that cannot
/// be created or opened: exit 73.
pub fn cannot_create(what: &str, path: &Path, e: &io::Error) -> Error {
    Error::CantCreate(format!(
        "cannot create the {what} {}: {}",
        path.display(),
        reason(e)
    ))
}

/// The error for an output file whose writing failed part way: exit 74.
pub fn write_failed(what: &str, path: &Path, e: &io::Error) -> Error {
    Error::Output(format!(
        "writing the {what} {} failed: {}",
        path.display(),
        reason(e)
    ))
}

/// [`cannot_create`] or [`write_failed`], by the kind of failure: a full disk
/// or an I/O error is a write that failed part way, anything else (a
/// read-only folder, missing permission, a symbolic link) a file that cannot
/// be created.
pub fn error(what: &str, path: &Path, e: &io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT | libc::EIO | libc::EFBIG) => write_failed(what, path, e),
        _ => cannot_create(what, path, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        drop(create(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = create(&link).unwrap_err();
        assert!(reason(&err).contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert_eq!(error("journal", &link, &err).exit_code() as i32, 73);
    }

    #[test]
    fn atomic_writes_are_private_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.eml");
        write_atomically(&path, b"hello").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_full_disk_is_74_and_names_the_file() {
        let e = io::Error::from_raw_os_error(libc::ENOSPC);
        let err = error("report", Path::new("job.report.csv"), &e);
        assert_eq!(err.exit_code() as i32, 74);
        let msg = err.to_string();
        assert!(msg.contains("job.report.csv") && msg.contains("No space left on device"));
    }
}
