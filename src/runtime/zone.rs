//! The shared-memory zone: its declaration, its creation and reuse across
//! reloads, the slab allocator the store allocates from, and the lock that
//! guards every access to the store.

use core::alloc::Layout;
use core::ffi::c_void;
use core::ptr::NonNull;
use std::hash::{BuildHasher, Hasher};

use allocator_api2::alloc::{AllocError, Allocator};
use nginx_sys::{
    ngx_conf_t, ngx_int_t, ngx_shared_memory_add, ngx_shm_zone_t, ngx_slab_alloc_locked,
    ngx_slab_free_locked, ngx_slab_init, ngx_slab_pool_t, ngx_str_t, NGX_ERROR, NGX_OK,
};
use ngx::core::slab::{LockedSlabPool, SlabPool};
use ngx::ngx_string;
use push_relay::stats::Totals;
use push_relay::zone::Store;

/// The zone's slab pool as the store's allocator. It is `Copy`, so every
/// vector in the store can carry it; it calls the `_locked` slab functions
/// because the store is only reachable through [`Locked`].
#[derive(Clone, Copy)]
pub struct ShmAlloc(NonNull<ngx_slab_pool_t>);

// SAFETY: ngx_slab_alloc_locked/ngx_slab_free_locked are sound for any size
// while the pool's mutex is held, which `Zone::lock` guarantees for every
// use of the store (this allocator's only user). Small slab chunks are
// aligned to their power-of-two size and pages to the page size, so
// allocating max(size, align) bytes meets the alignment.
unsafe impl Allocator for ShmAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            // A well-aligned dangling pointer, as for any zero-sized allocation.
            let p = NonNull::new(layout.align() as *mut u8).ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(p, 0));
        }
        let size = layout.size().max(layout.align());
        // SAFETY: see the impl comment; the pool pointer is the zone's.
        let p = unsafe { ngx_slab_alloc_locked(self.0.as_ptr(), size) }.cast::<u8>();
        let p = NonNull::new(p).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: `ptr` came from `allocate` on this pool, and the lock
            // is held (see the impl comment).
            unsafe { ngx_slab_free_locked(self.0.as_ptr(), ptr.as_ptr().cast()) }
        }
    }
}

/// What the zone's `shpool->data` points at.
pub struct Root {
    magic: u64,
    pub store: Store<ShmAlloc>,
    /// Counters updated without the lock (atomics), beside the store.
    totals: Totals,
}

/// Changes whenever `Root` or anything in it changes shape: a reload that
/// loads a different build must not read the old zone as its own.
const MAGIC: u64 = 0x7075_7368_0000_0003 ^ (core::mem::size_of::<Root>() as u64);

/// The zone of a running worker.
pub struct Zone {
    slab: SlabPool,
    root: NonNull<Root>,
}

/// Holds the zone's mutex (released on drop); the store is reachable only
/// through it.
pub struct Locked<'a> {
    _mutex: LockedSlabPool,
    pub store: &'a mut Store<ShmAlloc>,
}

impl Zone {
    /// # Safety
    /// `shm_zone` is this module's zone, initialised by `init_zone`, in a
    /// worker process (zones stay mapped for the worker's whole life).
    pub unsafe fn of(shm_zone: *mut ngx_shm_zone_t) -> Option<Zone> {
        // SAFETY: the caller's contract.
        let slab = unsafe { SlabPool::from_shm_zone(&*shm_zone)? };
        let pool: *const ngx_slab_pool_t = slab.as_ref();
        // SAFETY: the pool header is mapped; init_zone set `data`.
        let root = NonNull::new(unsafe { (*pool).data }.cast::<Root>())?;
        Some(Zone { slab, root })
    }

