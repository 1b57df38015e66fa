// SPDX-License-Identifier: GPL-2.0

//! SipHash (Aumasson and Bernstein), the keyed hash that spreads the
//! handshake table's keys ([`siphash24`]) and the UDP flow table's
//! ([`sip13`]) over their buckets, under a key drawn at load: a client
//! cannot aim its SYNs or announcements at one bucket. Pure Rust, compiled
//! into the module and tested on the host (`crates/toa-core`).

/// The state after `key` (`key[0]` is the key's first eight bytes, little
/// endian).
#[inline(always)]
fn init(key: &[u64; 2]) -> [u64; 4] {
    [
        key[0] ^ 0x736f_6d65_7073_6575,
        key[1] ^ 0x646f_7261_6e64_6f6d,
        key[0] ^ 0x6c79_6765_6e65_7261,
        key[1] ^ 0x7465_6462_7974_6573,
    ]
}

/// One SipRound.
#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-2-4 of `data` under `key` (the reference algorithm).
pub fn siphash24(key: &[u64; 2], data: &[u8]) -> u64 {
    let mut v = init(key);
    // Words read byte by byte, not with `copy_from_slice`: the kernel's
    // `core` keeps that out of line, tens of instructions a word.
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let &[b0, b1, b2, b3, b4, b5, b6, b7] = c else {
            continue;
        };
        let m = u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    for (l, t) in last.iter_mut().zip(chunks.remainder()) {
        *l = *t;
    }
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// SipHash-1-3 of `words` (as the little-endian bytes of each word) under
/// `key`: the flow table's hash, on the UDP hooks' path.
pub fn sip13(key: &[u64; 2], words: &[u64]) -> u64 {
    let mut v = init(key);
    for &m in words {
        v[3] ^= m;
        round(&mut v);
        v[0] ^= m;
    }
    let last = ((words.len() as u64).wrapping_mul(8) & 0xff) << 56;
    v[3] ^= last;
    round(&mut v);
    v[0] ^= last;
    v[2] ^= 0xff;
    for _ in 0..3 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_reference_vectors() {
        // From the SipHash paper (appendix A) and its reference vectors:
        // key 00 01 .. 0f, messages 00 01 .. (n-1).
        let k = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        let msg: Vec<u8> = (0..64).collect();
        assert_eq!(siphash24(&k, &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(&k, &msg[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(&k, &msg[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(&k, &msg[..15]), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash24(&k, &msg[..63]), 0x958a_324c_eb06_4572);
    }

    /// SipHash-c-d over bytes, the reference way.
    fn siphash_bytes(c: usize, d: usize, k: &[u64; 2], data: &[u8]) -> u64 {
        let mut v = [
            k[0] ^ 0x736f_6d65_7073_6575,
            k[1] ^ 0x646f_7261_6e64_6f6d,
            k[0] ^ 0x6c79_6765_6e65_7261,
            k[1] ^ 0x7465_6462_7974_6573,
        ];
        let round = |v: &mut [u64; 4]| {
            v[0] = v[0].wrapping_add(v[1]);
            v[1] = v[1].rotate_left(13) ^ v[0];
            v[0] = v[0].rotate_left(32);
            v[2] = v[2].wrapping_add(v[3]);
            v[3] = v[3].rotate_left(16) ^ v[2];
            v[0] = v[0].wrapping_add(v[3]);
            v[3] = v[3].rotate_left(21) ^ v[0];
            v[2] = v[2].wrapping_add(v[1]);
            v[1] = v[1].rotate_left(17) ^ v[2];
            v[2] = v[2].rotate_left(32);
        };
        let mut blocks: Vec<u64> = data
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let tail = data.chunks_exact(8).remainder();
        let mut last = [0u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        last[7] = data.len() as u8;
        blocks.push(u64::from_le_bytes(last));
        for m in blocks {
            v[3] ^= m;
            for _ in 0..c {
                round(&mut v);
            }
            v[0] ^= m;
        }
        v[2] ^= 0xff;
        for _ in 0..d {
            round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    #[test]
    fn sip13_is_siphash_1_3() {
        // The reference implementation checked against the paper's vectors
        // (SipHash-2-4), then run with 1 and 3 rounds against sip13.
        let k = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        let msg: Vec<u8> = (0..64).collect();
        assert_eq!(siphash_bytes(2, 4, &k, &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash_bytes(2, 4, &k, &msg[..15]), 0xa129_ca61_49be_45e5);
        for n in 0..8 {
            let words: Vec<u64> = (0..n as u64)
                .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect();
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            assert_eq!(sip13(&k, &words), siphash_bytes(1, 3, &k, &bytes));
        }
    }
}
