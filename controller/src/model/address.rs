//! What the devices module's address pattern cannot say: ports in
//! 1-65535, IPv4 octets up to 255, IPv6 addresses that parse, and DNS
//! labels of at most 63 characters not starting or ending with `-`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Checks a management address (`host`, `host:port`, an IPv6 address,
/// `[ipv6]:port` or an http(s) URL); the error says what is wrong in words
/// that name the offending part.
///
/// # Errors
/// The reason the address cannot be used.
pub fn check(address: &str) -> Result<(), String> {
    let authority = match address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
    {
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None => address,
    };
    let (host, port) = split(authority)?;
    if let Some(port) = port {
        check_port(port)?;
    }
    match host {
        Host::V6(h) => h
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("{h:?} is not an IPv6 address")),
        Host::Name(h) => check_name(h),
    }
}

enum Host<'a> {
    V6(&'a str),
    Name(&'a str),
}

fn split(authority: &str) -> Result<(Host<'_>, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{authority:?}: '[' without ']'"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{authority:?}: expected ':port' after ']'"))?,
            ),
        };
        return Ok((Host::V6(host), port));
    }
    match authority.matches(':').count() {
        0 => Ok((Host::Name(authority), None)),
        1 => {
            let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
            Ok((Host::Name(host), Some(port)))
        }
        // Several colons and no brackets: a bare IPv6 address, no port.
        _ => Ok((Host::V6(authority), None)),
    }
}

fn check_port(port: &str) -> Result<(), String> {
    match port.parse::<u32>() {
        Ok(1..=65_535) => Ok(()),
        _ => Err(format!("port {port:?} is not in 1-65535")),
    }
}

fn check_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    // All digits and dots reads as an IPv4 address, never as a name.
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| format!("{host:?} is not an IPv4 address"));
    }
    if host.len() > 253 {
        return Err(format!(
            "host name of {} characters (at most 253)",
            host.len()
        ));
    }
    for label in host.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "host name {host:?}: each dot-separated label has 1 to 63 characters"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "host name {host:?}: label {label:?} starts or ends with '-'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn usable_addresses_pass() {
        for ok in [
            "10.10.0.21",
            "10.10.0.21:830",
            "csr1.lab.example",
            "csr1:22",
            "2001:db8::5",
            "[2001:db8::5]:830",
            "https://vmanage.example:8443/dataservice",
            "http://[::1]:8080",
        ] {
            check(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn bad_addresses_say_which_part_is_wrong() {
        for (bad, says) in [
            ("10.10.0.21:99999", "port \"99999\" is not in 1-65535"),
            ("10.10.0.21:0", "port \"0\" is not in 1-65535"),
            ("https://mx.example:70000/api", "port \"70000\""),
            ("10.10.0.300", "\"10.10.0.300\" is not an IPv4 address"),
            ("[2001:db8::zz]:830", "is not an IPv6 address"),
            ("2001:db8:::1", "is not an IPv6 address"),
            ("-csr1.lab", "starts or ends with '-'"),
            ("[2001:db8::5]830", "expected ':port' after ']'"),
        ] {
            let e = check(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
