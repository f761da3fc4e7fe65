//! An ordered parallel map over a stream: items are read in chunks on the
//! calling thread, worked on by a few threads, and handed back one by one in
//! the order they were read. Whatever the thread count, the caller sees the
//! same results in the same order; with one thread nothing is spawned.
//!
//! Memory stays bounded however long the stream: at most a few chunks per
//! thread are in flight, and a chunk holds fewer items when the results
//! weigh more (a chunk's results aim at the caller's `chunk_bytes`).

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Mutex;

/// Most items in one chunk.
const MAX_CHUNK: usize = 128;

/// What one chunk's results should weigh at most by default, in bytes (by
/// the caller's `weigh`); a chunk has at least one item.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Chunks read but not yet through the sink, at most, for `threads`
/// threads. Results leave in order, so chunks done behind a slower one wait
/// in this window: with only a couple a thread, the reader stopped for them
/// and a worker soon had nothing to do (a core idled an eighth of a
/// 1,000,000-row check).
pub fn window(threads: usize) -> u64 {
    8 * threads as u64 + 1
}

/// Every core this process may use (`available_parallelism`: CPU affinity
/// and cgroup quotas included), or one when that cannot be told.
pub fn available_threads() -> usize {
    std::thread::available_parallelism()
        .map(NonZeroUsize::get)
        .unwrap_or(1)
}

/// How to spread one pass over threads.
pub struct Work<I, W, G> {
    /// Threads doing the work (1: all of it on the calling thread).
    pub threads: usize,
    /// Makes one thread's state (e.g. its renderer), on that thread.
    pub init: I,
    /// The work on one item, with the thread's state.
    pub work: W,
    /// Roughly how many bytes a result holds while it waits for the sink.
    pub weigh: G,
    /// What one chunk's results should weigh at most (e.g. [`CHUNK_BYTES`]).
    pub chunk_bytes: usize,
}

/// What a worker hands back for one chunk.
enum Done<O> {
    /// The chunk's results, in order, and their weight.
    Chunk(u64, Vec<O>, usize),
    /// The work panicked; the panic is raised again on the calling thread.
    Panicked(Box<dyn std::any::Any + Send>),
}

impl<I, W, G> Work<I, W, G> {
    /// Feed every item of `items` through the work, and every result, in
    /// the order of `items`, to `sink`; stops at the first error of `sink`
    /// (items already handed to workers are still worked on, then dropped).
    pub fn run<T, S, O, E>(
        &self,
        items: impl Iterator<Item = T>,
        mut sink: impl FnMut(O) -> Result<(), E>,
    ) -> Result<(), E>
    where
        T: Send,
        O: Send,
        I: Fn() -> S + Sync,
        W: Fn(&mut S, T) -> O + Sync,
        G: Fn(&O) -> usize + Sync,
    {
        if self.threads <= 1 {
            let mut state = (self.init)();
            for item in items {
                sink((self.work)(&mut state, item))?;
            }
            return Ok(());
        }
        let mut items = items.fuse();
        let window = window(self.threads);
        let (jobs, job_rx) = mpsc::channel::<(u64, Vec<T>)>();
        let job_rx = Mutex::new(job_rx);
        std::thread::scope(|s| {
            // Owned here: when this pass ends, early or not, the workers
            // see the jobs end and stop.
            let jobs = jobs;
            let (done_tx, done) = mpsc::channel::<Done<O>>();
            for _ in 0..self.threads {
                let (job_rx, done_tx) = (&job_rx, done_tx.clone());
                s.spawn(move || self.worker(job_rx, done_tx));
            }
            drop(done_tx);
            // One item a chunk until a result tells what an item weighs;
            // then as many as the heaviest items so far fit the budget.
            let (mut sent, mut emitted, mut chunk, mut heaviest) = (0u64, 0u64, 1, 1);
            let mut waiting: BTreeMap<u64, Vec<O>> = BTreeMap::new();
            loop {
                while sent - emitted < window {
                    let next: Vec<T> = items.by_ref().take(chunk).collect();
                    if next.is_empty() {
                        break;
                    }
                    jobs.send((sent, next)).expect("workers outlive the jobs");
                    sent += 1;
                }
                if emitted == sent {
                    return Ok(());
                }
                match done.recv().expect("workers answer every chunk") {
                    Done::Panicked(p) => panic::resume_unwind(p),
                    Done::Chunk(seq, results, bytes) => {
                        heaviest = heaviest.max(bytes / results.len().max(1));
                        chunk = (self.chunk_bytes / heaviest).clamp(1, MAX_CHUNK);
                        waiting.insert(seq, results);
                    }
                }
                while let Some(results) = waiting.remove(&emitted) {
                    emitted += 1;
                    for r in results {
                        sink(r)?;
                    }
                }
            }
        })
    }

    /// One worker: chunks in, results out, until the jobs end.
    fn worker<T, S, O>(
        &self,
        jobs: &Mutex<mpsc::Receiver<(u64, Vec<T>)>>,
        done: mpsc::Sender<Done<O>>,
    ) where
        I: Fn() -> S,
        W: Fn(&mut S, T) -> O,
        G: Fn(&O) -> usize,
    {
        let mut state = None;
        loop {
            let job = jobs.lock().map(|rx| rx.recv());
            let Ok(Ok((seq, chunk))) = job else { return };
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                let state = state.get_or_insert_with(&self.init);
                let results: Vec<O> = chunk.into_iter().map(|t| (self.work)(state, t)).collect();
                let bytes = results.iter().map(&self.weigh).sum();
                (results, bytes)
            }));
            let message = match outcome {
                Ok((results, bytes)) => Done::Chunk(seq, results, bytes),
                Err(p) => Done::Panicked(p),
            };
            let panicked = matches!(message, Done::Panicked(_));
            if done.send(message).is_err() || panicked {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
