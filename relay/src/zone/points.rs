//! Named points inside the store's updates where a test may stop the
//! process dead (debug builds only), to prove that an update interrupted
//! while the zone's lock was held is found and repaired by the next
//! worker. In release builds `point` compiles to nothing.

#[cfg(debug_assertions)]
static HOOK: std::sync::OnceLock<fn(&'static str)> = std::sync::OnceLock::new();

/// Call `f` with the name of every point reached (once per process; later
/// calls are ignored).
pub fn set_hook(f: fn(&'static str)) {
    #[cfg(debug_assertions)]
    let _ = HOOK.set(f);
    #[cfg(not(debug_assertions))]
    let _ = f;
}

/// Every point the store passes, for the tests that name them.
pub const ALL: [&str; 7] = [
    "publish:reserved",
    "publish:stored",
    "publish:queued",
    "listen:held",
    "drain:taken",
    "sweep:expired",
    "rehash:moving",
];

#[inline(always)]
pub(crate) fn point(name: &'static str) {
    #[cfg(debug_assertions)]
    if let Some(f) = HOOK.get() {
        f(name);
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
