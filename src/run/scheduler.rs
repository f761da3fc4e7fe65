//! Run: scheduler.
