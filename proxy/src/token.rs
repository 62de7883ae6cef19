//! How event sources are named in the mio poll: a [`Token`] carries the
//! source's kind in its high bits and an index (connection slot, listener,
//! worker slot) in its low bits.

use mio::Token;

const KIND_SHIFT: u32 = 40;
const INDEX_MASK: usize = (1 << KIND_SHIFT) - 1;

const _: () = assert!(
    usize::BITS == 64,
    "spp-proxy packs tokens into 64-bit usize"
);

/// Every kind of event source the loop polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A TCP connection, by slot in the connection table.
    Conn(u32),
    /// A TCP listener, by position in the loop's listener list.
    Listener(usize),
    /// A UDP socket, by position in the loop's UDP socket list.
    Udp(usize),
    /// The proxy doorbell.
    Bell,
    /// The signal pipe.
    Signals,
    /// A worker's pidfd, by worker slot.
    Pidfd(usize),
}

const CONN: usize = 0;
const LISTENER: usize = 1;
const UDP: usize = 2;
const BELL: usize = 3;
const SIGNALS: usize = 4;
const PIDFD: usize = 5;

impl Source {
    /// The token to register this source with.
    pub fn token(self) -> Token {
        let (kind, index) = match self {
            Source::Conn(slot) => (CONN, slot as usize),
            Source::Listener(i) => (LISTENER, i),
            Source::Udp(i) => (UDP, i),
            Source::Bell => (BELL, 0),
            Source::Signals => (SIGNALS, 0),
            Source::Pidfd(i) => (PIDFD, i),
        };
        Token((kind << KIND_SHIFT) | (index & INDEX_MASK))
    }

    /// The source a token names; `None` for a token this loop never made.
    pub fn from_token(token: Token) -> Option<Self> {
        let index = token.0 & INDEX_MASK;
        Some(match token.0 >> KIND_SHIFT {
            CONN => Source::Conn(u32::try_from(index).ok()?),
            LISTENER => Source::Listener(index),
            UDP => Source::Udp(index),
            BELL => Source::Bell,
            SIGNALS => Source::Signals,
            PIDFD => Source::Pidfd(index),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for s in [
            Source::Conn(0),
            Source::Conn((1 << 20) - 1),
            Source::Listener(3),
            Source::Udp(1),
            Source::Bell,
            Source::Signals,
            Source::Pidfd(17),
        ] {
            assert_eq!(Source::from_token(s.token()), Some(s));
        }
        assert_eq!(Source::from_token(Token(99 << KIND_SHIFT)), None);
    }
}
