//! `nginx -t`: wrong values and wrong places are refused with a message
//! naming the directive and the file:line; the right values are accepted
//! (so a refusal is not just "unknown directive").

#[macro_use]
mod common;

use common::*;

/// `bad` is refused naming `directive` and its line; `good` (same place)
/// passes.
fn refused_vs_accepted(place: Place, directive: &str, bad: &str, good: &str) {
    let t = place.apply(Conf::new(1), bad).nginx_t();
    t.assert_refused(directive, bad);
    assert!(
        !t.output.contains("unknown directive"),
        "{directive} must be known to the module: {}",
        t.output
    );
    place.apply(Conf::new(1), good).nginx_t().assert_ok();
}

#[derive(Clone, Copy)]
enum Place {
    Http,
    Listener,
    Sender,
}

impl Place {
    fn apply(self, c: Conf, s: &str) -> Conf {
        match self {
            Place::Http => c.http(s),
            Place::Listener => c.listener_extra(s),
            Place::Sender => c.sender_extra(s),
        }
    }
}

#[test]
fn all_issue2_directives_accepted() {
    Conf::new(1)
        .http("push_buffer_size 4m; push_listener_concurrency broadcast; push_queue_messages on; push_message_timeout 2h; push_message_buffer_length 20;")
        .listener_extra("push_listener_concurrency first; push_queue_messages off; push_message_timeout 30s; push_message_buffer_length 0;")
        .sender_extra("push_message_timeout 0; push_queue_messages on;")
        .nginx_t()
        .assert_ok();
}

#[test]
fn concurrency_bad_value() {
    refused_vs_accepted(
        Place::Listener,
        "push_listener_concurrency",
        "push_listener_concurrency sideways;",
        "push_listener_concurrency broadcast;",
    );
    refused_vs_accepted(
        Place::Http,
        "push_listener_concurrency",
        "push_listener_concurrency 1;",
        "push_listener_concurrency last;",
    );
}

#[test]
fn buffer_size_too_small_or_bad() {
    refused_vs_accepted(
        Place::Http,
        "push_buffer_size",
        "push_buffer_size 1k;",
        "push_buffer_size 32k;",
    );
    refused_vs_accepted(
        Place::Http,
        "push_buffer_size",
        "push_buffer_size 31k;",
        "push_buffer_size 64k;",
    );
    refused_vs_accepted(
        Place::Http,
        "push_buffer_size",
        "push_buffer_size lots;",
        "push_buffer_size 1m;",
    );
}

#[test]
fn queue_messages_bad_value() {
    refused_vs_accepted(
        Place::Http,
        "push_queue_messages",
        "push_queue_messages maybe;",
        "push_queue_messages off;",
    );
}

#[test]
fn message_timeout_bad_value() {
    refused_vs_accepted(
        Place::Sender,
        "push_message_timeout",
        "push_message_timeout soon;",
        "push_message_timeout 5m;",
    );
    refused_vs_accepted(
        Place::Http,
        "push_message_timeout",
        "push_message_timeout -1s;",
        "push_message_timeout 1s;",
    );
}

#[test]
fn buffer_length_bad_value() {
    refused_vs_accepted(
        Place::Http,
        "push_message_buffer_length",
        "push_message_buffer_length ten;",
        "push_message_buffer_length 10;",
    );
    refused_vs_accepted(
        Place::Http,
        "push_message_buffer_length",
        "push_message_buffer_length -1;",
        "push_message_buffer_length 0;",
    );
}

#[test]
fn sender_listener_take_no_bad_args() {
    let t = Conf::new(1)
        .listener_body("set $push_id $arg_channel; push_listener sometimes;")
        .nginx_t();
    t.assert_refused("push_listener", "push_listener sometimes;");
    let t = Conf::new(1)
        .sender_body("set $push_id $arg_channel; push_sender now;")
        .nginx_t();
    t.assert_refused("push_sender", "push_sender now;");
}

#[test]
fn duplicate_directive_refused() {
    let t = Conf::new(1)
        .http("push_buffer_size 1m;\npush_buffer_size 2m;")
        .nginx_t();
    t.assert_refused("push_buffer_size", "push_buffer_size 2m;");
}

