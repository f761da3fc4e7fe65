//! The delivery engine: the [`plan`] of where and how to connect, the
//! [`feed`] that renders rows ahead, the [`dispatch`]er that shares them out
//! over parallel sessions (each a [`worker`]), the pure [`settle`] decision
//! per transaction, and the [`ledger`] that records every [`outcome`]
//! exactly once in the durable [`journal`], the [`report`] and the
//! [`progress`] display.

pub mod daily;
pub mod dispatch;
#[cfg(test)]
mod dispatch_tests;
pub mod feed;
pub mod inputs;
pub mod journal;
pub mod learn;
pub mod ledger;
pub mod limiter;
pub mod merge;
pub mod mx;
mod mx_split;
pub mod outcome;
pub mod page;
pub mod plan;
pub mod progress;
pub mod report;
pub mod resume;
pub mod retry;
pub mod rows;
pub mod seal;
pub mod settle;
#[cfg(test)]
mod settle_limits;
pub mod worker;
