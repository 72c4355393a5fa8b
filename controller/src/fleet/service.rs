//! The agent port: `AgentEnrollment` (token, no client certificate) and
//! `AgentService` (mutual TLS), on their own TLS listener.

use std::{future::Future, pin::Pin, time::Duration};

use rampart_proto::v1::{
    self as pb, agent_enrollment_server::AgentEnrollment,
    agent_enrollment_server::AgentEnrollmentServer, agent_service_server::AgentService,
    agent_service_server::AgentServiceServer,
};
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt as _, wrappers::ReceiverStream, wrappers::TcpListenerStream};
use tonic::{
    Request, Response, Status, Streaming,
    transport::{Certificate, Identity, Server, ServerTlsConfig},
};

use super::{Fleet, FleetError};

/// How long an agent has to say Hello after opening its session.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

fn peer_der<T>(req: &Request<T>) -> Option<Vec<u8>> {
    req.peer_certs()
        .and_then(|c| c.first().map(|d| d.as_ref().to_vec()))
}

/// `AgentEnrollment` over a [`Fleet`].
#[derive(Debug, Clone)]
pub struct EnrollmentSvc(pub Fleet);

#[tonic::async_trait]
impl AgentEnrollment for EnrollmentSvc {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let f = self.0.clone();
        let req = request.into_inner();
        tokio::task::spawn_blocking(move || f.enroll(req))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map(Response::new)
    }
}

/// `AgentService` over a [`Fleet`].
#[derive(Debug, Clone)]
pub struct AgentSvc(pub Fleet);

type OutStream = Pin<Box<dyn Stream<Item = Result<pb::ControllerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentSvc {
    type SessionStream = OutStream;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let der = peer_der(&request);
        let rec = self.0.authenticate(der.as_deref())?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.next())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10 s"))?;
        let hello = match first {
            Some(Ok(pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Hello(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be Hello",
                ));
            }
        };
        let fleet = self.0.clone();
        let (conn, rx) = {
            let (f, r, h) = (fleet.clone(), rec.clone(), hello);
            tokio::task::spawn_blocking(move || f.open_session(&r, &h))
                .await
                .map_err(|e| Status::internal(e.to_string()))??
        };
        let id = rec.id.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = fleet.closed() => None,
                    m = inbound.next() => m,
                };
                match next {
                    Some(Ok(msg)) => {
                        if !fleet.is_current(&id, conn) {
                            break;
                        }
                        fleet.on_message(&id, conn, msg);
                    }
                    Some(Err(e)) => {
                        tracing::debug!(agent = id, conn, error = %e, "agent stream error");
                        break;
                    }
                    None => break,
                }
            }
            fleet.close_session(&id, conn);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let der = peer_der(&request);
        let rec = self.0.authenticate(der.as_deref())?;
        let f = self.0.clone();
        let csr = request.into_inner().csr_pem;
        tokio::task::spawn_blocking(move || f.renew(&rec, &csr))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map(Response::new)
    }
}

/// Serves the agent port on `listener` until `shutdown`: TLS with the
/// fleet CA, client certificates requested but optional (enrollment).
///
/// # Errors
/// [`FleetError`] when TLS set-up or the server fails.
pub async fn serve(
    fleet: Fleet,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), FleetError> {
    let (cert, key) = fleet.ca().server_identity(&fleet.config().extra_sans)?;
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(fleet.ca().cert_pem()))
        .client_auth_optional(true);
    tracing::info!(addr = ?listener.local_addr().ok(), "agent port listening");
    Server::builder()
        .tls_config(tls)?
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(AgentEnrollmentServer::new(EnrollmentSvc(fleet.clone())))
        .add_service(AgentServiceServer::new(AgentSvc(fleet)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
