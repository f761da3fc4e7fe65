//! `--threads N`: the validation pass renders on several threads, and what a
//! user sees — exit code, the problems listed and their order, the cap of
//! fifty and the count of the rest, the summary line — is the same whatever
//! the thread count.

use super::{simple_job, JobDir};

/// Rows of the generated list.
const ROWS: u64 = 3000;

/// What the test made row `i` to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Renders.
    Good,
    /// The email column is not an address (the CSV reader refuses it).
    BadAddress,
    /// The address of row 1 again: skipped, not an error.
    Duplicate,
    /// The subject divides by the row's `n`, which is 0: a template error.
    TemplateError,
}

/// Row `i`'s kind; 0 for `bad_every` or `zero_every` means never.
fn kind(i: u64, bad_every: u64, zero_every: u64) -> Kind {
    if bad_every > 0 && i % bad_every == 3 {
        Kind::BadAddress
    } else if i % 89 == 5 {
        Kind::Duplicate
    } else if zero_every > 0 && i % zero_every == 2 {
        Kind::TemplateError
    } else {
        Kind::Good
    }
}

/// A job over [`ROWS`] rows whose kinds follow `bad_every`/`zero_every`.
fn job(bad_every: u64, zero_every: u64) -> JobDir {
    let jd = JobDir::new();
    let mut csv = String::from("email,name,n\n");
    for i in 1..=ROWS {
        let email = match kind(i, bad_every, zero_every) {
            Kind::BadAddress => format!("not-an-address-{i}"),
            Kind::Duplicate => "u1@example.com".to_string(),
            _ => format!("u{i}@example.com"),
        };
        let n = if kind(i, bad_every, zero_every) == Kind::TemplateError {
            0
        } else {
            1
        };
        csv.push_str(&format!("{email},Name {i},{n}\n"));
    }
    jd.csv(csv);
    jd.job(&simple_job("").replace(
        "subject: \"Hello {{ name }}\"",
        "subject: \"Hello {{ name }} {{ 100 // (n|int) }}\"",
    ));
    jd
}

/// The row number and kind of one listed problem.
fn listed(line: &str) -> (u64, Kind) {
    let row = line
        .split("(row ")
        .nth(1)
        .and_then(|s| s.split([',', ')']).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no row in {line:?}"));
    let kind = if line.contains("invalid address") {
        Kind::BadAddress
    } else if line.contains("template error") && line.contains("100 // 0") {
        Kind::TemplateError
    } else {
        panic!("unexpected problem: {line:?}")
    };
    (row, kind)
}

#[test]
fn check_lists_the_same_problems_in_row_order_with_one_thread_or_four() {
    let jd = job(97, 13);
    let expected: Vec<(u64, Kind)> = (1..=ROWS)
        .map(|i| (i, kind(i, 97, 13)))
        .filter(|(_, k)| matches!(k, Kind::BadAddress | Kind::TemplateError))
        .collect();
    assert!(expected.len() > 100, "the job has problems past the cap");

    let one = jd.run(&["check", "job.yaml", "--threads", "1"]);
    one.expect_code(65);
    let lines: Vec<&str> = one.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        51,
        "fifty problems and the count:\n{}",
        one.stderr
    );
    let shown: Vec<(u64, Kind)> = lines[..50].iter().map(|l| listed(l)).collect();
    assert_eq!(shown, expected[..50], "{}", one.stderr);
    assert_eq!(
        lines[50].trim(),
        format!("… and {} more errors", expected.len() - 50),
        "{}",
        one.stderr
    );

    for threads in ["2", "4"] {
        let many = jd.run(&["check", "job.yaml", "--threads", threads]);
        many.expect_code(65);
        assert_eq!(many.stderr, one.stderr, "--threads {threads}");
        assert_eq!(many.stdout, one.stdout, "--threads {threads}");
    }
    // The default (every core) too, and `run` refuses with the same listing.
    let default = jd.run(&["check", "job.yaml"]);
    assert_eq!((default.code, &default.stderr), (65, &one.stderr));
    let run = jd.run(&["run", "job.yaml", "--threads", "4", "--quiet"]);
    run.expect_code(65);
    let listing = lines[1..].join("\n");
    assert!(
        run.stderr.contains(&listing),
        "run lists the same problems:\n{}",
        run.stderr
    );
}

#[test]
fn a_clean_check_counts_the_same_with_any_thread_count() {
    // No bad address, no zero: only duplicates.
    let jd = job(0, 0);
    let dups = (1..=ROWS).filter(|&i| i % 89 == 5).count() as u64;
    let expected = format!(
        "job.yaml: {} messages render cleanly, {dups} duplicate rows will be skipped",
        ROWS - dups
    );
    for threads in ["1", "3"] {
        let out = jd.run(&["check", "job.yaml", "--threads", threads]);
        out.expect_code(0);
        // Past 300 recipients without List-Unsubscribe a warning follows.
        assert_eq!(
            out.stderr.lines().next(),
            Some(expected.as_str()),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn threads_must_be_a_positive_number() {
    let jd = job(97, 13);
    for bad in ["0", "many", "5000"] {
        let out = jd.run(&["check", "job.yaml", "--threads", bad]);
        out.expect_code(64);
        assert!(out.stderr.contains("--threads"), "{bad}: {}", out.stderr);
    }
}
