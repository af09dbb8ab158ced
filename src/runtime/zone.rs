//! The shared-memory zone: its declaration, its creation and reuse across
//! reloads, and the lock that guards every access to the store, with the
//! mark that tells the next holder the last one died mid-update.
//!
//! The zone's root (the store's header, the counters of `push_stats`, the
//! lock-holder mark and the held-back frees) sits outside the slab
//! allocator's pages (in the header's page, or else at the zone's tail): it
//! stays where it is even when a damaged store is rebuilt by
//! re-initialising the slab.

use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

use nginx_sys::{
    ngx_conf_t, ngx_int_t, ngx_log_t, ngx_shared_memory_add, ngx_shm_zone_t, ngx_slab_init,
    ngx_slab_pool_t, ngx_str_t, NGX_ERROR, NGX_OK,
};
use ngx::core::slab::{LockedSlabPool, SlabPool};
use ngx::ngx_string;
use push_relay::stats::Totals;
use push_relay::zone::{Store, WorkerId};

use super::shmalloc::{Deferred, ShmAlloc};
use super::{faults, recovery};

/// What the zone's `shpool->data` points at, outside the slab's pages.
#[repr(C)]
pub struct Root {
    /// First: the allocator finds it from `shpool->data` alone.
    pub(super) deferred: Deferred,
    magic: u64,
    /// Pid of the worker holding the lock, 0 when none: set right after
    /// taking the mutex, cleared right before releasing it. Found set at
    /// lock time, it names a holder that died (nginx's master force-unlocks
    /// a dead holder's mutex).
    holder: AtomicU64,
    /// Changes when the store is rebuilt: workers register again.
    epoch: AtomicU64,
    /// Counters updated without the lock (atomics).
    totals: Totals,
    pub store: Store<ShmAlloc>,
}

/// Changes whenever `Root` or anything in it changes shape: a reload that
/// loads a different build must not read the old zone as its own.
const MAGIC: u64 = 0x7075_7368_0000_0004 ^ (core::mem::size_of::<Root>() as u64);

/// Bytes taken from the zone's tail for the root when the header's page
/// has no room for it (cache-line aligned).
const ROOT_SPACE: usize = (core::mem::size_of::<Root>() + 64 + 63) & !63;

/// Who this worker is in the store, for registering again after a rebuild.
#[derive(Clone, Copy)]
struct Member {
    id: WorkerId,
    pid: i32,
    nonce: u64,
}

/// The zone of a running worker.
pub struct Zone {
    slab: SlabPool,
    pool: NonNull<ngx_slab_pool_t>,
    root: NonNull<Root>,
    /// `push_buffer_size`.
    size: usize,
    log: *mut ngx_log_t,
    member: Cell<Option<Member>>,
    /// The store's epoch this worker is registered in.
    epoch: Cell<u64>,
    /// The store was rebuilt: this worker's held listeners are gone from it.
    dropped: Cell<bool>,
}

/// Holds the zone's mutex (released on drop, after the held-back frees and
/// the holder mark); the store is reachable only through it.
pub struct Locked<'a> {
    _mutex: LockedSlabPool,
    zone: &'a Zone,
    pub store: &'a mut Store<ShmAlloc>,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if faults::validate() {
            recovery::validate(self.zone, self.store);
        }
        self.zone.alloc().flush();
        // SAFETY: the root is mapped; the mutex (dropped after this) is held.
        unsafe { (*self.zone.root.as_ptr()).holder.store(0, Relaxed) };
    }
}

impl Zone {
    /// # Safety
    /// `shm_zone` is this module's zone, initialised by `init_zone`, in a
    /// worker process (zones stay mapped for the worker's whole life).
    pub unsafe fn of(shm_zone: *mut ngx_shm_zone_t, log: *mut ngx_log_t) -> Option<Zone> {
        // SAFETY: the caller's contract.
        let slab = unsafe { SlabPool::from_shm_zone(&*shm_zone)? };
        // SAFETY: as above: the zone's mapped memory starts with its pool.
        let pool = NonNull::new(unsafe { (*shm_zone).shm.addr }.cast::<ngx_slab_pool_t>())?;
        // SAFETY: the pool header is mapped; init_zone set `data`.
        let root = NonNull::new(unsafe { (*pool.as_ptr()).data }.cast::<Root>())?;
        Some(Zone {
            slab,
            pool,
            root,
            // SAFETY: as above.
            size: unsafe { (*shm_zone).shm.size },
            log,
            member: Cell::new(None),
            // SAFETY: mapped; read before this worker takes part.
            epoch: Cell::new(unsafe { (*root.as_ptr()).epoch.load(Relaxed) }),
            dropped: Cell::new(false),
        })
    }

