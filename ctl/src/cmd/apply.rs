//! `rampartctl apply -f FILE [--dry-run]`.

use std::path::PathBuf;

use clap::Args;
use rampart_proto::v1::{self as pb, service_manager_client::ServiceManagerClient};

use crate::{connect::Connection, error::Failure, input::read_input, output::Output};

/// Validate, compile and store a service spec (YAML or JSON; `-` for stdin).
#[derive(Debug, Args)]
pub struct Apply {
    /// The spec file; documents over 4 MiB are refused.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Show what would be configured, store nothing.
    #[arg(long)]
    dry_run: bool,
}

impl Apply {
    /// Sends the document; an oversized one is refused before connecting.
    pub async fn run(self, conn: &Connection, out: &Output) -> Result<(), Failure> {
        let (document, source_name) = read_input(&self.file)?;
        let channel = conn.connect().await?;
        let format = if self.file.extension().is_some_and(|e| e == "json") {
            pb::SpecFormat::Json
        } else {
            pb::SpecFormat::Unspecified
        };
        let req = pb::ApplyServiceRequest {
            document,
            format: format as i32,
            source_name,
            dry_run: self.dry_run,
        };
        let resp = ServiceManagerClient::new(channel)
            .apply_service(req)
            .await?
            .into_inner();
        out.apply(&resp);
        Ok(())
    }
}
