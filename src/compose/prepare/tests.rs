//! A pass on several threads tells each row what reading the list row
//! after row tells it: the same messages, duplicates (of the same first
//! row), suppressed and refused rows, in any shard and with duplicates
//! allowed or not.

use proptest::prelude::*;

use super::{prepare, Pass, Prepared, Row};
use crate::compose::recipients::RecipientReader;
use crate::job::shard::Shard;

/// Addresses the rows pick from: two spellings of one address, suppressed
/// ones, and ones that cannot be used.
const ADDRESSES: &[&str] = &[
    "ann@example.com",
    "ANN@Example.com",
    "bob@example.com",
    "cy@example.com",
    "dee@example.com",
    "eve@example.org",
    "not an address",
    "",
];

/// What goes in a row's Cc: nothing, a good address, a suppressed one, or
/// one that refuses the row when it renders.
const CCS: &[&str] = &["", "carbon@example.com", "dee@example.com", "bad@@cc"];

/// A row as a pass handed it on: what became of it, its row, its email,
/// and the first row it repeats.
type Told = (&'static str, u64, String, u64);

fn told<M>(row: &Row<M>, message: impl Fn(&M) -> (u64, String)) -> Told {
    match row {
        Row::Message(m) => {
            let (row, email) = message(m);
            ("message", row, email, 0)
        }
        Row::Duplicate { row, email, first } => ("duplicate", *row, email.clone(), *first),
        Row::Suppressed { row, email } => ("suppressed", *row, email.clone(), 0),
        Row::Invalid { row, email, .. } => ("invalid", *row, email.clone(), 0),
    }
}

/// A job over `rows` (address and Cc picks); `dee` and `cy` suppressed.
fn job(
    dir: &std::path::Path,
    rows: &[(usize, usize)],
    allow_duplicates: bool,
) -> std::path::PathBuf {
    let mut csv = String::from("email,cc\n");
    for &(a, c) in rows {
        csv.push_str(&format!("\"{}\",{}\n", ADDRESSES[a], CCS[c]));
    }
    std::fs::write(dir.join("list.csv"), csv).unwrap();
    std::fs::write(dir.join("body.txt"), "Hi {{ email | lower }}\n").unwrap();
    std::fs::write(
        dir.join("suppressed.csv"),
        "email\ndee@example.com\nCY@example.com\n",
    )
    .unwrap();
    let path = dir.join("job.yaml");
    std::fs::write(
        &path,
        format!(
            "from: \"News <news@example.com>\"\n\
             cc: \"{{{{ cc }}}}\"\n\
             subject: \"Hello\"\n\
             text: body.txt\n\
             suppress: suppressed.csv\n\
             recipients:\n  file: list.csv\n  allow_duplicates: {allow_duplicates}\n"
        ),
    )
    .unwrap();
    path
}

/// What reading the list row after row tells each row: the reader's own
/// duplicate detection (it sees every row, in this shard or not), then the
/// shard, then a suppressed address before a duplicate before rendering.
fn one_after_another(prepared: &Prepared) -> Vec<Told> {
    let renderer = prepared.renderer.rows();
    let allow_duplicates = prepared.job.recipients.allow_duplicates;
    let mut out = Vec::new();
    for item in RecipientReader::open(&prepared.job.recipients).unwrap() {
        let r = match item {
            Ok(r) => r,
            Err(d) => {
                out.push(("invalid", d.location.row.unwrap_or(0), String::new(), 0));
                continue;
            }
        };
        if prepared.shard.is_some_and(|s| !s.contains(&r.email)) {
            continue;
        }
        if prepared.suppression.contains(&r.email) {
            out.push(("suppressed", r.row, r.email, 0));
        } else if let (Some(first), false) = (r.duplicate_of, allow_duplicates) {
            out.push(("duplicate", r.row, r.email, first));
        } else {
            let (row, _) = prepared.render(&renderer, r);
            out.push(told(&row, |d| (d.row, d.email.clone())));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn rows_told_on_several_threads_are_rows_told_one_after_another(
        rows in proptest::collection::vec((0..ADDRESSES.len(), 0..CCS.len()), 0..300),
        allow_duplicates in any::<bool>(),
        shard in prop_oneof![Just(None), Just(Some("0/2")), Just(Some("1/2"))],
        threads in 2usize..5,
        reader_works in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = job(dir.path(), &rows, allow_duplicates);
        let mut prepared = prepare(&path, &[]).unwrap();
        prepared.shard = shard.map(|s| Shard::parse(s).unwrap());
        let expected = one_after_another(&prepared);
        let drafts: Vec<Told> = prepared
            .drafts(None)
            .unwrap()
            .map(|row| told(&row, |d| (d.row, d.email.clone())))
            .collect();
        prop_assert_eq!(&drafts, &expected);
        prepared.threads = threads;
        let mut got = Vec::new();
        // Small chunks, so that many travel between the threads.
        let pass = Pass { chunk_bytes: 512, reader_works };
        prepared
            .each_row_in(
                None,
                pass,
                |draft| (draft.row, draft.email),
                |_| 100,
                |row| {
                    got.push(told(&row, |m| m.clone()));
                    Ok(())
                },
            )
            .unwrap();
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn a_second_pass_sizes_its_duplicate_detector_for_the_rows_the_first_one_read() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 50_000;
    let mut csv = String::from("email,cc\n");
    for i in 0..rows {
        csv.push_str(&format!("user{i}@example.com,\n"));
    }
    let path = job(dir.path(), &[], false);
    std::fs::write(dir.path().join("list.csv"), csv).unwrap();
    let mut prepared = prepare(&path, &[]).unwrap();
    prepared.threads = 1;
    let pass = |prepared: &super::Prepared| {
        let (_, peak, tally) = crate::test_alloc::cost(|| prepared.validate(None, false).unwrap());
        assert_eq!(tally.messages, rows);
        peak
    };
    let first = pass(&prepared);
    let second = pass(&prepared);
    // A detector sized at once holds about 15.5 bytes a row; grown as rows
    // come, it peaks higher, with an old table and a new one at once.
    assert!(
        second <= 16 * rows as usize + 256 * 1024,
        "second pass peaked at {second} bytes"
    );
    assert!(first > second, "first pass {first} bytes, second {second}");
}
