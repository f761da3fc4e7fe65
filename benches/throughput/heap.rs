//! A counting global allocator for the memory section: while counting is on,
//! it tracks the bytes this process has allocated and not freed, and their
//! peak, so that one structure's cost can be read off as the difference
//! before and after building it. Off (the default), it only forwards to the
//! system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};

/// The harness's allocator.
pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn add(n: isize) {
    if ON.load(Relaxed) {
        let now = LIVE.fetch_add(n, Relaxed) + n;
        PEAK.fetch_max(now, Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What building something cost: bytes still held after, and the peak on the way.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// Allocated by `f` and still held when it returned (what it returned holds).
    pub kept: usize,
    /// The most it held at once while it ran.
    pub peak: usize,
}

/// Runs `f` with counting on; what it returns is dropped after the count.
/// (Counting is process-wide: nothing else should allocate meanwhile.)
pub fn cost<T>(f: impl FnOnce() -> T) -> (Cost, T) {
    LIVE.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    ON.store(true, Relaxed);
    let value = f();
    ON.store(false, Relaxed);
    let kept = LIVE.load(Relaxed).max(0) as usize;
    let peak = PEAK.load(Relaxed).max(0) as usize;
    (Cost { kept, peak }, value)
}
