//! Deterministic device-side names for service-owned objects.
//!
//! Scheme (documented for operators who read device configs):
//! `RP<family>-<tenant>-<service>-<hash>` where
//! - `<family>` is `4` (extended IPv4 ACL) or `6` (IPv6 ACL), or another
//!   short tag for other object kinds;
//! - `<tenant>` and `<service>` are the spec's names with every character
//!   outside `[A-Za-z0-9_.]` replaced by `_`, each cut to 20 characters;
//! - `<hash>` is the low 32 bits of FNV-1a-64 over `tenant`, a NUL byte and
//!   `service` (the raw names), as 8 lower-case hex digits.
//!
//! The readable part lets an operator find the service behind an ACL; the
//! hash keeps names unique when sanitising or cutting made two services look
//! alike. Names are at most 4 + 20 + 1 + 20 + 1 + 8 = 54 characters, start
//! with a letter (IOS-XE's `ext-acl-type` pattern `[a-zA-Z].*`) and contain
//! no spaces or characters the IOS-XE CLI treats specially.

/// Longest piece kept from the tenant or service name.
const PART_MAX: usize = 20;

/// The device name of an object of kind `tag` owned by `tenant`/`service`.
#[must_use]
pub fn object_name(tag: &str, tenant: &str, service: &str) -> String {
    format!(
        "RP{tag}-{}-{}-{:08x}",
        sanitise(tenant),
        sanitise(service),
        fnv_tag(tenant, service)
    )
}

fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(PART_MAX)
        .collect()
}

fn fnv_tag(tenant: &str, service: &str) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in tenant
        .bytes()
        .chain(std::iter::once(0))
        .chain(service.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    // Keeping the low 32 bits is the documented scheme.
    (h & 0xffff_ffff) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_bounded_and_distinct() {
        let a = object_name("4", "acme", "web-tier");
        assert_eq!(a, object_name("4", "acme", "web-tier"));
        assert!(a.starts_with("RP4-acme-web_tier-"), "{a}");
        let long = object_name("6", &"t".repeat(80), &"s ?x".repeat(30));
        assert!(long.len() <= 54, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
            "{long}"
        );
        // Same sanitised form, different raw names: the hash keeps them apart.
        assert_ne!(object_name("4", "a b", "x"), object_name("4", "a?b", "x"));
        assert_ne!(object_name("4", "ab", "c"), object_name("4", "a", "bc"));
    }
}
