//! A global allocator that counts the allocations of the threads that ask to
//! be watched, for the tests that prove a path never touches the heap.
//! Include with `#[path = "common/counting_alloc.rs"] mod counting_alloc;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // const-initialised and without a destructor: safe to touch from the allocator.
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: delegates every call unchanged to `System`; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if WATCHED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if WATCHED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Sets the count to zero.
pub fn reset() {
    ALLOCATIONS.store(0, Ordering::Relaxed);
}

/// Allocations counted since the last [`reset`].
pub fn count() -> usize {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Runs `f` with this thread's allocations counted (adding to the count).
pub fn watched<T>(f: impl FnOnce() -> T) -> T {
    WATCHED.with(|w| w.set(true));
    let r = f();
    WATCHED.with(|w| w.set(false));
    r
}

/// How many allocations `f` made on this thread.
#[allow(dead_code)] // not every including test uses every helper
pub fn allocations_during(f: impl FnOnce()) -> usize {
    reset();
    watched(f);
    count()
}
