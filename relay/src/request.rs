//! What a request asks for, decided from plain values the module read off
//! it: the channel id (with its group), and which operation the method
//! selects on a listener or sender location.

use std::borrow::Cow;

use crate::conf::Role;
use crate::outcome::{Refusal, LISTENER_METHODS, SENDER_METHODS};
use crate::transport::{Transport, Transports};

/// The request methods the relay distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Other,
}

/// The channel a request names: `$push_id`, prefixed with
/// `push_channel_group` as `group/id`. The length limit counts the id
/// alone. The common case (no group) borrows the id.
pub fn channel_id<'a>(
    id: Option<&'a [u8]>,
    group: Option<&[u8]>,
    max_len: usize,
) -> Result<Cow<'a, [u8]>, Refusal> {
    let id = id.filter(|id| !id.is_empty()).ok_or(Refusal::NoId)?;
    if id.len() > max_len {
        return Err(Refusal::IdTooLong);
    }
    Ok(match group {
        None => Cow::Borrowed(id),
        Some(group) => {
            let mut full = Vec::with_capacity(group.len() + 1 + id.len());
            full.extend_from_slice(group);
            full.push(b'/');
            full.extend_from_slice(id);
            Cow::Owned(full)
        }
    })
}

/// What a request to a listener location is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerOp {
    /// CORS preflight; needs no channel.
    Options,
    Listen,
}

/// `OPTIONS` is answered without a channel id; otherwise the id is checked
/// (`400`) before the method (`405`).
pub fn listener_op(method: Method, id: Result<(), Refusal>) -> Result<ListenerOp, Refusal> {
    if method == Method::Options {
        return Ok(ListenerOp::Options);
    }
    id?;
    match method {
        Method::Get | Method::Head => Ok(ListenerOp::Listen),
        _ => Err(Refusal::NotAllowed(Role::Listener)),
    }
}

/// What a request to a sender location is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderOp {
    Options,
    Publish,
    Create,
    Info,
    Delete,
}

/// `OPTIONS` needs no id; an unknown method is `405` whatever the id; then
/// the id is checked.
pub fn sender_op(method: Method, id: Result<(), Refusal>) -> Result<SenderOp, Refusal> {
    let op = match method {
        Method::Options => return Ok(SenderOp::Options),
        Method::Post => SenderOp::Publish,
        Method::Put => SenderOp::Create,
        Method::Get | Method::Head => SenderOp::Info,
        Method::Delete => SenderOp::Delete,
        Method::Other => return Err(Refusal::NotAllowed(Role::Sender)),
    };
    id?;
    Ok(op)
}

/// The headers of a CORS preflight answer besides the origin, for a
/// location of `role` offering `transports` (an EventSource location also
/// allows `Last-Event-ID`, which browsers send when they reconnect).
pub fn preflight(role: Role, transports: Transports) -> [(&'static str, &'static str); 2] {
    match role {
        Role::Sender => [
            ("Access-Control-Allow-Methods", SENDER_METHODS),
            ("Access-Control-Allow-Headers", "Content-Type, Origin"),
        ],
        _ => [
            ("Access-Control-Allow-Methods", LISTENER_METHODS),
            (
                "Access-Control-Allow-Headers",
                if transports.contains(Transport::EventSource) {
                    "If-None-Match, If-Modified-Since, Last-Event-ID, Origin"
                } else {
                    "If-None-Match, If-Modified-Since, Origin"
                },
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_with_and_without_group() {
        assert_eq!(
            channel_id(Some(b"a"), None, 512).unwrap(),
            Cow::Borrowed(&b"a"[..])
        );
        assert_eq!(
            channel_id(Some(b"a"), Some(b"g"), 512).unwrap().as_ref(),
            b"g/a"
        );
        assert_eq!(
            channel_id(Some(b"a"), Some(b""), 512).unwrap().as_ref(),
            b"/a"
        );
    }

    #[test]
    fn empty_and_too_long_ids_are_refused_and_the_group_does_not_count() {
        assert_eq!(channel_id(None, None, 512), Err(Refusal::NoId));
        assert_eq!(channel_id(Some(b""), None, 512), Err(Refusal::NoId));
        assert_eq!(channel_id(Some(b"abcd"), None, 3), Err(Refusal::IdTooLong));
        assert!(channel_id(Some(b"abc"), Some(b"a-long-group"), 3).is_ok());
    }

    #[test]
    fn listener_checks_id_before_method_and_options_needs_neither() {
        let bad = Err(Refusal::NoId);
        assert_eq!(listener_op(Method::Options, bad), Ok(ListenerOp::Options));
        assert_eq!(listener_op(Method::Post, bad), Err(Refusal::NoId));
        assert_eq!(
            listener_op(Method::Post, Ok(())),
            Err(Refusal::NotAllowed(Role::Listener))
        );
        assert_eq!(listener_op(Method::Head, Ok(())), Ok(ListenerOp::Listen));
    }

    #[test]
    fn sender_checks_method_before_id() {
        let bad = Err(Refusal::IdTooLong);
        assert_eq!(
            sender_op(Method::Other, bad),
            Err(Refusal::NotAllowed(Role::Sender))
        );
        assert_eq!(sender_op(Method::Post, bad), Err(Refusal::IdTooLong));
        assert_eq!(sender_op(Method::Options, bad), Ok(SenderOp::Options));
        assert_eq!(sender_op(Method::Head, Ok(())), Ok(SenderOp::Info));
        assert_eq!(sender_op(Method::Put, Ok(())), Ok(SenderOp::Create));
        assert_eq!(sender_op(Method::Delete, Ok(())), Ok(SenderOp::Delete));
    }

    #[test]
    fn preflight_headers_per_role() {
        let lp = Transports::only(Transport::LongPoll);
        assert_eq!(preflight(Role::Sender, lp)[0].1, SENDER_METHODS);
        assert_eq!(
            preflight(Role::Listener, lp)[1].1,
            "If-None-Match, If-Modified-Since, Origin"
        );
        let es = Transports::only(Transport::EventSource);
        assert!(preflight(Role::Listener, es)[1].1.contains("Last-Event-ID"));
    }
}
