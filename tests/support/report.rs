//! The one reader of the per-recipient report CSV (`JOB.report.csv`): it
//! checks the header the README fixes, once, and gives each row typed fields,
//! or any column by name (`row["status"]`).

use std::collections::HashMap;
use std::path::Path;

/// The report's columns, in order, as the README's "Big runs" section lists them.
pub const HEADER: [&str; 8] = [
    "row",
    "email",
    "status",
    "code",
    "enhanced",
    "reply",
    "message_id",
    "attempts",
];

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// The recipient's row number in the input (1-based).
    pub row: u64,
    /// The recipient address.
    pub email: String,
    /// `sent`, `failed`, `skipped`, `uncertain`, ...
    pub status: String,
    /// The server's reply code, if any.
    pub code: String,
    /// The enhanced status code, if any.
    pub enhanced: String,
    /// The server's reply text (or the reason).
    pub reply: String,
    /// The message's Message-ID.
    pub message_id: String,
    /// How many attempts the row took.
    pub attempts: u32,
    /// Every column as written, in [`HEADER`] order.
    fields: Vec<String>,
}

impl std::ops::Index<&str> for ReportRow {
    type Output = String;

    /// The column `name` as written; panics on a column the report does not have.
    fn index(&self, name: &str) -> &String {
        let i = HEADER
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("the report has no column {name:?}"));
        &self.fields[i]
    }
}

/// Reads the report at `path`, asserting its header is exactly [`HEADER`].
pub fn read_report(path: &Path) -> Vec<ReportRow> {
    let mut rd = csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("read report {}: {e}", path.display()));
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, HEADER, "report header of {}", path.display());
    rd.records()
        .map(|r| {
            let fields: Vec<String> = r
                .expect("report record")
                .iter()
                .map(str::to_owned)
                .collect();
            assert_eq!(fields.len(), HEADER.len(), "report record {fields:?}");
            ReportRow {
                row: fields[0].parse().expect("row number"),
                email: fields[1].clone(),
                status: fields[2].clone(),
                code: fields[3].clone(),
                enhanced: fields[4].clone(),
                reply: fields[5].clone(),
                message_id: fields[6].clone(),
                attempts: fields[7].parse().expect("attempts"),
                fields,
            }
        })
        .collect()
}

/// The report row for `email` (the first, if it is there twice).
#[track_caller]
pub fn row_of<'a>(rows: &'a [ReportRow], email: &str) -> &'a ReportRow {
    rows.iter()
        .find(|r| r.email == email)
        .unwrap_or_else(|| panic!("no report row for {email}: {rows:?}"))
}

/// Report rows by email.
pub fn by_email(rows: &[ReportRow]) -> HashMap<String, ReportRow> {
    rows.iter().map(|r| (r.email.clone(), r.clone())).collect()
}

/// Report rows by row number.
pub fn by_row(rows: &[ReportRow]) -> HashMap<u64, ReportRow> {
    rows.iter().map(|r| (r.row, r.clone())).collect()
}
