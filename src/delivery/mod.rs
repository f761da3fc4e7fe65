//! The delivery engine: rendered messages shared out over parallel SMTP
//! sessions, every outcome settled exactly once into the durable journal, the
//! report and the progress display.

pub mod inputs;
pub mod journal;
pub mod limiter;
pub mod outcome;
pub mod progress;
pub mod report;
pub mod scheduler;
pub mod seal;