    /// This worker is `id` in the store.
    pub fn joined(&self, id: WorkerId, pid: i32, nonce: u64) {
        self.member.set(Some(Member { id, pid, nonce }));
    }

    /// This worker's id in the store, once it joined.
    pub fn member_id(&self) -> Option<WorkerId> {
        self.member.get().map(|m| m.id)
    }

    /// Take the zone's mutex. If the last holder died holding it, check and
    /// repair the store first (`recovery`). Code under the lock must not
    /// panic (a panic aborts the worker mid-update).
    pub fn lock(&self) -> Locked<'_> {
        let mutex = self.slab.lock();
        let root = self.root.as_ptr();
        // SAFETY: the mutex is held for the life of `Locked`, so no other
        // process or call touches the root's locked fields meanwhile; the
        // root stays mapped for the worker's life. `Locked` borrows only
        // the `store` field, never the whole root (the totals are shared
        // without the lock).
        let store = unsafe {
            let dead = (*root).holder.swap(super::worker::pid() as u64, Relaxed);
            if dead != 0 {
                // A holder that died (the mutex is not re-entrant: never
                // this worker, even if the kernel gave it the same pid).
                recovery::recover(self, dead as i32);
            }
            #[cfg(debug_assertions)]
            if faults::misfile_armed() {
                (*root).store.misfile_for_tests();
                faults::die();
            }
            &mut (*root).store
        };
        self.rejoin(&mut *store);
        Locked {
            _mutex: mutex,
            zone: self,
            store,
        }
    }

    /// After a rebuild: register again under the same id, and remember that
    /// this worker's held listeners must end (they are not in the new store).
    fn rejoin(&self, store: &mut Store<ShmAlloc>) {
        // SAFETY: mapped; the mutex is held.
        let epoch = unsafe { (*self.root.as_ptr()).epoch.load(Relaxed) };
        if epoch == self.epoch.get() {
            return;
        }
        self.epoch.set(epoch);
        if let Some(m) = self.member.get() {
            let _ = store.register_worker_as(m.id, m.pid, m.nonce);
            self.dropped.set(true);
        }
    }

    /// Whether the store was rebuilt since the last call (this worker's
    /// held listeners must end).
    pub fn take_dropped(&self) -> bool {
        self.dropped.replace(false)
    }

    pub fn log(&self) -> *mut ngx_log_t {
        self.log
    }

    pub fn pool(&self) -> NonNull<ngx_slab_pool_t> {
        self.pool
    }

    pub(super) fn root(&self) -> NonNull<Root> {
        self.root
    }

    /// The store's allocator.
    pub(super) fn alloc(&self) -> ShmAlloc {
        // SAFETY: the zone's pool, whose data is the root; used only under
        // the lock (by `Locked` and the store).
        unsafe { ShmAlloc::new(self.pool) }
    }

    /// The counters of `push_stats`, for the life of the worker.
    pub fn totals(&self) -> &'static Totals {
        // SAFETY: the zone stays mapped for the process's life and the root
        // never moves (it is outside the slab); the totals are atomics,
        // shared by design; `Locked` borrows only the `store` field.
        unsafe { &(*self.root.as_ptr()).totals }
    }

    /// Bytes of the zone in use (pages taken, headers and the root
    /// included), and its size.
    pub fn bytes(&self) -> (u64, u64) {
        let pool = self.pool.as_ptr();
        let _mutex = self.slab.lock();
        // SAFETY: the pool header is mapped; `pfree` is read under the
        // mutex, where the slab functions write it.
        let free = unsafe { ((*pool).pfree as u64) << nginx_sys::ngx_pagesize_shift };
        let size = self.size as u64;
        (size.saturating_sub(free), size)
    }
}

/// A new store's hash key, from the OS's randomness via std's RandomState.
fn random_key() -> [u64; 2] {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(1);
    let k0 = h.finish();
    h.write_u64(2);
    [k0, h.finish()]
}

/// A new, empty store in `pool`, after `counters` (see `Store::new_after`).
///
/// # Safety
/// The pool's mutex is held (or the zone is being built, in the master);
/// its data is null or the zone's root.
pub(super) unsafe fn new_store(
    pool: NonNull<ngx_slab_pool_t>,
    counters: (WorkerId, u64),
) -> Option<Store<ShmAlloc>> {
    // SAFETY: the caller's contract.
    let alloc = unsafe { ShmAlloc::new(pool) };
    Store::new_after(alloc, random_key(), counters).ok()
}

