//! The two integer helpers every L5 layer shares: [`mix64`] (a bijective
//! 64-bit mix, for hashing and for deriving one random number from
//! another) and [`scale`] (a random number scaled into a range). Plain
//! functions, no state.

/// splitmix64's finaliser: a bijective 64-bit mix.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `random` scaled to 0..n (multiply-shift: no division, no bias worth
/// the name).
#[inline]
pub fn scale(random: u64, n: u64) -> u64 {
    ((u128::from(random) * u128::from(n)) >> 64) as u64
}
