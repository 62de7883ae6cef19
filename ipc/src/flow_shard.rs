//! Which proxy shard a flow id belongs to.
//!
//! With `proxy.processes = N`, every shard hands out its own flow ids
//! (`spp_proxy::flow` has the whole scheme) and stamps its shard index
//! into bits [`SHARD_SHIFT`].. of each, so flow ids are unique across
//! shards and a worker can tell, from a flow id alone, on which shard's
//! pair a deferred reply (`spp_reply` after `spp_process` returned) must
//! go. Shard 0 leaves the bits 0, so one proxy's ids look as before.

/// Most proxy shards a service may run.
pub const MAX_SHARDS: usize = 64;
/// Bits of the shard index in a flow id.
pub const SHARD_BITS: u32 = 6;
/// Bit position of the shard index in a flow id (below the 16-bit epoch).
pub const SHARD_SHIFT: u32 = 42;
const SHARD_MASK: u64 = (1 << SHARD_BITS) - 1;
const _: () = assert!(MAX_SHARDS == 1 << SHARD_BITS);
const _: () = assert!(SHARD_SHIFT + SHARD_BITS == 48);

/// The shard index stamped in `flow`.
pub fn shard_of(flow: u64) -> u16 {
    // The mask keeps 6 bits: the value always fits.
    ((flow >> SHARD_SHIFT) & SHARD_MASK) as u16
}

/// `flow` with its shard bits set to `shard` (taken modulo [`MAX_SHARDS`]).
pub fn with_shard(flow: u64, shard: u16) -> u64 {
    (flow & !(SHARD_MASK << SHARD_SHIFT)) | ((u64::from(shard) & SHARD_MASK) << SHARD_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_round_trips_and_leaves_the_other_bits() {
        let flow = 0xABCD_0000_0000_1234u64;
        assert_eq!(shard_of(flow), 0);
        for shard in [0u16, 1, 7, 63] {
            let stamped = with_shard(flow, shard);
            assert_eq!(shard_of(stamped), shard);
            assert_eq!(with_shard(stamped, 0), flow);
        }
    }
}
