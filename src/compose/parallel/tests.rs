use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::{Work, CHUNK_BYTES, MAX_CHUNK};

/// Runs `items` through `f` on `threads` threads, each result weighing
/// `weight`, and collects what the sink saw.
fn collect(
    threads: usize,
    items: &[u32],
    weight: usize,
    f: impl Fn(u32) -> u64 + Sync,
) -> Vec<u64> {
    let mut seen = Vec::new();
    let work = Work {
        threads,
        init: || (),
        work: |_: &mut (), x: u32| f(x),
        weigh: |_: &u64| weight,
        chunk_bytes: CHUNK_BYTES,
        reader_works: true,
    };
    work.run(items.iter().copied(), |r| {
        seen.push(r);
        Ok::<_, ()>(())
    })
    .unwrap();
    seen
}

/// Work that takes longer for some items than others, so chunks finish out of order.
fn uneven(x: u32) -> u64 {
    if x % 7 == 3 {
        std::thread::sleep(Duration::from_micros(200));
    }
    u64::from(x) * 3 + 1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn results_come_back_in_the_order_of_the_items_whatever_the_thread_count(
        items in proptest::collection::vec(any::<u32>(), 0..600),
        threads in 1usize..6,
        weight in prop_oneof![Just(0usize), Just(100), Just(CHUNK_BYTES), Just(usize::MAX / 1024)],
    ) {
        let expected: Vec<u64> = items.iter().map(|&x| uneven(x)).collect();
        prop_assert_eq!(collect(threads, &items, weight, uneven), expected);
    }
}

#[test]
fn two_threads_work_at_the_same_time() {
    // Each item waits (at most 5 s) for another item to be worked on at the
    // same time; one after the other, none would ever see a peer.
    let running = Mutex::new(0usize);
    let changed = Condvar::new();
    let met = AtomicUsize::new(0);
    let work = |_: u32| {
        let mut n = running.lock().unwrap();
        *n += 1;
        changed.notify_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        while *n < 2 && Instant::now() < deadline {
            n = changed
                .wait_timeout(n, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        if *n >= 2 {
            met.fetch_add(1, Ordering::SeqCst);
        }
        let seen = *n;
        drop(n);
        // Stay counted a little, so the peer sees this one too.
        std::thread::sleep(Duration::from_millis(20));
        *running.lock().unwrap() -= 1;
        changed.notify_all();
        seen as u64
    };
    collect(2, &[1, 2], 0, work);
    assert_eq!(met.load(Ordering::SeqCst), 2, "both items ran at once");
}

#[test]
fn one_thread_works_on_the_calling_thread() {
    let me = std::thread::current().id();
    let here = AtomicUsize::new(0);
    collect(1, &[1, 2, 3], 0, |x| {
        if std::thread::current().id() == me {
            here.fetch_add(1, Ordering::SeqCst);
        }
        u64::from(x)
    });
    assert_eq!(here.load(Ordering::SeqCst), 3);
}

/// The most items read and not yet through the sink, over a long stream.
fn most_in_flight(threads: usize, weight: usize) -> usize {
    let read = AtomicUsize::new(0);
    let mut sunk = 0usize;
    let mut most = 0usize;
    let items = (0..200_000u32).inspect(|_| {
        read.fetch_add(1, Ordering::SeqCst);
    });
    let work = Work {
        threads,
        init: || (),
        work: |_: &mut (), x: u32| x,
        weigh: |_: &u32| weight,
        chunk_bytes: CHUNK_BYTES,
        reader_works: true,
    };
    work.run(items, |_| {
        sunk += 1;
        most = most.max(read.load(Ordering::SeqCst) - sunk + 1);
        Ok::<_, ()>(())
    })
    .unwrap();
    assert_eq!(sunk, 200_000);
    most
}

#[test]
fn items_in_flight_stay_bounded_by_count_and_by_weight() {
    let window = super::window(3) as usize;
    let light = most_in_flight(3, 0);
    assert!(light <= window * MAX_CHUNK, "{light} light items in flight");
    // Results as heavy as a whole chunk travel one a chunk.
    let heavy = most_in_flight(3, CHUNK_BYTES);
    assert!(heavy <= window, "{heavy} heavy items in flight");
}

#[test]
fn the_first_sink_error_ends_the_pass() {
    let mut seen = 0;
    let work = Work {
        threads: 3,
        init: || (),
        work: |_: &mut (), x: u32| x,
        weigh: |_: &u32| 0,
        chunk_bytes: CHUNK_BYTES,
        reader_works: true,
    };
    let out = work.run(0..100_000u32, |x| {
        seen += 1;
        if x == 500 {
            Err(x)
        } else {
            Ok(())
        }
    });
    assert_eq!(out, Err(500));
    assert_eq!(seen, 501, "nothing reaches the sink after the error");
}

#[test]
#[should_panic(expected = "row 57 broke")]
fn a_panic_in_the_work_reaches_the_caller() {
    collect(2, &(0..1000).collect::<Vec<_>>(), 0, |x| {
        assert!(x != 57, "row {x} broke");
        u64::from(x)
    });
}

#[test]
fn no_more_threads_work_than_asked_and_the_calling_thread_is_one() {
    // Slow items: with only the spawned threads working, the calling
    // thread would read and wait; here it takes its share.
    let me = std::thread::current().id();
    let ids = Mutex::new(std::collections::HashSet::new());
    collect(2, &(0..400).collect::<Vec<_>>(), 0, |x| {
        ids.lock().unwrap().insert(std::thread::current().id());
        std::thread::sleep(Duration::from_micros(200));
        u64::from(x)
    });
    let ids = ids.into_inner().unwrap();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&me), "the calling thread worked too");
}
