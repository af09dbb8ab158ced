//! The content handler of `push_stats` locations: the counters and gauges
//! of every worker together, as Prometheus text or one JSON object.

use nginx_sys::{ngx_http_request_t, ngx_int_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_OK};
use push_relay::stats::{self, Snapshot, Sources};

use crate::conf;
use crate::http::request::Req;
use crate::runtime::worker;

const ERROR: ngx_int_t = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;

/// # Safety
/// nginx's content phase calls it with a live request.
pub unsafe extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: live for the call (the content phase's request).
    match unsafe { Req::new(r) } {
        Some(req) => answer(req),
        None => ERROR,
    }
}

fn answer(req: Req<'_>) -> ngx_int_t {
    let format = stats::asked(req.method(), req.header(b"Accept"));
    if let Err(rc) = req.discard_body() {
        return rc;
    }
    let format = match format {
        Ok(f) => f,
        Err(refusal) => return req.refuse(refusal.reply(), None),
    };
    let Some((_, mcf)) = conf::of_request(req.ngx()) else {
        return ERROR;
    };
    let redis: Vec<String> = mcf.endpoints.iter().map(|e| e.url.label()).collect();
    let now = worker::now();
    let snapshot = worker::with(|w| {
        // This worker's own gauges are fresh; the others' are at most one
        // sweep (a second) old.
        worker::report(w);
        let (zone_used, zone_size) = w.zone.bytes();
        let lock = w.zone.lock();
        Snapshot::take(
            w.zone.totals(),
            Sources {
                store: lock.store.stats(now),
                gauges: lock.store.gauges(),
                redis: &redis,
                zone_used,
                zone_size,
            },
        )
    });
    match snapshot {
        Some(s) => req.dynamic(
            NGX_HTTP_OK as u16,
            format.content_type(),
            &format.render(&s),
        ),
        None => ERROR,
    }
}
