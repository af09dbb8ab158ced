//! Listener transports: how a held listener receives what the relay hands
//! it. A poll is answered once and leaves; the relay asks
//! [`Transport::ends_on_message`] rather than assuming it.

/// One way of listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Held until a message (or another end), answered once.
    LongPoll,
    /// Answered at once, never held.
    IntervalPoll,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::LongPoll, Transport::IntervalPoll];

    /// The word in `push_listener` (and in stats labels).
    pub fn name(self) -> &'static str {
        match self {
            Transport::LongPoll => "long-poll",
            Transport::IntervalPoll => "interval-poll",
        }
    }

    /// Is a listener of this transport held when nothing is there yet?
    pub fn holds(self) -> bool {
        !matches!(self, Transport::IntervalPoll)
    }

    /// Does a delivered message end the listener (answer-once), or does it
    /// stay and take the next one?
    pub fn ends_on_message(self) -> bool {
        true
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The set of transports a listener location offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transports(u8);

impl Transports {
    pub const EMPTY: Transports = Transports(0);

    pub fn only(t: Transport) -> Transports {
        Transports(t.bit())
    }

    pub fn contains(self, t: Transport) -> bool {
        self.0 & t.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The poll this location offers, if any.
    pub fn poll(self) -> Option<Transport> {
        [Transport::LongPoll, Transport::IntervalPoll]
            .into_iter()
            .find(|&t| self.contains(t))
    }

    /// The arguments of `push_listener` after its name. An empty list is
    /// long-poll.
    pub fn parse<'a>(
        words: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Transports, &'static str> {
        const REFUSAL: &str = "takes \"long-poll\" or \"interval-poll\"";
        let mut set = Transports::EMPTY;
        for w in words {
            let t = Transport::ALL
                .into_iter()
                .find(|t| t.name().as_bytes() == w)
                .ok_or(REFUSAL)?;
            if !set.is_empty() {
                return Err(REFUSAL);
            }
            set.0 |= t.bit();
        }
        if set.is_empty() {
            set = Transports::only(Transport::LongPoll);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_one_poll_or_default() {
        let none: [&[u8]; 0] = [];
        assert_eq!(
            Transports::parse(none),
            Ok(Transports::only(Transport::LongPoll))
        );
        let t = Transports::parse([&b"interval-poll"[..]]).unwrap();
        assert_eq!(t.poll(), Some(Transport::IntervalPoll));
        assert!(Transports::parse([&b"forever-poll"[..]]).is_err());
        assert!(Transports::parse([&b"long-poll"[..], b"interval-poll"]).is_err());
    }

    #[test]
    fn polls_hold_and_end() {
        assert!(Transport::LongPoll.holds());
        assert!(!Transport::IntervalPoll.holds());
        assert!(Transport::LongPoll.ends_on_message());
    }
}
