//! Integration tests for the run engine: `mailshot run` driven as a
//! user drives it, against the scripted fault server, a private Postfix and
//! tmux, judged by exit codes, report rows, stderr text and — above all —
//! how many copies of each message the server received.
//!
//! One submodule per concern.

mod helpers;

mod attempts;
mod domains;
mod envelope;
mod exit;
mod explained;
mod faults;
mod files;
mod flow;
mod interrupts;
mod journal;
mod mx;
mod nagle;
mod page;
mod parallel;
mod progress;
mod rate;
mod recipes;
mod rehearsal;
mod relays;
mod report;
mod resume_inputs;
mod retries;
mod retry;
mod return_path;
mod sender_rule;
mod shard;
mod signals;
mod slurm;
mod suppress;
mod threads;
