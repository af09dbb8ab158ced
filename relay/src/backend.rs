//! The seam between the relay and a channel store.
//!
//! A backend keeps channels and messages and counts held listeners; it owns
//! this worker's [`crate::relay::Relay`] for its channels, so that holding,
//! answering and forgetting a listener updates both sides at once. An
//! operation either completes at once (the shared-memory zone, under its
//! lock) or later ([`Step::Later`]: a store across the network answers in a
//! later turn of nginx's event loop, and the module then hands the outcome
//! to the request that waits on that operation).

use core::ops::Range;

use crate::conf::{ListenerRules, SenderRules};
use crate::outcome::Refusal;
use crate::proto::cursor::{Cursor, MsgId};
use crate::proto::info::ChannelInfo;
use crate::registry::{ChanKey, Key};
use crate::relay::{Effects, MsgRef};
use crate::transport::Transport;

/// A pending operation, named by the backend that will complete it.
pub type OpId = u64;

/// How far an operation got.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<T> {
    Ready(T),
    /// Completes later; the outcome arrives under this id.
    Later(OpId),
    /// A message did not fit the room reserved for copies: make room
    /// (`Copies::make_room`, with no lock held) and call again. Effects
    /// gathered so far are valid and should be carried out.
    Retry,
}

/// A listener's request.
#[derive(Debug, Clone, Copy)]
pub struct Listen<'a> {
    pub id: &'a [u8],
    pub cursor: Cursor,
    pub rules: ListenerRules,
    pub transport: Transport,
    pub now: u64,
}

/// What a listener gets at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listened {
    /// This message, now (a poll).
    Message(MsgRef),
    /// Nothing newer and not held: 304.
    NotModified,
    /// Held: the listener is in the relay under `key` on `chan`. If the
    /// module cannot park the request it must `forget` it. A stream first
    /// gets the stored messages after its cursor: these copies, in order.
    Held {
        chan: ChanKey,
        key: Key,
        backlog: Range<u32>,
    },
}

/// A sender's message.
#[derive(Debug, Clone, Copy)]
pub struct Publish<'a> {
    pub id: &'a [u8],
    pub content_type: &'a [u8],
    /// `X-EventSource-Event` (a token, checked); empty = none.
    pub event: &'a [u8],
    pub body: &'a [u8],
    pub rules: SenderRules,
    pub now: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub id: MsgId,
    /// Listeners held on the channel, everywhere, when it was published
    /// (`201` when any).
    pub held: u32,
    pub info: ChannelInfo,
}

pub trait Backend {
    fn listen(&mut self, req: &Listen<'_>, fx: &mut Effects) -> Step<Result<Listened, Refusal>>;

    fn publish(&mut self, req: &Publish<'_>, fx: &mut Effects) -> Step<Result<Published, Refusal>>;

    /// `PUT`: create the channel as a sender.
    fn create(
        &mut self,
        id: &[u8],
        rules: &SenderRules,
        now: u64,
        fx: &mut Effects,
    ) -> Step<Result<ChannelInfo, Refusal>>;

    /// `GET` on a sender: `NotFound` when there is no such channel.
    fn info(&mut self, id: &[u8], now: u64, fx: &mut Effects)
        -> Step<Result<ChannelInfo, Refusal>>;

    /// `DELETE`: the info as it was; every held listener gets 410.
    fn delete(
        &mut self,
        id: &[u8],
        now: u64,
        fx: &mut Effects,
    ) -> Step<Result<ChannelInfo, Refusal>>;

    /// Take what arrived for this worker's listeners from elsewhere.
    fn catch_up(&mut self, now: u64, fx: &mut Effects) -> Step<()>;

    /// A held listener went away; false if it had been answered already.
    fn forget(&mut self, chan: ChanKey, key: Key, now: u64) -> bool;

    /// The worker is exiting: every held listener ends.
    fn release_all(&mut self, now: u64, fx: &mut Effects);
}
