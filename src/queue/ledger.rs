//! The ledger behind delivering one queue entry: the markers go to disk
//! before the session may send (see the module above), and every recipient
//! settled for good leaves the entry's state before the rest is retried.

use std::io;
use std::sync::Mutex;

use super::{Meta, Queue};
use crate::delivery::ledger::{Ledger, Settled};
use crate::delivery::outcome::Outcome;

/// What became of an entry's recipients during one delivery.
#[derive(Debug, Default)]
pub struct State {
    /// The entry's state, recipients not yet settled in `meta.rcpts`.
    pub meta: Option<Meta>,
    /// Recipients refused for good, with the reply.
    pub refused: Vec<(String, String)>,
    /// The message's final outcome in this delivery, if it has one.
    pub outcome: Option<Outcome>,
}

/// Records one entry's delivery in its queue.
pub struct EntryLedger<'a> {
    queue: &'a Queue,
    id: &'a str,
    /// Where things stand.
    pub state: Mutex<State>,
}

impl<'a> EntryLedger<'a> {
    /// The ledger for entry `id`, whose state is `meta`.
    pub fn new(queue: &'a Queue, id: &'a str, meta: Meta) -> Self {
        EntryLedger {
            queue,
            id,
            state: Mutex::new(State {
                meta: Some(meta),
                ..Default::default()
            }),
        }
    }
}

impl Ledger for EntryLedger<'_> {
    fn inflight(&self, _batch: &[(u64, &str, u32)]) -> io::Result<()> {
        self.queue.mark(self.id, "inflight")
    }

    fn committing(&self, _rows: &[u64]) -> io::Result<()> {
        self.queue.mark(self.id, "committing")
    }

    fn settled(&self, batch: &[Outcome]) -> io::Result<()> {
        if let Some(o) = batch.last() {
            self.state.lock().unwrap().outcome = Some(o.clone());
        }
        Ok(())
    }

    fn settled_rcpts(&self, batch: &[Settled]) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        let mut changed = false;
        for s in batch {
            for (rcpt, reply) in &s.rcpts {
                if let Some(meta) = state.meta.as_mut() {
                    let before = meta.rcpts.len();
                    meta.rcpts.retain(|r| !r.eq_ignore_ascii_case(rcpt));
                    changed |= meta.rcpts.len() != before;
                }
                if reply.is_permanent() {
                    state
                        .refused
                        .push((rcpt.clone(), format!("{} {}", reply.code, reply.text())));
                }
            }
            if let Some(o) = &s.outcome {
                state.outcome = Some(o.clone());
            }
        }
        if changed {
            if let Some(meta) = &state.meta {
                // Durable before the rest of the entry can be sent again.
                self.queue.write_meta(self.id, meta)?;
            }
        }
        Ok(())
    }
}