#[test]
fn directive_in_wrong_context() {
    // push_listener_concurrency is http/server/location: not main.
    let t = Conf::new(1)
        .main("push_listener_concurrency last;")
        .nginx_t();
    assert!(!t.ok, "accepted in main context");
    assert!(
        t.output.contains("push_listener_concurrency"),
        "{}",
        t.output
    );
}

/// A bad value does not stop the conf from naming the correct line even
/// with many lines before it.
#[test]
fn line_number_is_exact() {
    let mut c = Conf::new(1);
    for i in 0..30 {
        c = c.http(&format!("# filler {i}"));
    }
    let t = c
        .listener_extra("push_listener_concurrency upward;")
        .nginx_t();
    t.assert_refused(
        "push_listener_concurrency",
        "push_listener_concurrency upward;",
    );
}

#[test]
fn all_issue3_directives_accepted() {
    Conf::new(1)
        .http("push_listener_timeout 30s; push_authorized_channels_only off; push_max_channel_id_length 64; push_max_channel_subscribers 10; push_channel_timeout 10m; push_allow_origin https://a.example; push_min_message_buffer_length 3;")
        .listener_body("set $push_id $arg_channel; push_listener interval-poll; push_channel_group grp; push_allow_origin $http_origin;")
        .sender_body("set $push_id $arg_channel; push_sender; push_channel_group grp;")
        .nginx_t()
        .assert_ok();
}

#[test]
fn sender_and_listener_in_one_location() {
    let t = Conf::new(1)
        .listener_body("set $push_id $arg_channel; push_listener;\npush_sender; # in listener")
        .nginx_t();
    assert!(!t.ok, "push_sender + push_listener accepted: {}", t.output);
    assert!(
        t.output.contains("push_sender") || t.output.contains("push_listener"),
        "{}",
        t.output
    );
    let line = t.line_of("push_sender; # in listener");
    assert!(
        t.output.contains(&format!("{}:{line}", t.conf_path)),
        "names the line: {}",
        t.output
    );
    // The other order too.
    let t = Conf::new(1)
        .sender_body("set $push_id $arg_channel; push_sender;\npush_listener; # in sender")
        .nginx_t();
    assert!(!t.ok, "push_listener + push_sender accepted: {}", t.output);
    let line = t.line_of("push_listener; # in sender");
    assert!(
        t.output.contains(&format!("{}:{line}", t.conf_path)),
        "names the line: {}",
        t.output
    );
}

#[test]
fn buffer_size_outside_http() {
    let t = Conf::new(1)
        .listener_extra("push_buffer_size 1m;")
        .nginx_t();
    t.assert_refused("push_buffer_size", "push_buffer_size 1m;");
    let t = Conf::new(1).sender_server("push_buffer_size 1m;").nginx_t();
    t.assert_refused("push_buffer_size", "push_buffer_size 1m;");
}

#[test]
fn issue3_bad_values() {
    refused_vs_accepted(
        Place::Listener,
        "push_listener_timeout",
        "push_listener_timeout later;",
        "push_listener_timeout 10s;",
    );
    refused_vs_accepted(
        Place::Http,
        "push_authorized_channels_only",
        "push_authorized_channels_only yes;",
        "push_authorized_channels_only on;",
    );
    refused_vs_accepted(
        Place::Http,
        "push_max_channel_id_length",
        "push_max_channel_id_length long;",
        "push_max_channel_id_length 100;",
    );
    refused_vs_accepted(
        Place::Http,
        "push_max_channel_subscribers",
        "push_max_channel_subscribers many;",
        "push_max_channel_subscribers 0;",
    );
    refused_vs_accepted(
        Place::Http,
        "push_channel_timeout",
        "push_channel_timeout whenever;",
        "push_channel_timeout 1h;",
    );
    refused_vs_accepted(
        Place::Http,
        "push_min_message_buffer_length",
        "push_min_message_buffer_length x;",
        "push_min_message_buffer_length 1;",
    );
    let t = Conf::new(1)
        .listener_body("set $push_id $arg_channel; push_listener forever-poll;")
        .nginx_t();
    t.assert_refused("push_listener", "push_listener forever-poll;");
}

#[test]
fn channel_group_not_in_http() {
    let t = Conf::new(1).http("push_channel_group g;").nginx_t();
    t.assert_refused("push_channel_group", "push_channel_group g;");
}
