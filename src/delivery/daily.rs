//! Daily limits across runs: how many messages each relay accepted on the
//! current local day, kept in a small JSON file beside the journal
//! (`JOB.relays.json`: `{"date": "2026-12-07", "accepted": {"relay": 120}}`),
//! replaced atomically (written to a temporary file with mode 0600, synced,
//! then renamed). The day is the local calendar day, as the providers whose
//! quotas reset at midnight count it; a file from another day counts nothing.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The local calendar day now (`YYYY-MM-DD`) and how long until it ends.
pub fn today() -> (String, Duration) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let now = secs as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which lives on this stack.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&now, &mut tm).is_null() };
    if !ok {
        // No local time: the UTC day.
        let left = 86_400 - secs % 86_400;
        return ((civil((secs / 86_400) as i64)), Duration::from_secs(left));
    }
    let date = format!(
        "{:04}-{:02}-{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday
    );
    let into = (tm.tm_hour as u64) * 3600 + (tm.tm_min as u64) * 60 + tm.tm_sec as u64;
    (
        date,
        Duration::from_secs(86_400u64.saturating_sub(into).max(1)),
    )
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (UTC fallback).
fn civil(days: i64) -> String {
    // Howard Hinnant's days_from_civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The counts of one day, as the state file holds them.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Counts {
    date: String,
    accepted: BTreeMap<String, u64>,
}

/// The accepted messages per relay today, backed by the state file (none:
/// counted in memory for this run only).
#[derive(Debug)]
pub struct DailyCounts {
    path: Option<PathBuf>,
    counts: Counts,
}

impl DailyCounts {
    /// Today's counts from `path` (a missing or unreadable file, or one
    /// from another day, counts nothing).
    pub fn load(path: Option<&Path>) -> Self {
        let (date, _) = today();
        let counts = path
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<Counts>(&b).ok())
            .filter(|c| c.date == date)
            .unwrap_or(Counts {
                date,
                accepted: BTreeMap::new(),
            });
        DailyCounts {
            path: path.map(Path::to_path_buf),
            counts,
        }
    }

    /// Messages `relay` accepted today.
    pub fn get(&self, relay: &str) -> u64 {
        let (date, _) = today();
        if date != self.counts.date {
            return 0;
        }
        self.counts.accepted.get(relay).copied().unwrap_or(0)
    }

    /// `relay` accepted `n` more messages; the file is replaced at once.
    pub fn add(&mut self, relay: &str, n: u64) -> io::Result<()> {
        let (date, _) = today();
        if date != self.counts.date {
            self.counts = Counts {
                date,
                accepted: BTreeMap::new(),
            };
        }
        *self.counts.accepted.entry(relay.to_owned()).or_default() += n;
        match &self.path {
            Some(p) => write_atomically(p, &serde_json::to_vec_pretty(&self.counts)?),
            None => Ok(()),
        }
    }
}

/// Replace `path` with `bytes`: a temporary file beside it (mode 0600),
/// synced, then renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_the_calendar() {
        assert_eq!(civil(0), "1970-01-01");
        assert_eq!(civil(20_429), "2025-12-07");
        assert_eq!(civil(11_016), "2000-02-29");
    }

    #[test]
    fn counts_survive_a_reload_on_the_same_day_and_the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.relays.json");
        let mut c = DailyCounts::load(Some(&path));
        c.add("a", 3).unwrap();
        c.add("a", 2).unwrap();
        let again = DailyCounts::load(Some(&path));
        assert_eq!(again.get("a"), 5);
        assert_eq!(again.get("b"), 0);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_from_another_day_counts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.relays.json");
        std::fs::write(&path, r#"{"date":"2001-01-01","accepted":{"a":99}}"#).unwrap();
        assert_eq!(DailyCounts::load(Some(&path)).get("a"), 0);
    }
}
