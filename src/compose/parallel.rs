//! An ordered parallel map over a stream: items are read in chunks on the
//! calling thread, worked on by a few threads, and handed back one by one in
//! the order they were read. Whatever the thread count, the caller sees the
//! same results in the same order; with one thread nothing is spawned.
//!
//! Memory stays bounded however long the stream: at most a few chunks per
//! thread are in flight, and a chunk holds fewer items when the results
//! weigh more (a chunk's results aim at the caller's `chunk_bytes`).

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};

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
    /// Whether the calling thread is one of the `threads` (it works on
    /// chunks between reading them and handing results on), or reads and
    /// hands on only, beside `threads` spawned ones. Working keeps the
    /// machine's cores busy without one more thread than cores; reading
    /// only keeps the results' memory off the calling thread's heap, where
    /// long-lived structures grow.
    pub reader_works: bool,
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
    /// (items already handed to workers may still be worked on, then
    /// dropped).
    ///
    /// With `threads` threads and `reader_works`, `threads − 1` are spawned
    /// and the calling thread is the last: between reading chunks and
    /// handing results to the sink it works on the oldest chunk nobody has
    /// taken. No more threads are busy than were asked for, so on a machine
    /// with as many cores none of them waits for the reading while the
    /// others run. Without `reader_works`, `threads` are spawned.
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
        // Chunks read and not yet taken that the reading keeps ahead of
        // the workers before the calling thread takes one itself.
        let (ahead, spawned) = if self.reader_works {
            (4 * self.threads, self.threads - 1)
        } else {
            (usize::MAX, self.threads)
        };
        let queue = Jobs::new();
        std::thread::scope(|s| {
            // Closes the jobs however this pass ends (done, a sink error, a
            // panic), so that the workers stop.
            let _closing = Closing(&queue);
            let jobs = &queue;
            let (done_tx, done) = mpsc::channel::<Done<O>>();
            for _ in 0..spawned {
                let done_tx = done_tx.clone();
                s.spawn(move || self.worker(jobs, done_tx));
            }
            drop(done_tx);
            let mut state = None;
            let mut results = InOrder::new(self.chunk_bytes);
            let (mut sent, mut emitted, mut read_all) = (0u64, 0u64, false);
            loop {
                while !read_all && sent - emitted < window && jobs.queued() < ahead {
                    let next: Vec<T> = items.by_ref().take(results.chunk).collect();
                    if next.is_empty() {
                        read_all = true;
                        break;
                    }
                    jobs.push(sent, next);
                    sent += 1;
                }
                loop {
                    match done.try_recv() {
                        Ok(Done::Chunk(seq, chunk, bytes)) => results.file(seq, chunk, bytes),
                        Ok(Done::Panicked(p)) => panic::resume_unwind(p),
                        Err(_) => break,
                    }
                }
                let mut emptied = false;
                while let Some(chunk) = results.waiting.remove(&emitted) {
                    emitted += 1;
                    emptied = true;
                    for r in chunk {
                        sink(r)?;
                    }
                }
                if read_all && emitted == sent {
                    return Ok(());
                }
                if emptied {
                    // The window moved: read on before working.
                    continue;
                }
                if let Some((seq, chunk_items)) = self.reader_works.then(|| jobs.take()).flatten() {
                    let state = state.get_or_insert_with(&self.init);
                    let (chunk, bytes) = self.work_on(state, chunk_items);
                    results.file(seq, chunk, bytes);
                    continue;
                }
                match done.recv().expect("workers answer every chunk they take") {
                    Done::Panicked(p) => panic::resume_unwind(p),
                    Done::Chunk(seq, chunk, bytes) => results.file(seq, chunk, bytes),
                }
            }
        })
    }

    /// One chunk's results, in order, and their weight.
    fn work_on<T, S, O>(&self, state: &mut S, chunk: Vec<T>) -> (Vec<O>, usize)
    where
        W: Fn(&mut S, T) -> O,
        G: Fn(&O) -> usize,
    {
        let results: Vec<O> = chunk.into_iter().map(|t| (self.work)(state, t)).collect();
        let bytes = results.iter().map(&self.weigh).sum();
        (results, bytes)
    }

    /// One worker: chunks in, results out, until the jobs close.
    fn worker<T, S, O>(&self, jobs: &Jobs<T>, done: mpsc::Sender<Done<O>>)
    where
        I: Fn() -> S,
        W: Fn(&mut S, T) -> O,
        G: Fn(&O) -> usize,
    {
        let mut state = None;
        while let Some((seq, chunk)) = jobs.wait() {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                let state = state.get_or_insert_with(&self.init);
                self.work_on(state, chunk)
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

/// Chunks worked on, waiting for those before them; and how many items
/// the next chunk read should hold.
struct InOrder<O> {
    /// Results by chunk number.
    waiting: BTreeMap<u64, Vec<O>>,
    /// Items in the next chunk: one until a result tells what an item
    /// weighs, then as many as the heaviest items so far fit the budget.
    chunk: usize,
    /// The most an item has weighed so far.
    heaviest: usize,
    /// What one chunk's results should weigh at most.
    budget: usize,
}

impl<O> InOrder<O> {
    fn new(budget: usize) -> Self {
        InOrder {
            waiting: BTreeMap::new(),
            chunk: 1,
            heaviest: 1,
            budget,
        }
    }

    /// Keep chunk `seq`'s results (weighing `bytes`) until their turn.
    fn file(&mut self, seq: u64, results: Vec<O>, bytes: usize) {
        self.heaviest = self.heaviest.max(bytes / results.len().max(1));
        self.chunk = (self.budget / self.heaviest).clamp(1, MAX_CHUNK);
        self.waiting.insert(seq, results);
    }
}

/// The chunks read and not yet taken, oldest first, shared by the threads.
struct Jobs<T> {
    state: Mutex<Queue<T>>,
    ready: Condvar,
}

struct Queue<T> {
    chunks: VecDeque<(u64, Vec<T>)>,
    closed: bool,
}

impl<T> Jobs<T> {
    fn new() -> Self {
        Jobs {
            state: Mutex::new(Queue {
                chunks: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<T>> {
        // A thread that panicked holding the lock left the queue whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Chunks waiting to be taken.
    fn queued(&self) -> usize {
        self.lock().chunks.len()
    }

    /// Queue chunk `seq`, waking a worker.
    fn push(&self, seq: u64, chunk: Vec<T>) {
        self.lock().chunks.push_back((seq, chunk));
        self.ready.notify_one();
    }

    /// The oldest chunk waiting, if any.
    fn take(&self) -> Option<(u64, Vec<T>)> {
        self.lock().chunks.pop_front()
    }

    /// The oldest chunk, waiting for one; `None` once closed.
    fn wait(&self) -> Option<(u64, Vec<T>)> {
        let mut queue = self.lock();
        loop {
            if queue.closed {
                return None;
            }
            if let Some(job) = queue.chunks.pop_front() {
                return Some(job);
            }
            queue = self.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// No more chunks: the workers stop, and what was left is dropped.
    fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.chunks.clear();
        drop(queue);
        self.ready.notify_all();
    }
}

/// Closes its jobs when dropped.
struct Closing<'a, T>(&'a Jobs<T>);

impl<T> Drop for Closing<'_, T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests;
