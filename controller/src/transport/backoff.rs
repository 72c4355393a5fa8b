//! The one retry backoff of the southbound side: exponential with "equal
//! jitter" (between half and all of `base * 2^n`, capped), so clients that
//! failed together do not retry together.

use std::time::Duration;

/// The wait before retry `n` (0-based).
#[must_use]
pub fn delay(base: Duration, max: Duration, n: u32) -> Duration {
    let full = base.saturating_mul(1u32 << n.min(16)).min(max);
    let half = full / 2;
    half + full.mul_f64(jitter() * 0.5)
}

/// A number in [0, 1) that differs between calls and processes (no RNG
/// dependency needed for jitter).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    // 53 random bits make an exactly representable fraction.
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn delays_grow_with_jitter_and_are_capped() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..8 {
            let d = super::delay(base, max, n);
            let full = Duration::from_millis(100 * (1 << n)).min(max);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?}");
            seen.insert(d);
        }
        assert!(seen.len() > 4, "jittered: {seen:?}");
    }
}
