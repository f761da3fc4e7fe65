//! `--shard I/N`: N runs of one job send every row exactly once between
//! them, each with its own journal and report, whatever the row order;
//! duplicates are still caught; `mailshot report` merges the shards.

use std::collections::{BTreeMap, BTreeSet};

use super::helpers::*;
use crate::support::fault::FaultServer;

const N: usize = 4;

/// 40 generated rows plus two duplicates (of rows 3 and 17, in other case).
fn csv_with_duplicates() -> String {
    let mut csv = csv_rows(40);
    csv.push_str("R3@EXAMPLE.TEST,Dup three\nr17@Example.Test,Dup seventeen\n");
    csv
}

fn run_shard(job: &Job, i: usize) -> Output {
    job.run(&["--shard", &format!("{i}/{N}")])
}

/// Address → the shard whose report has it as sent.
fn shard_of_each(job: &Job) -> BTreeMap<String, usize> {
    let mut owner = BTreeMap::new();
    for i in 0..N {
        let rows = read_report(&job.dir.join(format!("job.shard-{i}-of-{N}.report.csv")));
        for r in rows.iter().filter(|r| r.status == "sent") {
            assert!(
                owner.insert(r.email.clone(), i).is_none(),
                "{} twice",
                r.email
            );
        }
    }
    owner
}

#[test]
fn n_shards_send_every_row_exactly_once_with_their_own_files() {
    let server = FaultServer::builder().start();
    let job = Job::with_csv(&smtp_plain(server.port(), ""), &csv_with_duplicates(), "");
    let mut report_rows = BTreeSet::new();
    let mut skipped = Vec::new();
    for i in 0..N {
        let out = run_shard(&job, i);
        assert_eq!(out.code, 0, "shard {i}: {}", out.stderr);
        assert!(job
            .dir
            .join(format!("job.shard-{i}-of-{N}.journal"))
            .exists());
        let rows = read_report(&job.dir.join(format!("job.shard-{i}-of-{N}.report.csv")));
        assert!(
            !rows.is_empty() && rows.len() < 42,
            "shard {i}: {}",
            rows.len()
        );
        for r in rows {
            assert!(report_rows.insert(r.row), "row {} in two shards", r.row);
            if r.status == "skipped" {
                skipped.push((r.row, i));
            }
        }
    }
    assert!(!job.dir.join("job.journal").exists());
    assert!(!job.dir.join("job.report.csv").exists());
    assert_eq!(report_rows, (1..=42).collect());
    // Both duplicates were caught, in the shard of their first row.
    skipped.sort();
    assert_eq!(
        skipped.iter().map(|s| s.0).collect::<Vec<_>>(),
        [41, 42],
        "{skipped:?}"
    );
    assert_each_once(&server, 40);
    let owner = shard_of_each(&job);
    for (row, shard) in skipped {
        let first = if row == 41 { addr(3) } else { addr(17) };
        assert_eq!(owner[&first], shard, "duplicate row {row}");
    }
}

#[test]
fn reordering_and_appending_rows_moves_no_address_to_another_shard() {
    let server = FaultServer::builder().start();
    let job = Job::with_csv(&smtp_plain(server.port(), ""), &csv_rows(30), "");
    for i in 0..N {
        assert_eq!(run_shard(&job, i).code, 0);
    }
    let before = shard_of_each(&job);

    // Reversed, with ten more rows at the end.
    let mut lines: Vec<String> = csv_rows(40).lines().skip(1).map(String::from).collect();
    let appended = lines.split_off(30);
    lines.reverse();
    lines.extend(appended);
    let csv = format!("email,name\n{}\n", lines.join("\n"));
    let other = Job::with_csv(&smtp_plain(server.port(), ""), &csv, "");
    for i in 0..N {
        assert_eq!(run_shard(&other, i).code, 0);
    }
    let after = shard_of_each(&other);
    assert_eq!(after.len(), 40);
    for (address, shard) in &before {
        assert_eq!(after[address], *shard, "{address} moved");
    }
    // Every shard got some of the 40 (the hash spreads them).
    let used: BTreeSet<usize> = after.values().copied().collect();
    assert_eq!(used.len(), N);
}

#[test]
fn mailshot_report_merges_the_shards_into_one_report_page_and_retry_file() {
    let server = FaultServer::builder()
        .rcpt_hook(|to, _| (to == "r5@example.test").then(|| "451 4.3.0 later".to_owned()))
        .start();
    let job = Job::with_csv(
        &smtp_plain(server.port(), "sessions: 2"),
        &csv_with_duplicates(),
        "",
    );
    let report = || {
        Mailshot::new(job.dir.path())
            .args(["report", "job.yaml"])
            .limit(RUN_LIMIT)
            .run()
    };
    // Three of four shards: the merge says which one is missing.
    let last = N - 1;
    for i in (0..N).filter(|&i| i != last) {
        run_shard(&job, i);
    }
    let partial = report();
    assert_eq!(partial.code, 75, "{}", partial.stderr);
    assert!(
        partial.stderr.contains(&format!("shard {last} of {N}")),
        "{}",
        partial.stderr
    );
    run_shard(&job, last);
    let out = report();
    assert_eq!(out.code, 0, "{}", out.stderr);

    let rows = job.report();
    assert_eq!(
        rows.iter().map(|r| r.row).collect::<Vec<_>>(),
        (1..=42).collect::<Vec<_>>()
    );
    assert_eq!(by_email(&rows)["r5@example.test"].status, "failed");
    assert_eq!(rows.iter().filter(|r| r.status == "sent").count(), 39);
    assert_eq!(rows.iter().filter(|r| r.status == "skipped").count(), 2);
    let page = job.dir.read("job.report.html");
    assert!(page.contains("total</th><td class=\"n\">42</td>"), "{page}");
    assert!(page.contains("sent</th><td class=\"n\">39</td>"));
    // Shards send at the same time: their sessions add up, each in the table.
    assert!(page.contains("<dd id=\"sessions\">8</dd>"), "{page}");
    let table = page.split("id=\"sessions-table\"").nth(1).expect("a table");
    let table = table.split("</table>").next().unwrap();
    for i in 0..N {
        let journal = format!("job.shard-{i}-of-{N}.journal</th><td class=\"n\">2</td>");
        assert!(table.contains(&journal), "{table}");
    }
    assert_eq!(
        job.dir.read("job.retry.csv"),
        "email,name\nr5@example.test,Name 5\n"
    );
}

#[test]
fn a_shard_outside_0_to_n_minus_1_is_a_usage_error() {
    let job = Job::new(&smtp_plain(9, ""), 2);
    for bad in ["4/4", "1/0", "x/2", "2"] {
        let out = job.run(&["--shard", bad]);
        assert_eq!(out.code, 64, "{bad}: {}", out.stderr);
        assert!(out.stderr.contains("--shard"), "{}", out.stderr);
    }
}

#[test]
fn a_dry_run_of_a_shard_renders_only_its_rows() {
    let job = Job::new(&smtp_plain(9, ""), 20);
    let mut all = BTreeSet::new();
    for i in 0..2 {
        let dir = format!("out{i}");
        let out = job.run(&["--dry-run", "--out", &dir, "--shard", &format!("{i}/2")]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let files: Vec<String> = std::fs::read_dir(job.dir.join(&dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!files.is_empty() && files.len() < 20, "{files:?}");
        for f in files {
            assert!(all.insert(f.clone()), "{f} in both shards");
        }
    }
    assert_eq!(all.len(), 20);
}
