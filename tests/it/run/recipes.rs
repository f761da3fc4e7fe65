//! The scale-out recipes in `samples/scale-out/`: the Kubernetes Indexed
//! Job passes the Kubernetes schema (kubernetes-validate, strict) and shards
//! the job as the README says; the Slurm batch script, run once per array
//! index as Slurm runs it, and the GNU parallel script, run on this machine
//! as GNU parallel runs it, send every row exactly once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::helpers::*;
use crate::support::fault::FaultServer;

fn recipe(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("samples/scale-out")
        .join(name)
}

#[test]
fn the_kubernetes_indexed_job_passes_the_schema_and_shards_by_completion_index() {
    let validator = crate::support::recording::cache_dir().join("kv/bin/kubernetes-validate");
    assert!(
        validator.exists(),
        "{} is missing: run scripts/test (it installs it from PyPI)",
        validator.display()
    );
    let file = recipe("kubernetes-indexed-job.yaml");
    let out = std::process::Command::new(&validator)
        .arg("--strict")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let job: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let n = spec["completions"].as_u64().unwrap();
    let container = &spec["template"]["spec"]["containers"][0];
    let args = container["args"][0].as_str().unwrap();
    assert!(
        args.contains(&format!("--shard \"${{JOB_COMPLETION_INDEX}}/{n}\"")),
        "{args}"
    );
    let env = &container["env"][0];
    assert_eq!(env["name"].as_str(), Some("MAILSHOT_PASSWORD"));
    assert!(env["valueFrom"]["secretKeyRef"]["name"].is_string());
    assert!(container["volumeMounts"][0]["mountPath"].is_string());
}

#[test]
fn the_slurm_script_run_per_array_index_sends_every_row_once() {
    let server = FaultServer::builder().start();
    let job = Job::new(&smtp_plain(server.port(), ""), 30);
    let bin_dir = crate::support::cmd::mailshot_bin()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for i in 0..4 {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg(recipe("slurm-array.sbatch"))
            .env("PATH", &path)
            .env("SLURM_ARRAY_TASK_ID", i.to_string())
            .current_dir(job.dir.path())
            .env("HOME", job.dir.path())
            .env_remove("XDG_CONFIG_HOME");
        let out = spawn_command(cmd).finish_within(RUN_LIMIT);
        assert_eq!(out.code, 0, "task {i}: {}", out.stderr);
        assert!(job.dir.join(format!("job.shard-{i}-of-4.journal")).exists());
    }
    assert_each_once(&server, 30);
}

#[test]
fn the_gnu_parallel_recipe_sends_every_row_once_and_reruns_only_a_failed_shard() {
    assert!(
        std::path::Path::new("/usr/bin/parallel").exists(),
        "GNU parallel is missing: run scripts/test (it installs Debian's parallel)"
    );
    // One recipient is put off (451) until the test lets it through.
    let later = Arc::new(AtomicBool::new(true));
    let put_off = later.clone();
    let server = FaultServer::builder()
        .rcpt_hook(move |to, _| {
            (to == addr(7) && put_off.load(Ordering::SeqCst)).then(|| "451 4.3.0 later".into())
        })
        .start();
    let job = Job::new(&smtp_plain(server.port(), "max_attempts: 1"), 30);
    let bin_dir = crate::support::cmd::mailshot_bin()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Four shards on four "machines", each `:`, GNU parallel's name for this one.
    let recipe_run = || {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg(recipe("parallel-ssh.sh"))
            .arg(job.dir.path())
            .args([":", ":", ":", ":"])
            .env("PATH", &path)
            .current_dir(job.dir.path())
            .env("HOME", job.dir.path())
            .env_remove("XDG_CONFIG_HOME");
        spawn_command(cmd).finish_within(RUN_LIMIT)
    };
    let first = recipe_run();
    assert_ne!(first.code, 0, "a shard failed: {}", first.stderr);
    let ran = |log: &str| log.lines().skip(1).count();
    let log = job.dir.read("parallel.joblog");
    assert_eq!(ran(&log), 4, "{log}");
    for i in 0..4 {
        for file in ["journal", "report.csv", "report.html"] {
            let name = format!("job.shard-{i}-of-4.{file}");
            assert!(job.dir.join(&name).exists(), "{name} missing");
        }
    }
    let sent_once = |n| {
        let got = deliveries(&server);
        assert_eq!(got.len(), n, "{got:?}");
        assert!(got.values().all(|&c| c == 1), "{got:?}");
    };
    sent_once(29);

    // The rerun runs only the failed shard, which sends only the row left.
    later.store(false, Ordering::SeqCst);
    let second = recipe_run();
    assert_eq!(second.code, 0, "{}", second.stderr);
    let log = job.dir.read("parallel.joblog");
    assert_eq!(ran(&log), 5, "{log}");
    assert_each_once(&server, 30);
    let third = recipe_run();
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(ran(&job.dir.read("parallel.joblog")), 5);
    assert_each_once(&server, 30);
}
