//! Run: progress.
