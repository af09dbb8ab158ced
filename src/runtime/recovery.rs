//! What the next holder of the zone's lock does when the last one died
//! holding it: check nginx's slab, repair and check the store, and log what
//! was found; a store damaged beyond what an interrupted update explains is
//! rebuilt empty. Also the tests' check of the whole zone at every unlock.

use nginx_sys::{
    ngx_pagesize_shift, ngx_slab_page_t, ngx_slab_pool_t, NGX_LOG_ALERT, NGX_LOG_NOTICE,
};
use push_relay::zone::{Repairs, Store};

use super::shmalloc::ShmAlloc;
use super::worker;
use super::zone::{self, Zone};

/// The zone test the store's check needs: `[addr, addr + bytes)` lies in
/// the slab's pages.
fn within(pool: *const ngx_slab_pool_t) -> impl Fn(usize, usize) -> bool {
    // SAFETY: the pool header is mapped; `start` and `end` are set once by
    // ngx_slab_init and only read here.
    let (start, end) = unsafe { ((*pool).start as usize, (*pool).end as usize) };
    move |addr, bytes| addr >= start && addr.checked_add(bytes).is_some_and(|e| e <= end)
}

/// nginx's own structures in the slab: the list of free page runs and the
/// lists of partly used pages, walked with every link checked before it is
/// followed; the free runs must add up to `pfree`.
fn check_slab(pool: *const ngx_slab_pool_t) -> Result<(), &'static str> {
    // SAFETY: the mutex is held; every page pointer is checked to lie in
    // the pool's page array before it is read, and every walk is bounded
    // by the number of pages.
    unsafe {
        let pages = (*pool).pages as usize;
        let last = (*pool).last as usize;
        let size = core::mem::size_of::<ngx_slab_page_t>();
        if last < pages || !(last - pages).is_multiple_of(size) {
            return Err("the slab's page array");
        }
        let npages = (last - pages) / size;
        let is_page = |p: usize| p >= pages && p < last && (p - pages).is_multiple_of(size);
        let head = core::ptr::addr_of!((*pool).free) as usize;
        let mut free = 0usize;
        let mut p = (*pool).free.next as usize;
        let mut steps = 0;
        while p != head {
            if !is_page(p) || steps > npages {
                return Err("the slab's list of free pages");
            }
            let run = (*(p as *const ngx_slab_page_t)).slab;
            if run == 0 || run > npages - (p - pages) / size {
                return Err("a free run of the slab");
            }
            free += run;
            steps += 1;
            p = (*(p as *const ngx_slab_page_t)).next as usize;
        }
        if free != (*pool).pfree {
            return Err("the slab's count of free pages");
        }
        // The slot lists sit right after the pool header, one per size
        // class from min_shift up to half a page.
        let slots =
            (pool as usize + core::mem::size_of::<ngx_slab_pool_t>()) as *const ngx_slab_page_t;
        let n = ngx_pagesize_shift.saturating_sub((*pool).min_shift);
        for i in 0..n {
            let head = slots.add(i) as usize;
            let mut p = (*slots.add(i)).next as usize;
            let mut steps = 0;
            while p != head {
                if !is_page(p) || steps > npages {
                    return Err("a slab list of partly used pages");
                }
                steps += 1;
                p = (*(p as *const ngx_slab_page_t)).next as usize;
            }
        }
    }
    Ok(())
}

/// The last holder, `dead`, died with the lock: make the zone sound again.
///
/// # Safety
/// The mutex is held, and nothing else borrows the store.
pub unsafe fn recover(zone: &Zone, dead: i32) {
    let log = zone.log();
    ngx::ngx_log_error!(
        NGX_LOG_ALERT,
        log,
        "push: worker process {} died holding the zone's lock; checking the zone",
        dead
    );
    let root = zone.root().as_ptr();
    let pool = zone.pool().as_ptr();
    // SAFETY: the caller's contract: the root is ours until the unlock.
    let (leaked, store) = unsafe { ((*root).deferred.abandon(), &mut (*root).store) };
    let outcome = check_slab(pool)
        .map_err(|what| format!("{what} is damaged"))
        .and_then(|()| {
            let repairs = store.repair();
            let me = zone.member_id();
            let gone: Vec<_> = store
                .workers()
                .filter(|w| w.pid == dead && Some(w.id) != me)
                .collect();
            for w in gone {
                store.unregister_worker(w.id, worker::now());
            }
            store
                .check(&within(pool))
                .map(|census| (census, repairs))
                .map_err(|d| d.to_string())
        });
    match outcome {
        Ok((census, repairs)) => {
            ngx::ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "push: the zone is sound: {} channel(s), {} message(s); {}; {} held-back free(s) leaked; every worker resynchronises its listeners",
                census.channels,
                census.messages,
                describe(&repairs),
                leaked
            );
        }
        Err(defect) => {
            // SAFETY: the caller's contract; the old store is never used
            // again.
            let rebuilt = unsafe { zone::rebuild(zone) };
            ngx::ngx_log_error!(
                NGX_LOG_ALERT,
                log,
                "push: the zone is damaged beyond repair ({}); {}: its channels and stored messages are lost",
                defect,
                if rebuilt {
                    "it was rebuilt empty"
                } else {
                    "it could not be rebuilt"
                }
            );
        }
    }
}

fn describe(r: &Repairs) -> String {
    if !r.any() {
        return "nothing to repair".to_string();
    }
    let mut parts = Vec::new();
    let mut say = |n: usize, what: &str| {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    };
    say(r.rehashed, "channel(s) moved to the new bucket table");
    say(r.duplicates, "duplicate(s) let go of");
    say(r.pending, "pending count(s) set right");
    say(r.freed, "in-flight message(s) or deleted channel(s) freed");
    say(r.holders, "holder count(s) of no live worker dropped");
    if r.recounted {
        parts.push("the channel count set right".to_string());
    }
    format!("repaired: {}", parts.join(", "))
}

/// The tests' check at every unlock (fault `validate`): the slab and the
/// whole store; a defect is an `alert` line, which fails the test.
pub fn validate(zone: &Zone, store: &Store<ShmAlloc>) {
    let pool = zone.pool().as_ptr();
    let found = check_slab(pool).map_err(str::to_string).and_then(|()| {
        store
            .check(&within(pool))
            .map(|_| ())
            .map_err(|d| d.to_string())
    });
    if let Err(defect) = found {
        ngx::ngx_log_error!(
            NGX_LOG_ALERT,
            zone.log(),
            "push: zone check failed: {}",
            defect
        );
    }
}
