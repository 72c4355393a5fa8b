//! ASA state from the CLI: `show access-list NAME` hit counts and
//! `show interface ip brief` status, in the formats Cisco documents (ASA
//! command reference, "show access-list" and "show interface ip brief").
//!
//! ```text
//! access-list RPA-acme-web-1a2b3c4d-9f; 3 elements; name hash: 0x9f79b738
//! access-list RPA-acme-web-1a2b3c4d-9f line 1 remark web tier
//! access-list RPA-acme-web-1a2b3c4d-9f line 2 extended permit tcp object-group RPG-x host 192.0.2.10 eq www 0x22590c83
//!   access-list RPA-acme-web-1a2b3c4d-9f line 2 extended permit tcp host 10.0.0.1 host 192.0.2.10 eq www (hitcnt=7) 0x6fc2a5d0
//!   access-list RPA-acme-web-1a2b3c4d-9f line 2 extended permit tcp 10.0.1.0 255.255.255.0 host 192.0.2.10 eq www (hitcnt=5) 0xcd439005
//! access-list RPA-acme-web-1a2b3c4d-9f line 3 extended deny ip any4 any4 (hitcnt=3) 0x3a0b3fa9
//! ```
//! Indented lines are the elements an object-group entry expands to. In
//! Cisco's documented output the entry line itself then carries no counter
//! and its hit count is the sum of its elements; some releases print a
//! total on the entry line too, which is then taken as is (never both, so
//! nothing is counted twice).

use super::{AceCounter, InterfaceState, StateError};

const PLATFORM: &str = "asa";

/// The ACE counters of `show access-list` output (any number of lists).
///
/// # Errors
/// [`StateError`] naming the line when an entry's line number or hit count
/// does not parse, or an indented element has no entry line above it.
pub fn parse_access_list(output: &str) -> Result<Vec<AceCounter>, StateError> {
    let mut out: Vec<AceCounter> = Vec::new();
    // Whether the last entry line had no counter of its own, so its
    // indented elements are summed into it.
    let mut summing = false;
    for (i, raw) in output.lines().enumerate() {
        let at = || format!("line {}: {raw}", i + 1);
        let Some(EntryLine {
            list,
            entry,
            hitcnt,
        }) = entry_line(raw.trim_start(), at)?
        else {
            continue;
        };
        if raw.starts_with(char::is_whitespace) {
            let last = out
                .last_mut()
                .filter(|c| summing && c.list == list && c.entry == entry);
            match (last, hitcnt) {
                (Some(c), Some(n)) => c.matches = c.matches.saturating_add(n),
                (None, _) if summing => {
                    return Err(StateError::new(PLATFORM, at(), "element outside its entry"));
                }
                _ => {}
            }
            continue;
        }
        summing = hitcnt.is_none() && !is_remark(raw);
        if summing || hitcnt.is_some() {
            out.push(AceCounter {
                list: list.to_owned(),
                entry,
                matches: hitcnt.unwrap_or(0),
            });
        }
    }
    Ok(out)
}

fn is_remark(line: &str) -> bool {
    line.split_whitespace().nth(4) == Some("remark")
}

/// An entry or element line of `show access-list`.
struct EntryLine<'a> {
    list: &'a str,
    entry: u64,
    /// `None` when the line carries no `(hitcnt=…)`.
    hitcnt: Option<u64>,
}

/// `access-list NAME line N … [(hitcnt=C)] …` (leading blanks removed);
/// `None` for headers and other summaries. `at` names the line in errors
/// (built only then: most lines parse).
fn entry_line<'a>(
    line: &'a str,
    at: impl Fn() -> String,
) -> Result<Option<EntryLine<'a>>, StateError> {
    let mut words = line.split_whitespace();
    let (Some("access-list"), Some(list), Some("line"), Some(number)) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        // The list header (`…; 3 elements; …`) and the log-flow summary.
        return Ok(None);
    };
    let entry = number
        .parse()
        .map_err(|_| StateError::new(PLATFORM, at(), "entry number is not a number"))?;
    let hitcnt = match line.find("(hitcnt=") {
        None => None,
        Some(start) => Some(
            line[start + "(hitcnt=".len()..]
                .split_once(')')
                .and_then(|(n, _)| n.parse().ok())
                .ok_or_else(|| StateError::new(PLATFORM, at(), "hitcnt is not a number"))?,
        ),
    };
    Ok(Some(EntryLine {
        list,
        entry,
        hitcnt,
    }))
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

    /// Captured from testbed/sims/asa_sim.py by the sims tests
    /// (`RAMPART_CAPTURE_FIXTURES=1 testbed/sims/run-tests.sh -k asa_state`).
    const SIM_ACL: &str = include_str!("fixtures/asa-show-access-list.txt");
    const SIM_ACL_CLEARED: &str = include_str!("fixtures/asa-show-access-list-cleared.txt");
    const SIM_BRIEF: &str = include_str!("fixtures/asa-show-interface-ip-brief.txt");

    fn counter(entry: u64, matches: u64) -> AceCounter {
        AceCounter {
            list: "RPA-acme-web-1a2b3c4d-9f".into(),
            entry,
            matches,
        }
    }

    #[test]
    fn object_group_entry_without_own_counter_sums_its_elements() {
        // Cisco's documented form: the entry line has no hitcnt, its two
        // elements have 7 and 5.
        let got = parse_access_list(SIM_ACL).unwrap();
        assert_eq!(got, vec![counter(2, 12), counter(3, 3)]);
    }

    #[test]
    fn cleared_counters_read_as_zero_and_renumbered_entries_follow() {
        // After `clear access-list … counters` and an entry inserted at
        // line 1: every counter is back to zero (a reset the collector must
        // not read as negative traffic) and the group entry is now line 3.
        let got = parse_access_list(SIM_ACL_CLEARED).unwrap();
        assert_eq!(got, vec![counter(1, 0), counter(3, 0), counter(4, 0)]);
    }

    #[test]
    fn element_without_its_entry_is_an_error() {
        let out = "access-list A line 2 extended permit ip object-group G any4 0x1
  access-list B line 7 extended permit ip host 10.0.0.1 any4 (hitcnt=1) 0x2
";
        let e = parse_access_list(out).unwrap_err();
        assert!(e.path.starts_with("line 2:"), "{e}");
        assert!(e.message.contains("outside its entry"), "{e}");
    }

    #[test]
    fn simulator_interface_brief() {
        let got = parse_interface_brief(SIM_BRIEF).unwrap();
        let up: Vec<(&str, bool)> = got.iter().map(|i| (i.name.as_str(), i.up)).collect();
        assert_eq!(
            up,
            [
                ("GigabitEthernet0/0", true),
                ("GigabitEthernet0/1", false),
                ("GigabitEthernet0/2", false),
                ("Management0/0", true)
            ]
        );
    }
}
