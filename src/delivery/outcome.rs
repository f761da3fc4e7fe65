//! What finally happened to one recipient: the [`Outcome`] and its
//! [`Status`], the currency the dispatcher settles and the journal, the
//! report and the progress display record. Reply texts are kept on one line
//! ([`one_line`]) so multi-line SMTP replies (RFC 5321 4.2.1) fit a CSV cell
//! and a journal line.

use std::fmt;

/// What finally happened to one recipient.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The server accepted the message (2xx after the data).
    Sent,
    /// Permanently refused (5xx); never retried.
    Rejected,
    /// Transient failures until the attempts ran out; a rerun retries it.
    Failed,
    /// The connection was lost after the data was sent and before the reply:
    /// it may or may not have been delivered, so it is not resent unless asked.
    Uncertain,
    /// Not sent on purpose (a duplicate address, or a row that failed validation).
    Skipped,
    /// Not sent because the address is in a suppression file; never
    /// journaled, so every run asks the suppression list again.
    Suppressed,
}

impl Status {
    /// Every status, in report/summary order.
    pub const ALL: [Status; 6] = [
        Status::Sent,
        Status::Rejected,
        Status::Failed,
        Status::Uncertain,
        Status::Skipped,
        Status::Suppressed,
    ];

    /// The word used in the report, the journal and JSON events.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
            Status::Uncertain => "uncertain",
            Status::Skipped => "skipped",
            Status::Suppressed => "suppressed",
        }
    }

    /// Whether a rerun leaves this row alone (sent, rejected and skipped are
    /// settled; failed is retried; uncertain waits for `--resend-uncertain`).
    pub fn is_final(self) -> bool {
        matches!(self, Status::Sent | Status::Rejected | Status::Skipped)
    }

    /// The status's place in [`Status::ALL`] (the report's index stores it).
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The status at `i` in [`Status::ALL`].
    pub(crate) fn from_index(i: u8) -> Option<Status> {
        Status::ALL.get(usize::from(i)).copied()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recipient's outcome, as recorded in the journal, the report and JSON events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// 1-based CSV data row.
    pub row: u64,
    /// The row's email column value.
    pub email: String,
    /// What happened.
    pub status: Status,
    /// The SMTP reply code of the deciding reply, if there was one.
    pub code: Option<u16>,
    /// The RFC 3463 enhanced status code (e.g. `5.1.1`), if the server sent one.
    pub enhanced: Option<String>,
    /// The server's reply text (or our reason), on one line.
    pub reply: String,
    /// The Message-ID sent, with angle brackets, if a message was built.
    pub message_id: Option<String>,
    /// How many times the message was handed to a server.
    pub attempts: u32,
    /// The relay that gave the deciding reply (a run over `smtp.relays`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

/// `text` on one line: every run of CR, LF and other control characters
/// becomes one space, so multi-line SMTP replies fit a CSV cell and a journal
/// line, and a reply cannot forge a line of its own.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_gap = false;
    for c in text.chars() {
        if c.is_control() {
            in_gap = true;
        } else {
            if in_gap && !out.is_empty() {
                out.push(' ');
            }
            in_gap = false;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_collapses_control_runs() {
        assert_eq!(one_line("a\r\n\r\nb\tc"), "a b c");
        assert_eq!(one_line("\r\nx\n"), "x");
    }

    #[test]
    fn status_words_round_trip_through_serde() {
        for s in Status::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
        }
    }
}
