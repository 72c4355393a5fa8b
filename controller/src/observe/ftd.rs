//! FTD state from the FDM REST API (v6 and later):
//!
//! - `GET /api/fdm/v6/policy/accesspolicies/{policyId}/operational/hitcounts
//!   ?filter=fetchZeroHitCount:true&offset=N&limit=M` — one item per
//!   deployed access rule: `hitCount`, `firstHitTimeStamp`,
//!   `lastHitTimeStamp` and `rule` (`accessruleinfo`: `id`, `name`,
//!   `ruleId`). Without `fetchZeroHitCount:true` rules never hit are left
//!   out, which would read as a rule that disappeared. On a real FDM the
//!   counters are the management database's copy; `PUT` on the same path
//!   refreshes it from the device first.
//! - `GET /api/fdm/v6/devices/default/interfaces?offset=N&limit=M` —
//!   `physicalinterface` items with `hardwareName` and `linkState`
//!   (`UP`/`DOWN`).
//!
//! Counters are keyed by the rule's `name` (the `{base}-{sequence}` name
//! Rampart rendered, which is how hits are attributed to a service) and its
//! FDM `ruleId`.

use super::reply::{self, At, Page};
use super::{AceCounter, InterfaceState, StateError};

const PLATFORM: &str = "ftd";

/// The hit-count API's path for one access policy, with the filter that
/// keeps rules never hit (so a counter at zero is not a missing rule).
#[must_use]
pub fn hitcounts_path(policy_id: &str) -> String {
    format!("policy/accesspolicies/{policy_id}/operational/hitcounts?filter=fetchZeroHitCount:true")
}

/// One page of the hit-count reply.
///
/// # Errors
/// [`StateError`] naming the JSON pointer of a missing or ill-typed field.
pub fn parse_hitcounts(body: &str) -> Result<Page<AceCounter>, StateError> {
    let value = reply::parse(PLATFORM, body)?;
    let root = At::root(PLATFORM, &value);
    let mut items = Vec::new();
    for item in root.get("items")?.entries()? {
        let rule = item.get("rule")?;
        items.push(AceCounter {
            list: rule.str("name")?.to_owned(),
            entry: rule.get("ruleId")?.count()?,
            matches: item.get("hitCount")?.count()?,
        });
    }
    Ok(Page {
        items,
        next_offset: reply::next_offset(&root)?,
    })
}

/// One page of the interface list: up when `linkState` is `UP`.
///
/// # Errors
/// [`StateError`] naming the JSON pointer of a missing field or a
/// `linkState` other than `UP`/`DOWN`.
pub fn parse_interfaces(body: &str) -> Result<Page<InterfaceState>, StateError> {
    let value = reply::parse(PLATFORM, body)?;
    let root = At::root(PLATFORM, &value);
    let mut items = Vec::new();
    for item in root.get("items")?.entries()? {
        let link = item.get("linkState")?;
        let up = match link.text()? {
            "UP" => true,
            "DOWN" => false,
            other => return Err(link.error(format!("{other:?} is not UP or DOWN"))),
        };
        items.push(InterfaceState {
            name: item.str("hardwareName")?.to_owned(),
            up,
        });
    }
    Ok(Page {
        items,
        next_offset: reply::next_offset(&root)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from testbed/sims/fdm_sim.py by the sims tests
    // (`RAMPART_CAPTURE_FIXTURES=1 testbed/sims/run-tests.sh -k fdm_state`).
    const HITS: &str = include_str!("fixtures/fdm-hitcounts.json");
    const HITS_RESET: &str = include_str!("fixtures/fdm-hitcounts-reset.json");
    const INTERFACES: &str = include_str!("fixtures/fdm-interfaces.json");

    fn by_name(page: &Page<AceCounter>) -> Vec<(&str, u64)> {
        page.items
            .iter()
            .map(|c| (c.list.as_str(), c.matches))
            .collect()
    }

    #[test]
    fn hit_counts_per_rule_name_and_rule_id() {
        let page = parse_hitcounts(HITS).unwrap();
        assert_eq!(
            by_name(&page),
            [
                ("RPF-acme-web-1a2b3c4d-10", 15),
                ("RPF-acme-web-1a2b3c4d-20", 0)
            ]
        );
        assert_eq!(page.items[1].entry, page.items[0].entry + 1);
        assert_eq!(page.next_offset, None);
    }

    #[test]
    fn counter_reset_reads_as_zero_for_the_same_rules() {
        let before = parse_hitcounts(HITS).unwrap();
        let after = parse_hitcounts(HITS_RESET).unwrap();
        let ids = |p: &Page<AceCounter>| p.items.iter().map(|c| c.entry).collect::<Vec<_>>();
        assert_eq!(ids(&before), ids(&after));
        assert!(after.items.iter().all(|c| c.matches == 0));
    }

    #[test]
    fn missing_and_garbled_fields_name_their_pointer() {
        let mut doc: serde_json::Value = serde_json::from_str(HITS).unwrap();
        doc["items"][1]["rule"]
            .as_object_mut()
            .unwrap()
            .remove("ruleId");
        let e = parse_hitcounts(&doc.to_string()).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("/items/1/rule/ruleId", "missing")
        );
        doc["items"][0]["hitCount"] = "many".into();
        let e = parse_hitcounts(&doc.to_string()).unwrap_err();
        assert_eq!(e.path, "/items/0/hitCount");
        let e = parse_hitcounts(&HITS[..HITS.len() / 2]).unwrap_err();
        assert!(e.message.starts_with("not JSON"), "{e}");
        let e = parse_hitcounts("{\"items\": {}}").unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("/items", "expected an array")
        );
    }

    #[test]
    fn interfaces_up_by_link_state_and_paging() {
        let page = parse_interfaces(INTERFACES).unwrap();
        let got: Vec<(&str, bool)> = page.items.iter().map(|i| (i.name.as_str(), i.up)).collect();
        assert_eq!(
            got,
            [
                ("GigabitEthernet0/0", true),
                ("GigabitEthernet0/1", false),
                ("GigabitEthernet0/2", true),
                ("Management0/0", true)
            ]
        );
        let mut doc: serde_json::Value = serde_json::from_str(INTERFACES).unwrap();
        doc["paging"]["limit"] = 2.into();
        doc["paging"]["offset"] = 0.into();
        assert_eq!(
            parse_interfaces(&doc.to_string()).unwrap().next_offset,
            Some(2)
        );
        doc["items"][2]["linkState"] = "FLAPPING".into();
        let e = parse_interfaces(&doc.to_string()).unwrap_err();
        assert_eq!(e.path, "/items/2/linkState");
        doc["items"][3].as_object_mut().unwrap().remove("linkState");
        doc["items"][2]["linkState"] = "UP".into();
        let e = parse_interfaces(&doc.to_string()).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("/items/3/linkState", "missing")
        );
    }
}
