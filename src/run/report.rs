//! Run: report.
