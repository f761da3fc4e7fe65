//! `mailshot report JOB`: rebuild `JOB.report.html` and `JOB.retry.csv` from
//! the job's report and journal, sending nothing. [`write_outputs`] is also
//! how `mailshot run` writes them at the end of every run.

use std::path::{Path, PathBuf};

use crate::cli::ReportArgs;
use crate::delivery::merge;
use crate::delivery::page::{self, Sources};
use crate::delivery::retry;
use crate::error::{Error, ExitCode, Result};
use crate::job::shard::{suffix, Shard};
use crate::job::Job;
use crate::outputs::beside;

/// The page and the retry file for `job`, from these reports and journals.
pub fn write_outputs(
    job: &Job,
    shard: Option<&Shard>,
    reports: &[PathBuf],
    journals: &[PathBuf],
) -> Result<()> {
    let retry_path = beside(&job.path, &suffix(shard, "retry.csv"));
    let mut open = std::collections::HashSet::new();
    for report in reports {
        let rows =
            retry::open_rows(report).map_err(|e| crate::outputs::error("report", report, &e))?;
        open.extend(rows);
    }
    retry::write(&job.recipients, &open, &retry_path)
        .map_err(|e| crate::outputs::error("retry file", &retry_path, &e))?;

    let html_path = beside(&job.path, &suffix(shard, "report.html"));
    let sources = Sources {
        reports: reports.to_vec(),
        journals: journals.to_vec(),
        bounces: Some(beside(&job.path, "bounces.csv")),
    };
    let title = match shard {
        Some(s) => format!("{}, shard {s}", title(&job.path)),
        None => title(&job.path),
    };
    page::write(&title, &sources, &html_path)
        .map_err(|e| crate::outputs::error("HTML report", &html_path, &e))?;
    Ok(())
}

/// The job's name as the page shows it (its file name).
fn title(job: &Path) -> String {
    job.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `mailshot report JOB`: the job's report, or, when the job ran as shards,
/// the shards' reports merged into `JOB.report.csv`.
pub fn report(args: &ReportArgs) -> Result<ExitCode> {
    let vars = crate::job::parse_vars(&args.job.vars)?;
    let job = crate::job::load(&args.job.job, &vars)?;
    let shards = merge::find(&job.path).map_err(|e| Error::no_input(&job.dir, &e))?;
    if args.report.is_none() && !shards.is_empty() {
        return report_shards(&job, &shards, args.quiet);
    }
    let report = args
        .report
        .clone()
        .unwrap_or_else(|| beside(&job.path, "report.csv"));
    if !report.exists() {
        return Err(Error::NoInput {
            path: report,
            message: format!(
                "no report yet; `mailshot run {}` writes it",
                args.job.job.display()
            ),
        });
    }
    write_outputs(&job, None, &[report], &[beside(&job.path, "journal")])?;
    if !args.quiet {
        eprintln!(
            "wrote {} and {}",
            beside(&job.path, "report.html").display(),
            beside(&job.path, "retry.csv").display()
        );
    }
    Ok(ExitCode::Ok)
}

fn report_shards(job: &Job, shards: &[merge::ShardFiles], quiet: bool) -> Result<ExitCode> {
    let count = shards[0].shard.count;
    if let Some(other) = shards.iter().find(|s| s.shard.count != count) {
        return Err(Error::Usage(format!(
            "{} and {} split the job differently; remove the reports of the split no longer used",
            shards[0].report.display(),
            other.report.display()
        )));
    }
    let reports: Vec<PathBuf> = shards.iter().map(|s| s.report.clone()).collect();
    let journals: Vec<PathBuf> = shards.iter().map(|s| s.journal.clone()).collect();
    let merged = beside(&job.path, "report.csv");
    merge::merge(&reports, &merged).map_err(|e| crate::outputs::error("report", &merged, &e))?;
    write_outputs(job, None, std::slice::from_ref(&merged), &journals)?;
    let missing: Vec<String> = (0..count)
        .filter(|i| !shards.iter().any(|s| s.shard.index == *i))
        .map(|i| i.to_string())
        .collect();
    if !quiet {
        eprintln!(
            "merged {} of {count} shards into {}, {} and {}",
            shards.len(),
            merged.display(),
            beside(&job.path, "report.html").display(),
            beside(&job.path, "retry.csv").display()
        );
    }
    if !missing.is_empty() {
        eprintln!(
            "mailshot: no report yet for shard {} of {count}",
            missing.join(", ")
        );
        return Ok(ExitCode::TempFail);
    }
    Ok(ExitCode::Ok)
}
