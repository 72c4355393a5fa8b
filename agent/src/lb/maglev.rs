//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4) with
//! weights.
//!
//! Each backend gets a permutation of the table's slots from two hashes of
//! its identity (`offset = h1 % M`, `skip = h2 % (M - 1) + 1`; `M` prime, so
//! every `skip` walks all slots). Slots are filled in rounds: in each round a
//! backend of weight `w` claims its next `w` unclaimed preferred slots, so
//! shares follow the weights and a backend's slots depend mostly on its own
//! permutation: removing one of `N` backends moves about `1/N` of the slots.
//!
//! The table is built here, in userspace, and written to the inactive half
//! of the VIP's ring map before the VIP flips generation (see `maps`).

use thiserror::Error;

/// Default table size: a prime, enough for 655 backends at 100 slots each.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;
/// Minimum slots per backend (the "at least 100x").
pub const SLOTS_PER_BACKEND: u32 = 100;

/// Why a table cannot be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MaglevError {
    /// The configured size is not prime.
    #[error("maglev table size {size} is not prime")]
    NotPrime {
        /// Configured size.
        size: u32,
    },
    /// The configured size gives a backend fewer than 100 slots.
    #[error("maglev table size {size} is below {SLOTS_PER_BACKEND} x {backends} backends")]
    TooSmall {
        /// Configured size.
        size: u32,
        /// Backends with non-zero weight.
        backends: usize,
    },
    /// A weight is too large to share a table fairly.
    #[error("backend {index} has weight {weight}; the maximum is 10000")]
    Weight {
        /// Position in the backend list.
        index: usize,
        /// Its weight.
        weight: u32,
    },
}

/// One backend as Maglev sees it: a stable identity and a weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Identity hashed into the permutation (e.g. `"10.0.0.1:80"`): the same
    /// backend keeps the same preferences across rebuilds.
    pub name: String,
    /// Relative share; 0 takes no slots.
    pub weight: u32,
}

