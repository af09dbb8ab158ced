//! The zone's slab pool as the store's allocator, with frees held back
//! until the next allocation or the unlock.
//!
//! Holding a free back is what makes a worker dying inside an update
//! harmless at the allocator level: a vector that grows allocates the new
//! buffer, copies, frees the old one and only then stores the new pointer.
//! A process killed between the free and the store would leave the vector
//! pointing at a freed block. Here the old block stays allocated until the
//! next allocation (by then the vector has moved on) or the unlock; if the
//! process dies first, the recovery lets the held blocks leak rather than
//! free something that may still be in use.

use core::alloc::Layout;
use core::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};
use nginx_sys::{ngx_slab_alloc_locked, ngx_slab_free_locked, ngx_slab_pool_t};

use super::faults;

/// Frees held back at once; one more frees the oldest ones first.
pub const HELD_BACK: usize = 16;

/// The frees held back, in the zone's root (outside the store).
pub struct Deferred {
    n: usize,
    blocks: [usize; HELD_BACK],
}

impl Deferred {
    pub const fn new() -> Deferred {
        Deferred {
            n: 0,
            blocks: [0; HELD_BACK],
        }
    }

    /// Forget the held-back blocks without freeing them (their owner died
    /// mid-update: they may still be in use). How many.
    pub fn abandon(&mut self) -> usize {
        core::mem::replace(&mut self.n, 0)
    }
}

/// The zone's pool. It is `Copy` and one pointer wide, since every vector
/// in the store carries it; it calls the `_locked` slab functions because
/// the store is only reachable through the zone's lock. The held-back list
/// is the first field of the zone's root, which `pool->data` points at
/// (null while the zone is being built: frees are then immediate).
#[derive(Clone, Copy)]
pub struct ShmAlloc(NonNull<ngx_slab_pool_t>);

impl ShmAlloc {
    /// # Safety
    /// `pool` is the zone's initialised slab pool, whose `data` is null or
    /// the zone's root (starting with its `Deferred`); it is used only with
    /// the zone's mutex held.
    pub unsafe fn new(pool: NonNull<ngx_slab_pool_t>) -> Self {
        ShmAlloc(pool)
    }

    fn deferred(&self) -> Option<NonNull<Deferred>> {
        // SAFETY: the pool header is mapped (the type's contract).
        NonNull::new(unsafe { (*self.0.as_ptr()).data }.cast::<Deferred>())
    }

    /// Free every held-back block (the store is consistent: at the unlock,
    /// or before an allocation, when the frees' owners have moved on).
    pub fn flush(&self) {
        let Some(d) = self.deferred() else { return };
        // SAFETY: the lock is held (the type's contract), so nobody else
        // touches the list; each block came from this pool and was freed
        // by its owner, once.
        unsafe {
            let d = &mut *d.as_ptr();
            for &b in &d.blocks[..d.n] {
                ngx_slab_free_locked(self.0.as_ptr(), b as *mut _);
            }
            d.n = 0;
        }
    }
}

// SAFETY: ngx_slab_alloc_locked/ngx_slab_free_locked are sound for any size
// while the pool's mutex is held, which the zone's lock guarantees for
// every use of the store (this allocator's only user). Small slab chunks
// are aligned to their power-of-two size and pages to the page size, so
// allocating max(size, align) bytes meets the alignment. A held-back block
// is freed exactly once, later.
unsafe impl Allocator for ShmAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            // A well-aligned dangling pointer, as for any zero-sized allocation.
            let p = NonNull::new(layout.align() as *mut u8).ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(p, 0));
        }
        self.flush();
        let size = layout.size().max(layout.align());
        // SAFETY: see the impl comment.
        let p = unsafe { ngx_slab_alloc_locked(self.0.as_ptr(), size) }.cast::<u8>();
        faults::reached("alloc");
        let p = NonNull::new(p).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        let Some(d) = self.deferred() else {
            // SAFETY: `ptr` came from this pool; the lock is held.
            unsafe { ngx_slab_free_locked(self.0.as_ptr(), ptr.as_ptr().cast()) };
            return;
        };
        // SAFETY: the lock is held, so the list is ours alone.
        let full = unsafe { (*d.as_ptr()).n == HELD_BACK };
        if full {
            self.flush();
        }
        // SAFETY: as above; `n < HELD_BACK` after the flush.
        unsafe {
            let d = &mut *d.as_ptr();
            d.blocks[d.n] = ptr.as_ptr() as usize;
            d.n += 1;
        }
        faults::reached("free");
    }
}
