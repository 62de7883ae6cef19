//! Poison requests: a request whose bytes were inside `spp_process` when a
//! worker died, [`POISON_DEATHS`] times, is refused by the proxy instead of
//! killing another worker.
//!
//! The worker stores the `seq` of the request it hands to `spp_process` in
//! its pair header (`PairHeader::in_process_seq`, 0 while it is not inside
//! the call): one store next to `in_process_since_ms`, nothing hashed.
//! When the worker is gone the proxy finds that request in the request
//! ring (a request in process is never released, so never overwritten)
//! and hashes its bytes with [`request_hash`], if that `seq` was in flight
//! to the dead worker (`pair::ProxyEnd::died_holding`): a value a
//! predecessor left is never booked again, however late the proxy looks.
//! Only while the table refuses something does the proxy hash incoming
//! requests, the same bytes the plugin saw (the request as framed by
//! `spp_input`, passed to `spp_process` in place). The hash is a
//! word-at-a-time multiply-rotate (FxHash's, ~3 GB/s); it is not keyed,
//! and needs not be: a collision refuses a request only after two workers
//! died holding its twin.
//!
//! The proxy's table holds at most [`POISON_TABLE_ENTRIES`] hashes (the
//! oldest evicted), each forgotten [`POISON_TTL_MS`] after its last death.

/// Deaths with a request in process after which the proxy refuses it.
pub const POISON_DEATHS: u32 = 2;
/// Hashes the proxy remembers at most (per service).
pub const POISON_TABLE_ENTRIES: usize = 64;
/// A hash is forgotten this long after its last death (10 minutes).
pub const POISON_TTL_MS: u64 = 10 * 60 * 1000;

/// FxHash's multiplier.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The hash of `req`, never 0 (0 means "no request in process").
pub fn request_hash(req: &[u8]) -> u64 {
    let mix = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(SEED);
    let mut h = mix(0, req.len() as u64);
    let mut words = req.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = mix(h, u64::from_le_bytes(b));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut b = [0u8; 8];
        b[..tail.len()].copy_from_slice(tail);
        h = mix(h, u64::from_le_bytes(b));
    }
    // Fold the high bits down: the multiply leaves the low ones weak.
    (h ^ (h >> 32)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_non_zero_stable_and_tell_bytes_apart() {
        let a = request_hash(b"\0\0\0\x05abort");
        assert_ne!(a, 0);
        assert_eq!(a, request_hash(b"\0\0\0\x05abort"));
        assert_ne!(a, request_hash(b"\0\0\0\x05abors"));
        assert_ne!(request_hash(b""), request_hash(b"\0"));
        assert_ne!(request_hash(&[0; 8]), request_hash(&[0; 16]));
        assert_ne!(request_hash(&[0; 7]), 0);
    }
}
