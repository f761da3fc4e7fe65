//! One job as a Slurm job array on a private single-node cluster: four
//! array tasks run `samples/scale-out/slurm-array.sbatch`, one is cancelled
//! mid-run with `scancel` and resubmitted, and a private Postfix still
//! receives every recipient of the list exactly once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::helpers::*;
use crate::support::postfix::Postfix;
use crate::support::slurm::Slurm;

/// To address → messages in Postfix's Maildir, once the count stays put.
fn received(pf: &Postfix, n: usize) -> BTreeMap<String, usize> {
    pf.wait_for_messages(n, Duration::from_secs(60));
    let mut last = pf.messages().len();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        let now = pf.messages().len();
        if now == last {
            break;
        }
        last = now;
    }
    let mut got = BTreeMap::new();
    for path in pf.messages() {
        let bytes = std::fs::read(&path).unwrap();
        let msg = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        let to = msg
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap()
            .to_ascii_lowercase();
        *got.entry(to).or_default() += 1;
    }
    got
}

fn outcomes_in(journal: &std::path::Path) -> usize {
    std::fs::read_to_string(journal)
        .map(|j| j.matches("\"t\":\"outcome\"").count())
        .unwrap_or(0)
}

#[test]
fn a_slurm_array_with_a_cancelled_and_resubmitted_task_delivers_exactly_once() {
    let slurm = Slurm::start();
    let pf = Postfix::start();
    let n = 120;
    let job = Job::new(
        &format!(
            "{{ url: \"smtp+plain://127.0.0.1:{}\", timeout: 10s, retry_delay: 50ms, rate: 8/s }}",
            pf.port()
        ),
        n,
    );
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples/scale-out/slurm-array.sbatch");
    let bin_dir = crate::support::cmd::mailshot_bin()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let submit = |array: &str| {
        let mut cmd = Command::new("sbatch");
        cmd.arg("--parsable")
            .arg(format!("--array={array}"))
            .arg(format!("--chdir={}", job.dir.path().display()))
            .arg(&script)
            .env("PATH", &path)
            .env("HOME", job.dir.path())
            .env("SHARDS", "4")
            .env_remove("XDG_CONFIG_HOME");
        slurm.sbatch(&mut cmd)
    };
    let id = submit("0-3");

    // Task 1 is cancelled once it has sent a few messages.
    let journal = job.dir.join("job.shard-1-of-4.journal");
    let deadline = Instant::now() + Duration::from_secs(60);
    while outcomes_in(&journal) < 3 {
        assert!(
            Instant::now() < deadline,
            "task 1 never sent: {}",
            slurm.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = slurm
        .client("scancel")
        .arg(format!("{id}_1"))
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while slurm.queue().contains(&format!("{id}_1")) {
        assert!(Instant::now() < deadline, "task 1 not cancelled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let cancelled_at = outcomes_in(&journal);
    let shard_rows = read_report(&job.dir.join("job.shard-1-of-4.report.csv"));
    let sent_before = shard_rows.iter().filter(|r| r.status == "sent").count();
    let log =
        std::fs::read_to_string(job.dir.join(format!("mailshot-{id}_1.log"))).unwrap_or_default();
    assert!(
        log.contains("interrupted"),
        "task 1 was not stopped mid-run: {log}"
    );

    // Resubmitted by its index, it sends only what was left.
    submit("1");
    slurm.wait_empty(Duration::from_secs(120));
    assert!(outcomes_in(&journal) > cancelled_at);

    let got = received(&pf, n);
    let want: BTreeMap<String, usize> = (1..=n).map(|i| (addr(i), 1)).collect();
    assert_eq!(got, want);
    let merged = Mailshot::new(job.dir.path())
        .args(["report", "job.yaml"])
        .limit(RUN_LIMIT)
        .run();
    assert_eq!(merged.code, 0, "{}", merged.stderr);
    let rows = job.report();
    assert_eq!(rows.len(), n);
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
    assert!(sent_before > 0, "the cancelled task had sent nothing");
}
