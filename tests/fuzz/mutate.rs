//! Byte-level and token-level mutations, AFL-style, with a small deterministic PRNG.

/// SplitMix64: deterministic from its seed, so a failing run replays.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Tokens worth inserting: JSON structure, edge numbers, field names and frame types
/// of the protocol, base64url characters, invite prefixes.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"false",
    b"0",
    b"-1",
    b"1e999",
    b"-0",
    b"0.5",
    b"18446744073709551615",
    b"18446744073709551616",
    b"9007199254740993",
    b"\"type\"",
    b"\"id\"",
    b"\"to\"",
    b"\"body\"",
    b"\"claim\"",
    b"\"rid\"",
    b"\"v\"",
    b"\"token\"",
    b"\"code\"",
    b"\"send\"",
    b"\"login\"",
    b"\"resume\"",
    b"\"ack\"",
    b"\"error\"",
    b"\"deliver\"",
    b"\"welcome\"",
    b"A",
    b"_",
    b"-",
    b"=",
    b"AAAAAAAAAAAAAAAAAAAAAA",
    b"ar1.",
    b"ar2.",
    b"ar255.",
    b"\xff",
    b"\xc3\xa9",
];

/// A copy of `base` with 1 to 4 random mutations (`other` for splicing).
pub(crate) fn mutate(base: &[u8], other: &[u8], rng: &mut SplitMix, max: usize) -> Vec<u8> {
    {
        let mut b = base.to_vec();
        for _ in 0..=rng.below(4) {
            let len = b.len();
            match rng.below(9) {
                0 if len > 0 => {
                    let i = rng.below(len);
                    b[i] ^= 1 << rng.below(8);
                }
                1 if len > 0 => {
                    let i = rng.below(len);
                    b[i] = rng.next() as u8;
                }
                2 | 3 => {
                    let t = TOKENS[rng.below(TOKENS.len())];
                    let i = rng.below(len + 1);
                    b.splice(i..i, t.iter().copied());
                }
                4 if len > 0 => {
                    let i = rng.below(len);
                    let n = 1 + rng.below((len - i).min(32));
                    b.drain(i..i + n);
                }
                5 if len > 0 => {
                    let i = rng.below(len);
                    let n = 1 + rng.below((len - i).min(64));
                    let copy = b[i..i + n].to_vec();
                    let at = rng.below(len + 1);
                    b.splice(at..at, copy);
                }
                6 if len > 0 => b.truncate(rng.below(len)),
                7 if !other.is_empty() => {
                    // Splice: our head, the other input's tail.
                    let cut = rng.below(len + 1);
                    let from = rng.below(other.len());
                    b.truncate(cut);
                    b.extend_from_slice(&other[from..]);
                }
                _ => {
                    // Replace a token with another of the same list (a value swap).
                    let t = TOKENS[rng.below(TOKENS.len())];
                    if let Some(i) = (len > 0).then(|| rng.below(len)) {
                        let end = (i + t.len()).min(len);
                        b.splice(i..end, t.iter().copied());
                    }
                }
            }
        }
        b.truncate(max);
        b
    }
}
