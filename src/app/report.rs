//! `mailshot report JOB`: rebuild `JOB.report.html` and `JOB.retry.csv` from
//! the job's report and journal, sending nothing. [`write_outputs`] is also
//! how `mailshot run` writes them at the end of every run.

use std::path::{Path, PathBuf};

use crate::cli::ReportArgs;
use crate::delivery::page::{self, Sources};
use crate::delivery::retry;
use crate::error::{Error, ExitCode, Result};
use crate::job::Job;
use crate::outputs::beside;

/// The page and the retry file for `job`, from these reports and journals.
pub fn write_outputs(job: &Job, reports: &[PathBuf], journals: &[PathBuf]) -> Result<()> {
    let retry_path = beside(&job.path, "retry.csv");
    let mut open = std::collections::HashSet::new();
    for report in reports {
        let rows =
            retry::open_rows(report).map_err(|e| crate::outputs::error("report", report, &e))?;
        open.extend(rows);
    }
    retry::write(&job.recipients, &open, &retry_path)
        .map_err(|e| crate::outputs::error("retry file", &retry_path, &e))?;

    let html_path = beside(&job.path, "report.html");
    let sources = Sources {
        reports: reports.to_vec(),
        journals: journals.to_vec(),
        bounces: Some(beside(&job.path, "bounces.csv")),
    };
    page::write(&title(&job.path), &sources, &html_path)
        .map_err(|e| crate::outputs::error("HTML report", &html_path, &e))?;
    Ok(())
}

/// The job's name as the page shows it (its file name).
fn title(job: &Path) -> String {
    job.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `mailshot report JOB`.
pub fn report(args: &ReportArgs) -> Result<ExitCode> {
    let vars = crate::job::parse_vars(&args.job.vars)?;
    let job = crate::job::load(&args.job.job, &vars)?;
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
    write_outputs(&job, &[report], &[beside(&job.path, "journal")])?;
    if !args.quiet {
        eprintln!(
            "wrote {} and {}",
            beside(&job.path, "report.html").display(),
            beside(&job.path, "retry.csv").display()
        );
    }
    Ok(ExitCode::Ok)
}
