//! Running a job: scheduling over sessions, the durable journal, the report
//! and progress display.

pub mod inputs;
pub mod journal;
pub mod limiter;
pub mod progress;
pub mod report;
pub mod scheduler;
pub mod seal;