    /// Take the zone's mutex. The master force-unlocks it if this worker
    /// dies holding it; code under it must not panic (a panic aborts the
    /// worker, and nothing half-done may be left behind).
    pub fn lock(&self) -> Locked<'_> {
        let mutex = self.slab.lock();
        Locked {
            _mutex: mutex,
            // SAFETY: the mutex is held for the life of `Locked`, so no other
            // process or call touches the store meanwhile; the root stays
            // mapped for the worker's life.
            store: unsafe { &mut (*self.root.as_ptr()).store },
        }
    }

    /// The counters of `push_stats`, for the life of the worker.
    pub fn totals(&self) -> &'static Totals {
        // SAFETY: the zone stays mapped for the process's life, and the
        // totals are atomics, shared by design; `Locked` borrows only the
        // `store` field, never the whole root, so the two never alias.
        unsafe { &(*self.root.as_ptr()).totals }
    }

    /// Bytes of the zone in use (pages taken, headers included), and its
    /// size.
    pub fn bytes(&self) -> (u64, u64) {
        let pool: *const ngx_slab_pool_t = self.slab.as_ref();
        // SAFETY: the pool header is mapped; `pfree` and the page bounds
        // are read under the mutex, where the slab functions write them.
        let _mutex = self.slab.lock();
        unsafe {
            let size = (*pool).end as u64 - pool as u64;
            let free = ((*pool).pfree as u64) << nginx_sys::ngx_pagesize_shift;
            (size.saturating_sub(free), size)
        }
    }
}

static mut ZONE_NAME: ngx_str_t = ngx_string!("ngx_http_push_module");

/// Declare the zone (`push_buffer_size`); nginx maps it before forking.
///
/// # Safety
/// Called from postconfiguration with its `cf`.
pub unsafe fn declare(cf: *mut ngx_conf_t, size: usize) -> Option<*mut ngx_shm_zone_t> {
    // SAFETY: nginx keeps the name pointer, which is static, and copies
    // nothing else; the tag is our module descriptor.
    let z = unsafe {
        ngx_shared_memory_add(
            cf,
            &raw mut ZONE_NAME,
            size,
            crate::slots::descriptor_ptr().cast::<c_void>(),
        )
    };
    if z.is_null() {
        return None;
    }
    // SAFETY: a zone nginx just made for us.
    unsafe { (*z).init = Some(init_zone) };
    Some(z)
}

/// Build the store in a new zone, or adopt the one the previous cycle left
/// (a reload with the same `push_buffer_size`): messages survive reloads.
unsafe extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, old: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx passes our zone, mapped, with shm.addr the slab pool
    // that ngx_init_zone_pool already initialised (or kept, on reuse); `old`
    // is null or the data our previous cycle set.
    unsafe {
        let pool = (*shm_zone).shm.addr.cast::<ngx_slab_pool_t>();
        if !old.is_null() && (*old.cast::<Root>()).magic == MAGIC {
            (*shm_zone).data = old;
            return NGX_OK as ngx_int_t;
        }
        if !(*pool).data.is_null() {
            let root = (*pool).data.cast::<Root>();
            if (*root).magic == MAGIC {
                (*shm_zone).data = root.cast();
                return NGX_OK as ngx_int_t;
            }
            // Another build's layout: start over in the same memory.
            ngx_slab_init(pool);
        }
        // The module logs its own "zone full" line, once, in its own words.
        (*pool).set_log_nomem(0);
        let Some(root) = new_root(shm_zone, pool) else {
            return NGX_ERROR as ngx_int_t;
        };
        (*pool).data = root.as_ptr().cast();
        (*shm_zone).data = root.as_ptr().cast();
    }
    NGX_OK as ngx_int_t
}

/// A fresh store in the zone's pool, under its mutex.
///
/// # Safety
/// `pool` is the initialised slab pool of `shm_zone`, in the master at
/// configuration time.
unsafe fn new_root(
    shm_zone: *mut ngx_shm_zone_t,
    pool: *mut ngx_slab_pool_t,
) -> Option<NonNull<Root>> {
    // SAFETY: the caller's contract.
    let slab = unsafe { SlabPool::from_shm_zone(&*shm_zone)? };
    let _mutex = slab.lock();
    // SAFETY: non-null, and used only while the mutex above is held.
    let alloc = ShmAlloc(unsafe { NonNull::new_unchecked(pool) });
    // Seed the id hash from the OS's randomness via std's RandomState.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(1);
    let k0 = h.finish();
    h.write_u64(2);
    let k1 = h.finish();
    let store = Store::new(alloc, [k0, k1]).ok()?;
    ngx::allocator::allocate(
        Root {
            magic: MAGIC,
            store,
            totals: Totals::default(),
        },
        &alloc,
    )
    .ok()
}
