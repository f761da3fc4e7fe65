//! The machine-readable results file: one record per figure the harness
//! prints, each next to the figure it is compared with (a contender measured
//! in the same run, or the goal) and the ratio of the two.

use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

/// One figure and what it is compared with.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// The part of the run: `loopback`, `rtt`, `parallel`, `render`, `rss`.
    pub section: &'static str,
    /// What was measured, in words.
    pub what: String,
    /// The server, when there is one.
    pub server: Option<String>,
    /// Added round-trip time in milliseconds (0 on loopback).
    pub rtt_ms: u64,
    /// Sessions of both sides of the comparison.
    pub sessions: usize,
    /// The unit of both figures (`msg/s`, `msg/cpu-s`, `MB`).
    pub unit: &'static str,
    /// mailshot's figure.
    pub figure: f64,
    /// What the figure is compared with.
    pub contender: String,
    /// The contender's figure (or the goal's).
    pub contender_figure: f64,
    /// `figure / contender_figure`.
    pub ratio: f64,
    /// Round trips per message, derived from the slowdown over loopback
    /// (rows with added latency only): mailshot's, then the contender's.
    pub round_trips: Option<(f64, f64)>,
}

impl Record {
    /// A record comparing `figure` with `contender_figure`.
    pub fn new(
        section: &'static str,
        what: impl Into<String>,
        unit: &'static str,
        figure: f64,
        contender: impl Into<String>,
        contender_figure: f64,
    ) -> Record {
        Record {
            section,
            what: what.into(),
            server: None,
            rtt_ms: 0,
            sessions: 1,
            unit,
            figure,
            contender: contender.into(),
            contender_figure,
            ratio: figure / contender_figure,
            round_trips: None,
        }
    }
}

/// Writes `records` to `path` as a JSON array (the folder is made).
pub fn write(path: &Path, records: &[Record]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, serde_json::to_string_pretty(records)? + "\n")
}

/// Reads `path` back and says what is wrong with it, if anything: every
/// record needs a positive figure, a named contender with a positive figure,
/// and the ratio of the two.
pub fn check(path: &Path, want: usize) -> Result<(), String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let list = value.as_array().ok_or("not a JSON array")?;
    if list.len() != want {
        return Err(format!("{} records, expected {want}", list.len()));
    }
    for r in list {
        let num = |k: &str| r.get(k).and_then(serde_json::Value::as_f64);
        let (Some(f), Some(c), Some(ratio)) =
            (num("figure"), num("contender_figure"), num("ratio"))
        else {
            return Err(format!("a record lacks a figure: {r}"));
        };
        let named = r
            .get("contender")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if !(f > 0.0 && c > 0.0 && named && (ratio - f / c).abs() <= 1e-9 * ratio.abs()) {
            return Err(format!("a record is incomplete: {r}"));
        }
    }
    Ok(())
}
