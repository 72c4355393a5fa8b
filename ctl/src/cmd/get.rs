//! `rampartctl get services|devices|transactions [NAME]`.

use clap::Subcommand;
use rampart_proto::v1::{
    self as pb, device_manager_client::DeviceManagerClient,
    fleet_manager_client::FleetManagerClient, service_manager_client::ServiceManagerClient,
    transaction_manager_client::TransactionManagerClient,
};

use crate::{
    connect::{Channel, Connection},
    error::Failure,
    input::parse_label,
    output::Output,
};

/// Show services, devices or transactions.
#[derive(Debug, Subcommand)]
pub enum Get {
    /// All services, or one by name.
    #[command(alias = "service")]
    Services {
        /// Service name.
        name: Option<String>,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this kind (Firewall, Router, ...).
        #[arg(long)]
        kind: Option<String>,
    },
    /// All devices, or one by name.
    #[command(alias = "device")]
    Devices {
        /// Device name.
        name: Option<String>,
        /// Label selector `key=value` (repeatable).
        #[arg(long = "selector", short = 'l', value_parser = parse_label)]
        selector: Vec<(String, String)>,
    },
    /// Recent transactions (one page, changes summarised), or one by id.
    #[command(alias = "transaction", alias = "txn")]
    Transactions {
        /// Transaction id (`txn-N`).
        id: Option<String>,
        /// Only transactions touching this service.
        #[arg(long)]
        service: Option<String>,
        /// At most this many per page (the server also stops a page before
        /// it grows past its size budget).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after a previous page (the token it printed).
        #[arg(long)]
        page_token: Option<String>,
        /// Whole change contents instead of summaries.
        #[arg(long)]
        full: bool,
    },
}

impl Get {
    /// Fetches and prints.
    pub async fn run(self, conn: &Connection, out: &Output) -> Result<(), Failure> {
        let channel = conn.connect().await?;
        match self {
            Get::Services {
                name: Some(name),
                tenant,
                ..
            } => service(channel, name, tenant.unwrap_or_default(), out).await,
            Get::Services {
                name: None,
                tenant,
                kind,
            } => {
                let req = pb::ListServicesRequest {
                    tenant: tenant.unwrap_or_default(),
                    kind: kind.unwrap_or_default(),
                };
                let resp = ServiceManagerClient::new(channel)
                    .list_services(req)
                    .await?;
                out.services(&resp.into_inner().services);
                Ok(())
            }
            Get::Devices {
                name: Some(name), ..
            } => {
                let d = DeviceManagerClient::new(channel)
                    .get_device(pb::GetDeviceRequest { name })
                    .await?;
                out.devices(&[d.into_inner()]);
                Ok(())
            }
            Get::Devices {
                name: None,
                selector,
            } => {
                let req = pb::ListDevicesRequest {
                    selector: selector.into_iter().collect(),
                };
                let resp = DeviceManagerClient::new(channel).list_devices(req).await?;
                out.devices(&resp.into_inner().devices);
                Ok(())
            }
            Get::Transactions { id: Some(id), .. } => {
                let t = TransactionManagerClient::new(channel)
                    .get_transaction(pb::GetTransactionRequest { id })
                    .await?;
                out.transaction(&t.into_inner());
                Ok(())
            }
            Get::Transactions {
                id: None,
                service,
                limit,
                page_token,
                full,
            } => {
                let req = pb::ListTransactionsRequest {
                    limit,
                    service: service.unwrap_or_default(),
                    page_token: page_token.unwrap_or_default(),
                    full,
                };
                let resp = TransactionManagerClient::new(channel)
                    .list_transactions(req)
                    .await?
                    .into_inner();
                out.transactions(&resp.transactions);
                if !resp.next_page_token.is_empty() {
                    eprintln!(
                        "more: rampartctl get transactions --page-token {}",
                        resp.next_page_token
                    );
                }
                Ok(())
            }
        }
    }
}

/// One service, then its hits per rule from host agents (empty for
/// device-only services).
async fn service(
    channel: Channel,
    name: String,
    tenant: String,
    out: &Output,
) -> Result<(), Failure> {
    let s = ServiceManagerClient::new(channel.clone())
        .get_service(pb::GetServiceRequest { name, tenant })
        .await?
        .into_inner();
    out.service(&s);
    let hits = FleetManagerClient::new(channel)
        .get_service_counters(pb::GetServiceCountersRequest {
            tenant: s.tenant.clone(),
            service: s.name.clone(),
        })
        .await?
        .into_inner();
    out.rule_hits(&hits.rules);
    Ok(())
}
