//! Run: journal.
