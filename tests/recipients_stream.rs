//! The recipient reader streams: a 1,000,000-row CSV is read with a peak
//! resident set far below the file's size plus per-row data. This is its own
//! test binary so that no other test shares (and inflates) the process.

use std::io::{BufWriter, Write};

use mailshot::compose::recipients::RecipientReader;
use mailshot::job::RecipientsSpec;

const ROWS: u64 = 1_000_000;
const LIMIT_KB: u64 = 100 * 1024;

/// Peak resident set size (VmHWM) of this process in kB.
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM value")
}

#[test]
fn million_rows_stay_under_100_mb() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.csv");
    let mut out = BufWriter::new(std::fs::File::create(&file).unwrap());
    // The padding makes the file larger than the memory limit, so reading
    // it whole (or keeping the rows) could not pass.
    let pad = "x".repeat(90);
    writeln!(out, "email,name,id,pad").unwrap();
    for i in 0..ROWS {
        // Every tenth address repeats an earlier one, so dedupe is exercised.
        let n = if i % 10 == 9 { i - 9 } else { i };
        writeln!(out, "u{n}@example.com,Name {i},{i},{pad}").unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > LIMIT_KB * 1024, "file is only {size} bytes");

    let spec = RecipientsSpec {
        file,
        email_column: "email".into(),
        delimiter: b',',
        encoding: encoding_rs::UTF_8,
        allow_duplicates: false,
    };
    let (mut rows, mut dups, mut last_row) = (0u64, 0u64, 0u64);
    for item in RecipientReader::open(&spec).unwrap() {
        let r = item.unwrap_or_else(|d| panic!("{d}"));
        rows += 1;
        dups += u64::from(r.duplicate_of.is_some());
        last_row = r.row;
    }
    assert_eq!(rows, ROWS);
    assert_eq!(last_row, ROWS);
    assert_eq!(dups, ROWS / 10);

    let peak = peak_rss_kb();
    assert!(
        peak < LIMIT_KB,
        "peak RSS {peak} kB exceeds {LIMIT_KB} kB for a {size}-byte file"
    );
}