/// True if `n` is prime (trial division; sizes are at most a few million).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3u32;
    while u64::from(d) * u64::from(d) <= u64::from(n) {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// Smallest prime >= `n`.
pub fn next_prime(n: u32) -> u32 {
    let mut c = n.max(2);
    while !is_prime(c) {
        c += 1;
    }
    c
}

/// The table size for `backends` members when `configured` is 0 (automatic:
/// the default, or the next prime >= 100 x backends), else `configured`
/// after checking it.
pub fn table_size(configured: u32, backends: usize) -> Result<u32, MaglevError> {
    let need = u32::try_from(backends)
        .unwrap_or(u32::MAX)
        .saturating_mul(SLOTS_PER_BACKEND);
    if configured == 0 {
        return Ok(if need <= DEFAULT_TABLE_SIZE {
            DEFAULT_TABLE_SIZE
        } else {
            next_prime(need)
        });
    }
    if !is_prime(configured) {
        return Err(MaglevError::NotPrime { size: configured });
    }
    if configured < need {
        return Err(MaglevError::TooSmall {
            size: configured,
            backends,
        });
    }
    Ok(configured)
}

fn fnv1a(seed: u64, data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // murmur3 fmix64: spreads FNV's weak low bits.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Builds the lookup table: `size` slots, each holding an index into
/// `members`. Empty if no member has a weight. `size` must come from
/// [`table_size`].
pub fn build(members: &[Member], size: u32) -> Result<Vec<u32>, MaglevError> {
    for (index, m) in members.iter().enumerate() {
        if m.weight > 10_000 {
            return Err(MaglevError::Weight {
                index,
                weight: m.weight,
            });
        }
    }
    let live: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].weight > 0)
        .collect();
    if live.is_empty() {
        return Ok(Vec::new());
    }
    let m = u64::from(size);
    // (offset, skip, next position in the permutation) per live member.
    let mut perm: Vec<(u64, u64, u64)> = live
        .iter()
        .map(|&i| {
            let name = members[i].name.as_bytes();
            let offset = fnv1a(0x6f66_6673_6574, name) % m;
            let skip = fnv1a(0x0000_736b_6970, name) % (m - 1) + 1;
            (offset, skip, 0)
        })
        .collect();
    let mut table = vec![u32::MAX; size as usize];
    let mut filled = 0u64;
    'rounds: loop {
        for (k, &i) in live.iter().enumerate() {
            for _ in 0..members[i].weight {
                let (offset, skip, next) = &mut perm[k];
                let mut slot = (*offset + *next * *skip) % m;
                while table[slot as usize] != u32::MAX {
                    *next += 1;
                    slot = (*offset + *next * *skip) % m;
                }
                table[slot as usize] = i as u32;
                *next += 1;
                filled += 1;
                if filled == m {
                    break 'rounds;
                }
            }
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                name: format!("10.0.{}.{}:80", i / 250, i % 250 + 1),
                weight: 1,
            })
            .collect()
    }

    fn shares(table: &[u32], n: usize) -> Vec<f64> {
        let mut c = vec![0usize; n];
        for &s in table {
            c[s as usize] += 1;
        }
        c.iter().map(|&x| x as f64 / table.len() as f64).collect()
    }

    #[test]
    fn primes_and_sizes() {
        assert!(is_prime(65_537));
        assert!(!is_prime(65_535));
        assert!(!is_prime(1));
        assert_eq!(next_prime(100_000), 100_003);
        assert_eq!(table_size(0, 3), Ok(DEFAULT_TABLE_SIZE));
        assert_eq!(table_size(0, 1000), Ok(100_003));
        assert_eq!(
            table_size(1000, 3),
            Err(MaglevError::NotPrime { size: 1000 })
        );
        assert_eq!(
            table_size(251, 3),
            Err(MaglevError::TooSmall {
                size: 251,
                backends: 3
            })
        );
        assert_eq!(table_size(307, 3), Ok(307));
    }

    #[test]
    fn every_slot_filled_and_equal_weights_balanced() {
        let m = members(7);
        let t = build(&m, 65_537).unwrap();
        assert_eq!(t.len(), 65_537);
        assert!(t.iter().all(|&s| (s as usize) < 7));
        for s in shares(&t, 7) {
            // Maglev gives every equal-weight backend floor or ceil(M/N).
            assert!((s - 1.0 / 7.0).abs() < 0.0005, "share {s}");
        }
    }

    #[test]
    fn weights_are_followed() {
        let mut m = members(3);
        m[0].weight = 1;
        m[1].weight = 2;
        m[2].weight = 3;
        let t = build(&m, 65_537).unwrap();
        let s = shares(&t, 3);
        for (i, want) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0].iter().enumerate() {
            assert!(
                (s[i] - want).abs() < 0.001,
                "backend {i}: {} vs {want}",
                s[i]
            );
        }
        // Weight 0 takes nothing.
        m[1].weight = 0;
        let t = build(&m, 65_537).unwrap();
        assert!(t.iter().all(|&s| s != 1));
    }

    #[test]
    fn deterministic() {
        let m = members(10);
        assert_eq!(build(&m, 1009).unwrap(), build(&m, 1009).unwrap());
    }

    /// The Maglev property: removing one of 10 backends remaps its own ~1/10
    /// of the slots and few others; adding it back restores the table.
    #[test]
    fn minimal_disruption() {
        let all = members(10);
        let before = build(&all, 65_537).unwrap();
        let removed = 4usize;
        let rest: Vec<Member> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != removed)
            .map(|(_, m)| m.clone())
            .collect();
        let after = build(&rest, 65_537).unwrap();
        let name = |t: &[u32], list: &[Member], s: usize| list[t[s] as usize].name.clone();
        let mut changed = 0usize;
        let mut changed_other = 0usize;
        for s in 0..before.len() {
            let a = name(&before, &all, s);
            let b = name(&after, &rest, s);
            if a != b {
                changed += 1;
                if a != all[removed].name {
                    changed_other += 1;
                }
            }
        }
        let frac = changed as f64 / before.len() as f64;
        let other = changed_other as f64 / before.len() as f64;
        assert!(frac <= 0.1 + 0.03, "remapped fraction {frac}");
        assert!(
            other <= 0.03,
            "slots of surviving backends remapped: {other}"
        );
        assert_eq!(build(&all, 65_537).unwrap(), before);
    }

    #[test]
    fn bad_weight_named() {
        let mut m = members(2);
        m[1].weight = 20_000;
        assert_eq!(
            build(&m, 307),
            Err(MaglevError::Weight {
                index: 1,
                weight: 20_000
            })
        );
        assert!(build(&[], 307).unwrap().is_empty());
    }
}
