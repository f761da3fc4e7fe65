//! Merging the reports of a job run as shards (`--shard I/N`): find the
//! shards' reports beside the job and merge them, each already in row order,
//! into one report in row order, streaming (a k-way merge), so a sharded
//! million-row run merges in bounded memory.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::report::HEADER;
use crate::job::shard::Shard;

/// One shard's files.
#[derive(Debug, Clone)]
pub struct ShardFiles {
    /// Which shard.
    pub shard: Shard,
    /// `JOB.shard-I-of-N.report.csv`.
    pub report: PathBuf,
    /// `JOB.shard-I-of-N.journal` (may be missing).
    pub journal: PathBuf,
}

/// The shards whose report exists beside `job`, by index.
pub fn find(job: &Path) -> io::Result<Vec<ShardFiles>> {
    let dir = match job.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = job
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{stem}.shard-");
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(middle) = name
            .strip_prefix(&prefix)
            .and_then(|n| n.strip_suffix(".report.csv"))
        else {
            continue;
        };
        let Some((i, n)) = middle.split_once("-of-") else {
            continue;
        };
        let Ok(shard) = Shard::parse(&format!("{i}/{n}")) else {
            continue;
        };
        found.push(ShardFiles {
            shard,
            report: dir.join(&name),
            journal: crate::outputs::beside(job, &shard.suffix("journal")),
        });
    }
    found.sort_by_key(|f| (f.shard.count, f.shard.index));
    Ok(found)
}

/// Merge `reports` (each in row order) into `out` in row order, atomically;
/// returns the rows written.
pub fn merge(reports: &[PathBuf], out: &Path) -> io::Result<u64> {
    let mut readers = Vec::with_capacity(reports.len());
    for path in reports {
        readers.push(csv::Reader::from_path(path).map_err(csv_error)?);
    }
    let mut heads: Vec<csv::ByteRecord> = vec![csv::ByteRecord::new(); readers.len()];
    let mut heap = BinaryHeap::new();
    for (i, reader) in readers.iter_mut().enumerate() {
        if reader.read_byte_record(&mut heads[i]).map_err(csv_error)? {
            heap.push(Reverse((row_of(&heads[i])?, i)));
        }
    }
    let tmp = crate::outputs::with_suffix(out, ".tmp");
    let result = (|| {
        let file = crate::outputs::create(&tmp)?;
        let mut w = csv::Writer::from_writer(BufWriter::new(file));
        w.write_record(HEADER).map_err(csv_error)?;
        let mut rows = 0u64;
        while let Some(Reverse((_, i))) = heap.pop() {
            w.write_byte_record(&heads[i]).map_err(csv_error)?;
            rows += 1;
            if readers[i]
                .read_byte_record(&mut heads[i])
                .map_err(csv_error)?
            {
                heap.push(Reverse((row_of(&heads[i])?, i)));
            }
        }
        let mut buf = w.into_inner().map_err(|e| e.into_error())?;
        buf.flush()?;
        buf.into_inner().map_err(|e| e.into_error())?.sync_data()?;
        fs::rename(&tmp, out)?;
        Ok(rows)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn row_of(record: &csv::ByteRecord) -> io::Result<u64> {
    record
        .get(0)
        .and_then(|r| std::str::from_utf8(r).ok())
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a report row without a number"))
}

fn csv_error(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_shard_reports_and_merges_them_in_row_order() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("news.yaml");
        let head = HEADER.join(",");
        fs::write(
            dir.path().join("news.shard-0-of-2.report.csv"),
            format!("{head}\n1,a@x,sent,250,,ok,<1>,1\n4,d@x,sent,250,,ok,<4>,1\n"),
        )
        .unwrap();
        fs::write(
            dir.path().join("news.shard-1-of-2.report.csv"),
            format!("{head}\n2,b@x,sent,250,,ok,<2>,1\n3,c@x,failed,451,,\"later, maybe\",,3\n"),
        )
        .unwrap();
        fs::write(dir.path().join("other.shard-0-of-2.report.csv"), "x").unwrap();
        let found = find(&job).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].shard, Shard { index: 1, count: 2 });
        assert!(found[1].journal.ends_with("news.shard-1-of-2.journal"));
        let reports: Vec<PathBuf> = found.iter().map(|f| f.report.clone()).collect();
        let out = dir.path().join("news.report.csv");
        assert_eq!(merge(&reports, &out).unwrap(), 4);
        assert_eq!(
            fs::read_to_string(&out).unwrap(),
            format!(
                "{head}\n1,a@x,sent,250,,ok,<1>,1\n2,b@x,sent,250,,ok,<2>,1\n\
                 3,c@x,failed,451,,\"later, maybe\",,3\n4,d@x,sent,250,,ok,<4>,1\n"
            )
        );
    }
}
