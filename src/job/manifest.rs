//! Raw serde types of the job file (deny unknown keys).
