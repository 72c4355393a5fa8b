//! ASA state from the CLI: `show access-list NAME` hit counts and
//! `show interface ip brief` status, in the formats Cisco documents (ASA
//! command reference, "show access-list" and "show interface ip brief").
//!
//! ```text
//! access-list RPA-acme-web-1a2b3c4d-9f; 3 elements; name hash: 0x3c9bb1a3
//! access-list RPA-acme-web-1a2b3c4d-9f line 1 remark web tier
//! access-list RPA-acme-web-1a2b3c4d-9f line 2 extended permit tcp any4 host 192.0.2.10 eq www (hitcnt=12) 0x5fc0d6d2
//!   access-list RPA-acme-web-1a2b3c4d-9f line 2 extended permit tcp host 10.0.0.1 ... (hitcnt=7) 0x11aa
//! ```
//! Indented lines are an object-group entry expanded; the unindented line
//! carries the entry's total, so only unindented lines are counted.

use super::{AceCounter, InterfaceState, StateError};

const PLATFORM: &str = "asa";

/// The ACE counters of `show access-list` output (any number of lists).
///
/// # Errors
/// [`StateError`] naming the line when an entry's line number or hit count
/// does not parse.
pub fn parse_access_list(output: &str) -> Result<Vec<AceCounter>, StateError> {
    let mut out = Vec::new();
    for (i, raw) in output.lines().enumerate() {
        if raw.starts_with(char::is_whitespace) || !raw.starts_with("access-list ") {
            continue;
        }
        let mut words = raw.split_whitespace().skip(1);
        let (Some(list), Some("line"), Some(number)) = (words.next(), words.next(), words.next())
        else {
            // The list header (`…; 3 elements; …`) and other summaries.
            continue;
        };
        let at = || format!("line {}: {raw}", i + 1);
        let entry = number
            .parse()
            .map_err(|_| StateError::new(PLATFORM, at(), "entry number is not a number"))?;
        // Remarks carry no counter.
        let Some(start) = raw.find("(hitcnt=") else {
            continue;
        };
        let rest = &raw[start + "(hitcnt=".len()..];
        let matches = rest
            .split_once(')')
            .and_then(|(n, _)| n.parse().ok())
            .ok_or_else(|| StateError::new(PLATFORM, at(), "hitcnt is not a number"))?;
        out.push(AceCounter {
            list: list.to_owned(),
            entry,
            matches,
        });
    }
    Ok(out)
}

/// Interface status from `show interface ip brief`:
/// `Interface  IP-Address  OK?  Method  Status  Protocol`; an interface is
/// up when its protocol is `up`.
///
/// # Errors
/// [`StateError`] when the header is missing or a row is short.
pub fn parse_interface_brief(output: &str) -> Result<Vec<InterfaceState>, StateError> {
    let mut lines = output
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header = lines
        .by_ref()
        .find(|(_, l)| l.trim_start().starts_with("Interface"))
        .ok_or_else(|| StateError::new(PLATFORM, "header", "no `Interface … Protocol` header"))?;
    if !header.1.contains("Protocol") {
        return Err(StateError::new(PLATFORM, "header", "no Protocol column"));
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // Status may be two words (`administratively down`).
        if cols.len() < 6 {
            return Err(StateError::new(
                PLATFORM,
                format!("line {}: {line}", i + 1),
                "expected Interface, IP-Address, OK?, Method, Status, Protocol",
            ));
        }
        out.push(InterfaceState {
            name: cols[0].to_owned(),
            up: cols[cols.len() - 1] == "up",
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACL: &str = "access-list cached ACL log flows: total 0, denied 0 (deny-flow-max 4096)
            alert-interval 300
access-list RPA-acme-web-1a2b3c4d-9f; 3 elements; name hash: 0x3c9bb1a3
access-list RPA-acme-web-1a2b3c4d-9f line 1 remark web tier
access-list RPA-acme-web-1a2b3c4d-9f line 2 extended permit tcp object-group RPG-x host 192.0.2.10 eq www (hitcnt=12) 0x5fc0d6d2
  access-list RPA-acme-web-1a2b3c4d-9f line 2 extended permit tcp host 10.0.0.1 host 192.0.2.10 eq www (hitcnt=7) 0x11aa22bb
  access-list RPA-acme-web-1a2b3c4d-9f line 2 extended permit tcp host 10.0.0.2 host 192.0.2.10 eq www (hitcnt=5) 0x11aa22bc
access-list RPA-acme-web-1a2b3c4d-9f line 3 extended deny ip any4 any4 (hitcnt=3) 0x7b2f1c11
";

    #[test]
    fn counts_unindented_entries_and_skips_remarks_and_headers() {
        let got = parse_access_list(ACL).unwrap();
        let name = "RPA-acme-web-1a2b3c4d-9f";
        assert_eq!(
            got,
            vec![
                AceCounter {
                    list: name.into(),
                    entry: 2,
                    matches: 12
                },
                AceCounter {
                    list: name.into(),
                    entry: 3,
                    matches: 3
                },
            ]
        );
    }

    #[test]
    fn garbled_counters_are_errors_naming_the_line() {
        let e =
            parse_access_list("access-list X line 2 extended permit ip any4 any4 (hitcnt=1x) 0x1")
                .unwrap_err();
        assert!(e.path.starts_with("line 1:"), "{e}");
        let e = parse_access_list("access-list X line two extended permit ip any any (hitcnt=1)")
            .unwrap_err();
        assert!(e.message.contains("entry number"), "{e}");
    }

    #[test]
    fn interface_brief_reads_protocol_column() {
        let out =
            "Interface                  IP-Address      OK? Method Status                Protocol
GigabitEthernet0/0         203.0.113.1     YES CONFIG up                    up
GigabitEthernet0/1         10.10.0.1       YES CONFIG administratively down down
Management0/0              unassigned      YES unset  down                  down
";
        let got = parse_interface_brief(out).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got[0].up && !got[1].up && !got[2].up);
        assert_eq!(got[1].name, "GigabitEthernet0/1");
        assert!(parse_interface_brief("garbage").is_err());
        assert!(
            parse_interface_brief(
                "Interface IP-Address OK? Method Status Protocol\nGi0/0 1.1.1.1 YES\n"
            )
            .is_err()
        );
    }
}
