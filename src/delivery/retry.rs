//! `JOB.retry.csv`: the recipients CSV rows (its header first) of every
//! recipient the report leaves `failed` or `uncertain`, ready to be a job's
//! `recipients.file`, e.g. to send them through another relay or another day.
//!
//! The rows are copied as the CSV reader split them, byte for byte per
//! field, with the job's delimiter: a file in a legacy encoding (GBK) stays
//! in that encoding, so the same `recipients:` settings read it. Memory holds
//! only the numbers of the rows to copy; both files are streamed.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;

use super::outcome::Status;
use crate::job::RecipientsSpec;

/// The row numbers (1-based data rows) that the report at `report` leaves
/// `failed` or `uncertain`.
pub fn open_rows(report: &Path) -> io::Result<HashSet<u64>> {
    let mut reader = csv::Reader::from_path(report).map_err(csv_error)?;
    let headers = reader.headers().map_err(csv_error)?.clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the report has no {name:?} column"),
            )
        })
    };
    let (row_at, status_at) = (column("row")?, column("status")?);
    let failed = Status::Failed.as_str();
    let uncertain = Status::Uncertain.as_str();
    let mut rows = HashSet::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_error)? {
        let status = record.get(status_at).unwrap_or("");
        if status != failed && status != uncertain {
            continue;
        }
        if let Some(row) = record.get(row_at).and_then(|r| r.parse().ok()) {
            rows.insert(row);
        }
    }
    Ok(rows)
}

/// Write `out`: the header and the rows numbered in `rows` of the recipients
/// file, atomically (a temporary sibling renamed into place), mode 0600.
/// Returns how many rows it holds.
pub fn write(recipients: &RecipientsSpec, rows: &HashSet<u64>, out: &Path) -> io::Result<u64> {
    let source = fs::File::open(&recipients.file)?;
    // The same record splitting as the recipient reader (blank lines are
    // not records), so record N after the header is row N.
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(recipients.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::with_capacity(64 * 1024, source));
    let tmp = crate::outputs::with_suffix(out, ".tmp");
    let file = crate::outputs::create(&tmp)?;
    let done = copy_rows(
        &mut reader,
        rows,
        BufWriter::new(file),
        recipients.delimiter,
    )
    .and_then(|(count, file)| file.sync_data().map(|()| count))
    .and_then(|count| fs::rename(&tmp, out).map(|()| count));
    if done.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    done
}

fn copy_rows<R: io::Read>(
    reader: &mut csv::Reader<R>,
    rows: &HashSet<u64>,
    out: BufWriter<fs::File>,
    delimiter: u8,
) -> io::Result<(u64, fs::File)> {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_writer(out);
    let mut record = csv::ByteRecord::new();
    let mut row = 0u64;
    let mut count = 0u64;
    while reader.read_byte_record(&mut record).map_err(csv_error)? {
        // The header is record 0 and always copied.
        if row == 0 || rows.contains(&row) {
            writer.write_byte_record(&record).map_err(csv_error)?;
            count += u64::from(row > 0);
        }
        row += 1;
    }
    let mut out = writer.into_inner().map_err(|e| e.into_error())?;
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    Ok((count, file))
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

    fn spec(dir: &Path, csv: &[u8], delimiter: u8) -> RecipientsSpec {
        let file = dir.join("list.csv");
        fs::write(&file, csv).unwrap();
        RecipientsSpec {
            file,
            email_column: "email".into(),
            delimiter,
            encoding: encoding_rs::UTF_8,
            allow_duplicates: false,
        }
    }

    #[test]
    fn report_rows_failed_or_uncertain_only() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("r.csv");
        fs::write(
            &report,
            "row,email,status,code,enhanced,reply,message_id,attempts\n\
             1,a@x.test,sent,250,,ok,<m1>,1\n\
             2,b@x.test,failed,451,4.3.0,later,,3\n\
             3,c@x.test,rejected,550,5.1.1,no,,1\n\
             4,d@x.test,uncertain,,,lost,<m4>,1\n\
             5,e@x.test,skipped,,,dup,,0\n",
        )
        .unwrap();
        let rows = open_rows(&report).unwrap();
        assert_eq!(rows, HashSet::from([2, 4]));
    }

    #[test]
    fn copies_header_and_chosen_rows_byte_for_byte_in_the_source_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let (gbk, _, _) = encoding_rs::GBK
            .encode("email;姓名\n\na@x.test;张三\nb@x.test;\"李;四\"\nc@x.test;王五\n");
        let spec = spec(dir.path(), &gbk, b';');
        let out = dir.path().join("retry.csv");
        let n = write(&spec, &HashSet::from([2, 3]), &out).unwrap();
        assert_eq!(n, 2);
        let (want, _, _) =
            encoding_rs::GBK.encode("email;姓名\nb@x.test;\"李;四\"\nc@x.test;王五\n");
        assert_eq!(fs::read(&out).unwrap(), want.to_vec());
    }

    #[test]
    fn nothing_left_leaves_the_header_alone() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path(), b"email,name\na@x.test,A\n", b',');
        let out = dir.path().join("retry.csv");
        fs::write(&out, "stale").unwrap();
        assert_eq!(write(&spec, &HashSet::new(), &out).unwrap(), 0);
        assert_eq!(fs::read_to_string(&out).unwrap(), "email,name\n");
    }
}
