//! A receive buffer: bytes read but not yet consumed as responses, with
//! room to read more. It grows only when a response is larger than the
//! space left, and moves its contents to the front instead of growing when
//! it can.

/// Bytes read from a stream and not yet consumed.
#[derive(Debug)]
pub struct InBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    /// An empty buffer with `capacity` bytes of room.
    pub fn new(capacity: usize) -> Self {
        InBuf {
            data: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    /// The unconsumed bytes.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Drops the first `n` unconsumed bytes.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Room for at least `min` more bytes, to read into; then call
    /// [`InBuf::advance`] with the count read.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.data.len() - self.end < min && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.data.len() - self.end < min {
            self.data.resize(self.end + min, 0);
        }
        &mut self.data[self.end..]
    }

    /// Marks `n` bytes of the spare room as filled.
    pub fn advance(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_consumes_compacts_and_grows() {
        let mut b = InBuf::new(8);
        b.spare(4)[..6].copy_from_slice(b"abcdef");
        b.advance(6);
        assert_eq!(b.filled(), b"abcdef");
        b.consume(4);
        assert_eq!(b.filled(), b"ef");
        // Needs 6 more: compacts to the front (8 - 2 = 6 free).
        assert_eq!(b.spare(6).len(), 6);
        assert_eq!(b.filled(), b"ef");
        // Needs 10 more: grows.
        assert!(b.spare(10).len() >= 10);
        b.consume(2);
        assert!(b.filled().is_empty());
        b.advance(3);
        b.clear();
        assert!(b.filled().is_empty());
    }
}