/// Re-initialise the slab (every allocation in it is gone) and put a new,
/// empty store in the root; the counters and the root stay.
///
/// # Safety
/// The mutex is held; nothing in the old store is used again (it is
/// overwritten, never dropped).
pub(super) unsafe fn rebuild(zone: &Zone) -> bool {
    let pool = zone.pool.as_ptr();
    let root = zone.root.as_ptr();
    // SAFETY: the caller's contract.
    unsafe {
        let counters = (*root).store.counters();
        (*root).deferred.abandon();
        // ngx_slab_init zeroes its page array a little past the final end
        // the root may sit behind (and junks the whole header under
        // NGX_DEBUG_MALLOC): keep the root's bytes across it. (A counter
        // another worker adds to in between is lost: a rebuild is rare.)
        let saved = core::mem::ManuallyDrop::new(core::ptr::read(root));
        ngx_slab_init(pool);
        core::ptr::write(root, core::mem::ManuallyDrop::into_inner(saved));
        (*pool).set_log_nomem(0);
        let Some(store) = new_store(zone.pool, counters) else {
            return false;
        };
        core::ptr::addr_of_mut!((*root).store).write(store);
        (*root).epoch.fetch_add(1, Relaxed);
    }
    true
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
        let data = (*pool).data.cast::<Root>();
        if !data.is_null() && (*data).magic == MAGIC {
            (*shm_zone).data = data.cast();
            return NGX_OK as ngx_int_t;
        }
        // A new zone, or another build's layout: start the slab over, and
        // find the root a place outside its pages.
        let size = (*shm_zone).shm.size;
        (*pool).end = (*shm_zone).shm.addr.add(size);
        // Frees are immediate until the root exists (see `ShmAlloc`).
        (*pool).data = core::ptr::null_mut();
        ngx_slab_init(pool);
        let root = match header_gap(pool) {
            Some(at) => at,
            None => {
                if size < ROOT_SPACE * 4 {
                    return NGX_ERROR as ngx_int_t;
                }
                // No room left in the header's page: the slab gives up
                // the zone's tail.
                (*pool).end = (*shm_zone).shm.addr.add(size - ROOT_SPACE);
                ngx_slab_init(pool);
                (((*pool).end as usize + 63) & !63) as *mut Root
            }
        };
        // The module logs its own "zone full" line, once, in its own words.
        (*pool).set_log_nomem(0);
        let Some(root) = new_root(shm_zone, pool, root) else {
            return NGX_ERROR as ngx_int_t;
        };
        (*pool).data = root.as_ptr().cast();
        (*shm_zone).data = root.as_ptr().cast();
    }
    NGX_OK as ngx_int_t
}

/// Room for the root between the slab's page array and its first page (the
/// header's page is mostly unused), if there is enough.
///
/// # Safety
/// `pool` was just initialised by ngx_slab_init.
unsafe fn header_gap(pool: *mut ngx_slab_pool_t) -> Option<*mut Root> {
    // SAFETY: the caller's contract: `last` ends the page array in use
    // (entries past it are never read by the slab once it is initialised;
    // `rebuild` keeps the root across a new ngx_slab_init), `start` is the
    // first page.
    let (last, start) = unsafe { ((*pool).last as usize, (*pool).start as usize) };
    let at = (last + 63) & !63;
    (at + core::mem::size_of::<Root>() <= start).then_some(at as *mut Root)
}

/// A fresh root with an empty store at `at`, under the pool's mutex.
///
/// # Safety
/// `pool` is the initialised slab pool of `shm_zone`, in the master at
/// configuration time; `at` is the aligned tail of the zone, outside the
/// pool's pages, with room for a `Root`.
unsafe fn new_root(
    shm_zone: *mut ngx_shm_zone_t,
    pool: *mut ngx_slab_pool_t,
    at: *mut Root,
) -> Option<NonNull<Root>> {
    // SAFETY: the caller's contract.
    unsafe {
        let slab = SlabPool::from_shm_zone(&*shm_zone)?;
        let _mutex = slab.lock();
        let pool = NonNull::new(pool)?;
        // The store's allocator points at the root's held-back list: write
        // the fields before it, then the store.
        core::ptr::addr_of_mut!((*at).magic).write(MAGIC);
        core::ptr::addr_of_mut!((*at).holder).write(AtomicU64::new(0));
        core::ptr::addr_of_mut!((*at).epoch).write(AtomicU64::new(1));
        core::ptr::addr_of_mut!((*at).totals).write(Totals::default());
        core::ptr::addr_of_mut!((*at).deferred).write(Deferred::new());
        // Frees held back from now on.
        (*pool.as_ptr()).data = at.cast();
        let store = new_store(pool, (1, 1))?;
        core::ptr::addr_of_mut!((*at).store).write(store);
        NonNull::new(at)
    }
}
