//! Transaction history as the API returns it: paged, summarised unless the
//! caller asks for `full`, and bounded in bytes by construction.
//!
//! One change of a 20,000-rule firewall renders to megabytes; a page of
//! such transactions would pass any transport limit. So every page stops
//! before its encoded size reaches [`RESPONSE_BUDGET`], and a single
//! transaction larger than the budget has its biggest contents replaced by
//! a summary. Tenant scoping is applied while scanning, so every page is
//! scoped and full pages of a tenant-role caller are still full.

use std::ops::ControlFlow;

use prost::Message as _;
use rampart_proto::v1 as pb;
use tonic::Status;

use super::{convert, store_status, txn_visible};
use crate::{
    auth::Caller,
    store::{self, Store, TxnRecord},
};

/// Encoded bytes one answer may carry. Clients decode at most 4 MiB by
/// default (tonic, grpc-go, grpcio); the rest is headroom for framing.
pub const RESPONSE_BUDGET: usize = 3 * 1024 * 1024;
/// Transactions per page when the request names no limit.
const DEFAULT_PAGE: usize = 50;
/// The most transactions one page holds, whatever the request asks.
const MAX_PAGE: usize = 1000;
/// Contents up to this size are short enough to keep in a summary.
const SUMMARY_KEEPS: usize = 256;

/// One page of the caller's history.
///
/// # Errors
/// InvalidArgument for a page token that is not one; store failures.
pub fn list(
    store: &Store,
    caller: &Caller,
    req: &pb::ListTransactionsRequest,
) -> Result<pb::ListTransactionsResponse, Status> {
    let limit = match req.limit {
        0 => DEFAULT_PAGE,
        n => usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
    };
    let before = page_start(&req.page_token)?;
    let service = (!req.service.is_empty()).then_some(req.service.as_str());
    let may = caller.tenant_filter();
    let mut page = Page::default();
    store
        .scan_txns_back(before, |t| {
            if !txn_visible(caller, &t) || !touches(&t, service) {
                return ControlFlow::Continue(());
            }
            if page.transactions.len() >= limit {
                page.more = true;
                return ControlFlow::Break(());
            }
            let mut shown = convert::txn_to_pb(&t, &may);
            if req.full {
                bound(&mut shown, RESPONSE_BUDGET);
            } else {
                summarise(&mut shown, SUMMARY_KEEPS);
            }
            page.push(shown, t.id)
        })
        .map_err(store_status)?;
    Ok(page.into_response())
}

/// A page being filled.
#[derive(Default)]
struct Page {
    transactions: Vec<pb::Transaction>,
    bytes: usize,
    last_id: Option<u64>,
    more: bool,
}

impl Page {
    /// Adds a transaction unless it would take the page over the budget
    /// (a page always holds at least one, itself bounded).
    fn push(&mut self, t: pb::Transaction, id: u64) -> ControlFlow<()> {
        // Field tag and length prefix of the repeated entry.
        let size = t.encoded_len() + 8;
        if !self.transactions.is_empty() && self.bytes + size > RESPONSE_BUDGET {
            self.more = true;
            return ControlFlow::Break(());
        }
        self.bytes += size;
        self.transactions.push(t);
        self.last_id = Some(id);
        ControlFlow::Continue(())
    }

    fn into_response(self) -> pb::ListTransactionsResponse {
        let next_page_token = match (self.more, self.last_id) {
            (true, Some(id)) => store::txn_display_id(id),
            _ => String::new(),
        };
        pb::ListTransactionsResponse {
            transactions: self.transactions,
            next_page_token,
        }
    }
}

/// The page token is the id of the last transaction of the previous page;
/// the next page starts below it.
fn page_start(token: &str) -> Result<Option<u64>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    store::parse_txn_id(token).map(Some).ok_or_else(|| {
        Status::invalid_argument(format!(
            "page_token: {token:?} is not a token this server handed out (next_page_token of \
             a previous page)"
        ))
    })
}

/// Whether `t` touched `service` (`tenant/name` or a bare name).
fn touches(t: &TxnRecord, service: Option<&str>) -> bool {
    service.is_none_or(|s| {
        t.services
            .iter()
            .any(|x| x == s || x.rsplit_once('/').is_some_and(|(_, n)| n == s))
    })
}

/// Replaces every content longer than `keep` bytes with its summary.
pub fn summarise(t: &mut pb::Transaction, keep: usize) {
    let how = format!("`rampartctl get transaction {}` shows it", t.id);
    for c in &mut t.changes {
        if c.content.len() > keep {
            c.content = summary_line(&c.content, &how);
        }
    }
}

/// Makes one transaction fit `budget` encoded bytes: the largest contents
/// are summarised first, until it fits.
pub fn bound(t: &mut pb::Transaction, budget: usize) {
    let mut order: Vec<usize> = (0..t.changes.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(t.changes[i].content.len()));
    let how = format!("too large for one answer of at most {budget} bytes");
    for i in order {
        if t.encoded_len() <= budget {
            return;
        }
        let c = &mut t.changes[i];
        c.content = summary_line(&c.content, &how);
    }
}

fn summary_line(content: &str, how: &str) -> String {
    let lines = content.lines().count();
    format!(
        "<summarised: {} bytes, {lines} lines; {how}>",
        content.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(contents: &[usize]) -> pb::Transaction {
        pb::Transaction {
            id: "txn-7".into(),
            changes: contents
                .iter()
                .enumerate()
                .map(|(i, n)| pb::DeviceChange {
                    target: format!("dev{i}"),
                    content: "x\n".repeat(n / 2),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn summaries_keep_short_contents_and_name_the_way_to_the_rest() {
        let mut t = txn(&[100, 10_000]);
        summarise(&mut t, 256);
        assert_eq!(t.changes[0].content.len(), 100);
        assert_eq!(
            t.changes[1].content,
            "<summarised: 10000 bytes, 5000 lines; `rampartctl get transaction txn-7` shows it>"
        );
    }

    #[test]
    fn bound_summarises_the_largest_first_until_it_fits() {
        let mut t = txn(&[600_000, 2_000_000, 2_000_000, 1_000]);
        bound(&mut t, RESPONSE_BUDGET);
        assert!(t.encoded_len() <= RESPONSE_BUDGET, "{}", t.encoded_len());
        assert_eq!(t.changes[0].content.len(), 600_000, "kept: it fits");
        assert_eq!(t.changes[3].content.len(), 1_000);
        let summarised = t
            .changes
            .iter()
            .filter(|c| c.content.starts_with("<summarised"))
            .count();
        assert_eq!(summarised, 1, "one 2 MB change is enough to fit");
    }

    #[test]
    fn a_page_never_passes_the_budget_and_keeps_at_least_one() {
        let mut page = Page::default();
        let big = txn(&[2_000_000]);
        assert!(page.push(big.clone(), 9).is_continue());
        assert!(page.push(big.clone(), 8).is_break());
        assert!(page.more);
        let resp = page.into_response();
        assert_eq!(resp.transactions.len(), 1);
        assert_eq!(resp.next_page_token, "txn-9");
        assert!(resp.encoded_len() <= RESPONSE_BUDGET);
    }

    #[test]
    fn page_tokens_are_checked() {
        assert_eq!(page_start("").unwrap(), None);
        assert_eq!(page_start("txn-12").unwrap(), Some(12));
        let e = page_start("12; drop").unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("page_token:"), "{}", e.message());
    }
}
