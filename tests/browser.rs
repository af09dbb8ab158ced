//! The demo page of nginx-conf/demo.conf in a real browser (headless
//! Chromium over WebDriver): it listens with the browser's own EventSource
//! and a WebSocket; a message published with a plain POST shows up in
//! both; after `nginx -s reload` both reconnect by themselves (with their
//! last id) and nothing published meanwhile is missed or repeated.

#[macro_use]
mod common;

use common::browser::Browser;
use common::*;
use serde_json::Value;

fn demo() -> Nginx {
    Conf::example("nginx-conf/demo.conf")
        .link("demo", "nginx-conf/demo")
        .start()
}

fn post(ngx: &Nginx, ch: &str, body: &str) -> u16 {
    ngx.sender()
        .request(&Req::post(&format!("/pub?channel={ch}"), body.as_bytes()))
        .status
}

fn subscribers(ngx: &Nginx, ch: &str) -> Option<u64> {
    let r = ngx
        .sender()
        .request(&Req::get(&format!("/pub?channel={ch}")));
    (r.status == 200)
        .then(|| info_field(&r.text(), "active subscribers"))
        .flatten()
}

fn seen(b: &Browser, list: &str) -> Vec<String> {
    match b.eval(&format!("return window.pushDemo.{list};")) {
        Value::Array(v) => v
            .into_iter()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect(),
        other => panic!("pushDemo.{list}: {other}"),
    }
}

#[test]
fn demo_page_receives_over_eventsource_and_websocket_and_survives_a_reload() {
    let ngx = demo();
    let b = Browser::start();
    let page = ngx.get_page("/?channel=browser");
    assert!(
        page.contains("EventSource"),
        "the page is served: {page:.200}"
    );
    b.goto(&format!(
        "http://127.0.0.1:{}/?channel=browser",
        ngx.listener_port
    ));
    b.wait_for(
        "window.pushDemo && pushDemo.esOpens > 0 && pushDemo.wsOpens > 0",
        "both streams open",
    );
    wait_until(PROMPT, "both streams held", || {
        subscribers(&ngx, "browser") == Some(2)
    });
    assert_eq!(post(&ngx, "browser", "hello, browser"), 201);
    b.wait_for(
        "pushDemo.es.includes('hello, browser') && pushDemo.ws.includes('hello, browser')",
        "the message on the page",
    );

    // A reload ends both streams; the page reconnects by itself.
    let old = ngx.reload();
    assert!(ngx.wait_workers_gone(&old, PROMPT));
    assert_eq!(
        post(&ngx, "browser", "while reconnecting"),
        202,
        "nobody held now"
    );
    b.wait_for(
        "pushDemo.esOpens > 1 && pushDemo.wsOpens > 1",
        "both streams open again",
    );
    b.wait_for(
        "pushDemo.es.includes('while reconnecting') && pushDemo.ws.includes('while reconnecting')",
        "the message published while the page reconnected",
    );
    wait_until(PROMPT, "both held again", || {
        subscribers(&ngx, "browser") == Some(2)
    });
    assert_eq!(post(&ngx, "browser", "after"), 201);
    b.wait_for(
        "pushDemo.es.includes('after') && pushDemo.ws.includes('after')",
        "the next message",
    );
    let want = ["hello, browser", "while reconnecting", "after"];
    assert_eq!(
        seen(&b, "es"),
        want,
        "EventSource: every message once, in order"
    );
    assert_eq!(
        seen(&b, "ws"),
        want,
        "WebSocket: every message once, in order"
    );
    // The page shows them.
    let shown = b.eval("return document.getElementById('es').innerText;");
    assert!(shown.as_str().unwrap_or("").contains("while reconnecting"));
    drop(b);
    ngx.stop_and_check();
}

/// nchan's own browser client, NchanSubscriber.js, works unchanged over its
/// three transports (the ids and the `ws+meta.nchan` framing are nchan's),
/// and its EventSource and WebSocket resume after a reload with nothing
/// missed. (Its long-poll treats the protocol's `304` on a reload as an
/// error and stops: nchan answers that case otherwise; see the README.)
#[test]
fn nchans_own_client_works_over_all_three_transports() {
    let fetched = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/fetch-nchan-client.sh"
    ))
    .status()
    .expect("run scripts/fetch-nchan-client.sh");
    assert!(fetched.success(), "fetching nchan's client failed");
    let ngx = Conf::new(2)
        .listener_server(&format!(
            "location /nchan/ {{ alias {root}/target/nchan-client/; }}\n\
             location = /page.html {{ alias {root}/tests/pages/nchan-client.html; default_type text/html; }}\n\
             location /sub {{ set $push_id $arg_channel; push_listener long-poll eventsource websocket; }}",
            root = env!("CARGO_MANIFEST_DIR")
        ))
        .start();
    let b = Browser::start();
    b.goto(&format!(
        "http://127.0.0.1:{}/page.html?channel=nchan",
        ngx.listener_port
    ));
    b.wait_for(
        "window.nchanConnects && nchanConnects.eventsource > 0 && nchanConnects.websocket > 0",
        "NchanSubscriber connected",
    );
    ngx.wait_subscribers("nchan", 3);
    for m in ["one", "two"] {
        assert_eq!(ngx.post("nchan", m.as_bytes()).status, 201);
        // Long-poll holds again after each message before the next.
        ngx.wait_subscribers("nchan", 3);
    }
    for t in ["longpoll", "eventsource", "websocket"] {
        b.wait_for(
            &format!("nchanSeen.{t}.length >= 2"),
            &format!("two messages over {t}"),
        );
        let got = b.eval(&format!("return nchanSeen.{t}.map(m => m[0]);"));
        assert_eq!(got, serde_json::json!(["one", "two"]), "{t}");
    }
    let old = ngx.reload();
    assert!(ngx.wait_workers_gone(&old, PROMPT));
    ngx.post("nchan", b"three");
    for t in ["eventsource", "websocket"] {
        b.wait_for(
            &format!("nchanSeen.{t}.length >= 3"),
            &format!("the message published while {t} reconnected"),
        );
        let got = b.eval(&format!("return nchanSeen.{t}.map(m => m[0]);"));
        assert_eq!(
            got,
            serde_json::json!(["one", "two", "three"]),
            "{t}: once each, in order"
        );
    }
    drop(b);
    ngx.stop_and_check();
}

impl NginxPage for Nginx {
    fn get_page(&self, path: &str) -> String {
        let r = self.listener().request(&Req::get(path));
        assert_eq!(r.status, 200, "GET {path}");
        assert!(r
            .header("Content-Type")
            .unwrap_or("")
            .starts_with("text/html"));
        r.text()
    }
}

trait NginxPage {
    fn get_page(&self, path: &str) -> String;
}
