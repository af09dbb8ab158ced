//! Test support: an allocator with a budget, to play a zone that fills up.

use allocator_api2::alloc::{AllocError, Allocator, Global};
use core::alloc::Layout;
use core::cell::Cell;
use core::ptr::NonNull;
use std::rc::Rc;

/// The heap with a budget of bytes; running over it fails the allocation.
#[derive(Clone, Debug)]
pub struct Limited(pub Rc<Cell<usize>>);

impl Limited {
    pub fn new(budget: usize) -> Limited {
        Limited(Rc::new(Cell::new(budget)))
    }
}

// SAFETY: every block comes from (and returns to) the global allocator; the
// budget is only bookkeeping.
unsafe impl Allocator for Limited {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let left = self.0.get();
        if layout.size() > left {
            return Err(AllocError);
        }
        self.0.set(left - layout.size());
        Global.allocate(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        self.0.set(self.0.get() + layout.size());
        // SAFETY: allocated by `allocate` above, from Global.
        unsafe { Global.deallocate(ptr, layout) }
    }
}
