//! The shared-memory zone: its creation, its reuse across reloads, the slab
//! allocator the store allocates from, and the lock around every access.

use core::alloc::Layout;
use core::ffi::c_void;
use core::ptr::NonNull;
use std::hash::{BuildHasher, Hasher};

use allocator_api2::alloc::{AllocError, Allocator};
use nginx_sys::*;
use ngx::ngx_string;

use crate::store::Store;

/// The slab pool of the zone, used only while its mutex is held.
#[derive(Clone, Copy)]
pub struct ShmAlloc(NonNull<ngx_slab_pool_t>);

// SAFETY: ngx_slab_alloc_locked/ngx_slab_free_locked are sound to call for
// any size while the pool's mutex is held, which `Zone::lock` guarantees for
// every use of the store (the only holder of this allocator). Small slab
// chunks are aligned to their power-of-two size and pages to the page size,
// so allocating max(size, align) bytes meets the alignment.
unsafe impl Allocator for ShmAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            // A well-aligned dangling pointer, as for any zero-sized allocation.
            let p = NonNull::new(layout.align() as *mut u8).ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(p, 0));
        }
        let size = layout.size().max(layout.align());
        // SAFETY: see the impl comment; the pool pointer is the zone's.
        let p = unsafe { ngx_slab_alloc_locked(self.0.as_ptr(), size) } as *mut u8;
        let p = NonNull::new(p).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: `ptr` came from `allocate` on this pool.
            ngx_slab_free_locked(self.0.as_ptr(), ptr.as_ptr() as *mut c_void);
        }
    }
}

/// What the zone's `shpool->data` points at.
pub struct Root {
    magic: u64,
    pub store: Store<ShmAlloc>,
}

/// Changes whenever `Root` or anything in it changes shape: a reload that
/// loads a different build must not read the old zone as its own.
const MAGIC: u64 = 0x7075_7368_0000_0001 ^ (core::mem::size_of::<Root>() as u64);

/// The zone of a running worker.
#[derive(Clone, Copy)]
pub struct Zone {
    pool: NonNull<ngx_slab_pool_t>,
    root: NonNull<Root>,
}

/// Holds the zone's mutex; the store is reachable only through it.
pub struct Locked<'a> {
    pool: NonNull<ngx_slab_pool_t>,
    pub store: &'a mut Store<ShmAlloc>,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: locked in `Zone::lock`, by this process.
        unsafe { ngx_shmtx_unlock(&raw mut (*self.pool.as_ptr()).mutex) }
    }
}

impl Zone {
    /// # Safety
    /// `shm_zone` is this module's zone, initialised by `init_zone`, in a
    /// worker process (zones stay mapped for the worker's whole life).
    pub unsafe fn from_shm_zone(shm_zone: *mut ngx_shm_zone_t) -> Option<Zone> {
        let pool = NonNull::new((*shm_zone).shm.addr as *mut ngx_slab_pool_t)?;
        let root = NonNull::new((*pool.as_ptr()).data as *mut Root)?;
        Some(Zone { pool, root })
    }

    /// Take the zone's mutex. The master force-unlocks it if this worker
    /// dies holding it; code under it must not panic (a panic aborts the
    /// worker, and nothing half-done may be left behind).
    pub fn lock(&self) -> Locked<'_> {
        // SAFETY: the zone is mapped for the worker's lifetime; the mutex is
        // nginx's own shmtx, initialised by ngx_slab_init.
        unsafe {
            ngx_shmtx_lock(&raw mut (*self.pool.as_ptr()).mutex);
            Locked {
                pool: self.pool,
                store: &mut (*self.root.as_ptr()).store,
            }
        }
    }
}

static mut ZONE_NAME: ngx_str_t = ngx_string!("ngx_http_push_module");

/// Declare the zone (`push_buffer_size`); nginx maps it before forking.
///
/// # Safety
/// Called from postconfiguration with its `cf`.
pub unsafe fn add_zone(cf: *mut ngx_conf_t, size: usize) -> Option<*mut ngx_shm_zone_t> {
    // SAFETY: ZONE_NAME is only read by nginx (it copies nothing but the
    // pointer, which is static).
    let z = ngx_shared_memory_add(
        cf,
        &raw mut ZONE_NAME,
        size,
        crate::module_ptr() as *mut c_void,
    );
    if z.is_null() {
        return None;
    }
    (*z).init = Some(init_zone);
    Some(z)
}

/// Build the store in a new zone, or adopt the one the previous cycle left
/// (a reload with the same `push_buffer_size`): messages survive reloads.
unsafe extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, old: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx passes our zone, mapped, with shm.addr the slab pool
    // that ngx_init_zone_pool already initialised (or kept, on reuse).
    let pool = (*shm_zone).shm.addr as *mut ngx_slab_pool_t;
    if !old.is_null() {
        let root = old as *mut Root;
        if (*root).magic == MAGIC {
            (*shm_zone).data = old;
            return NGX_OK as ngx_int_t;
        }
    }
    if !(*pool).data.is_null() {
        let root = (*pool).data as *mut Root;
        if (*root).magic == MAGIC {
            (*shm_zone).data = root as *mut c_void;
            return NGX_OK as ngx_int_t;
        }
        // Another build's layout: start over in the same memory.
        ngx_slab_init(pool);
    }
    // The module logs its own "zone full" line, once, in the right words.
    (*pool).set_log_nomem(0);
    let alloc = ShmAlloc(NonNull::new_unchecked(pool));
    // Seed the id hash from the OS's randomness via std's RandomState.
    let rs = std::collections::hash_map::RandomState::new();
    let mut h = rs.build_hasher();
    h.write_u64(1);
    let k0 = h.finish();
    h.write_u64(2);
    let k1 = h.finish();
    ngx_shmtx_lock(&raw mut (*pool).mutex);
    let root = Store::new(alloc, [k0, k1]).ok().and_then(|store| {
        ngx::allocator::allocate(
            Root {
                magic: MAGIC,
                store,
            },
            &alloc,
        )
        .ok()
    });
    ngx_shmtx_unlock(&raw mut (*pool).mutex);
    let Some(root) = root else {
        return NGX_ERROR as ngx_int_t;
    };
    (*pool).data = root.as_ptr() as *mut c_void;
    (*shm_zone).data = root.as_ptr() as *mut c_void;
    NGX_OK as ngx_int_t
}
