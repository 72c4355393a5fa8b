//! Joining the fleet: one-time enrollment tokens, enrollment by CSR,
//! certificate authentication of every agent call, renewal and revocation.

use std::{collections::BTreeMap, time::Duration};

use rampart_proto::v1 as pb;
use tonic::Status;

use super::{Fleet, ca, lock};
use crate::store::{
    fleet::{AgentRecord, TokenRecord, TokenUse},
    now_unix_ms,
};

impl Fleet {
    /// A new one-time enrollment token, valid `ttl`; only its hash is kept.
    ///
    /// # Errors
    /// [`FleetError`] on bad labels or a storage failure.
    pub fn create_token(
        &self,
        ttl: Duration,
        labels: BTreeMap<String, String>,
    ) -> Result<(String, i64), Status> {
        for (k, v) in &labels {
            if !valid_label(k) || !valid_label(v) {
                return Err(Status::invalid_argument(format!(
                    "label {k:?}={v:?}: keys and values are 1-63 characters of [A-Za-z0-9-_./]"
                )));
            }
        }
        let token = format!("rmpe_{}", random_hex(24));
        let expires_ms =
            now_unix_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2));
        self.0
            .store
            .put_enroll_token(
                &token_hash(&token),
                &TokenRecord {
                    expires_ms,
                    labels,
                    used_by: None,
                },
            )
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok((token, expires_ms))
    }

    /// Enrolls an agent: consumes the token, signs the CSR.
    ///
    /// # Errors
    /// `Unauthenticated` for an unknown, used or expired token (each named),
    /// `InvalidArgument` for a bad host name, label or CSR.
    pub fn enroll(&self, req: pb::EnrollRequest) -> Result<pb::EnrollResponse, Status> {
        let m = &self.0.metrics;
        if req.hostname.is_empty()
            || req.hostname.len() > 253
            || !req
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            m.refused.inc();
            return Err(Status::invalid_argument(format!(
                "hostname {:?}: 1-253 characters of [A-Za-z0-9-._]",
                req.hostname
            )));
        }
        for (k, v) in &req.labels {
            if !valid_label(k) || !valid_label(v) {
                m.refused.inc();
                return Err(Status::invalid_argument(format!(
                    "label {k:?}={v:?}: keys and values are 1-63 characters of [A-Za-z0-9-_./]"
                )));
            }
        }
        let id = format!("{}-{}", req.hostname, random_hex(4));
        let used = self
            .0
            .store
            .consume_enroll_token(&token_hash(&req.token), &id, now_unix_ms())
            .map_err(|e| Status::internal(e.to_string()))?;
        let token = match used {
            TokenUse::Consumed(t) => t,
            TokenUse::Unknown => {
                m.refused.inc();
                return Err(Status::unauthenticated("enrollment token is unknown"));
            }
            TokenUse::Reused(by) => {
                m.refused.inc();
                tracing::warn!(
                    hostname = req.hostname,
                    used_by = by,
                    "enrollment token reused"
                );
                return Err(Status::unauthenticated(
                    "enrollment token was already used (tokens are single-use)",
                ));
            }
            TokenUse::Expired => {
                m.refused.inc();
                return Err(Status::unauthenticated("enrollment token has expired"));
            }
        };
        let cert = self
            .0
            .ca
            .sign_csr(
                &req.csr_pem,
                &id,
                &req.hostname,
                Duration::from_secs(self.0.cfg.cert_ttl_s),
            )
            .inspect_err(|_| m.refused.inc())?;
        // Token labels are the operator's; the agent's own cannot override them.
        let mut labels: BTreeMap<String, String> = req.labels.into_iter().collect();
        labels.extend(token.labels);
        let rec = AgentRecord {
            id: id.clone(),
            hostname: req.hostname,
            labels,
            cert_fingerprints: vec![cert.fingerprint],
            cert_not_after: cert.not_after,
            enrolled_ms: now_unix_ms(),
            ..AgentRecord::default()
        };
        {
            let _g = lock(&self.0.registry);
            self.0
                .store
                .put_agent(&rec)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        m.enrollments.inc();
        tracing::info!(agent = id, hostname = rec.hostname, labels = ?rec.labels, "agent enrolled");
        Ok(pb::EnrollResponse {
            agent_id: id,
            cert_pem: cert.cert_pem,
            ca_pem: self.0.ca.cert_pem().to_owned(),
            not_after: cert.not_after,
        })
    }

    /// The agent a verified client certificate belongs to, if the registry
    /// accepts that very certificate.
    ///
    /// # Errors
    /// `Unauthenticated` without a certificate or for an unknown one,
    /// `PermissionDenied` for a revoked agent.
    pub fn authenticate(&self, der: Option<&[u8]>) -> Result<AgentRecord, Status> {
        let refuse = |s: Status| {
            self.0.metrics.refused.inc();
            Err(s)
        };
        let Some(der) = der else {
            return refuse(Status::unauthenticated(
                "agent sessions need the client certificate issued at enrollment",
            ));
        };
        let Some(id) = ca::agent_id_of(der) else {
            return refuse(Status::unauthenticated(
                "client certificate is not an agent certificate (no rampart://agent/ SAN)",
            ));
        };
        let rec = match self.0.store.agent(&id) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return refuse(Status::unauthenticated(format!(
                    "agent {id} is not enrolled"
                )));
            }
            Err(e) => return Err(Status::internal(e.to_string())),
        };
        if rec.revoked {
            return refuse(Status::permission_denied(format!("agent {id} is revoked")));
        }
        let fp = ca::sha256_hex(der);
        if !rec.cert_fingerprints.contains(&fp) {
            return refuse(Status::unauthenticated(format!(
                "certificate of agent {id} has been replaced or was never issued"
            )));
        }
        Ok(rec)
    }

    /// Re-issues the certificate of `rec` for a new CSR; the current one
    /// stays valid until the agent connects with the new one.
    ///
    /// # Errors
    /// `InvalidArgument` on a bad CSR.
    pub fn renew(&self, rec: &AgentRecord, csr_pem: &str) -> Result<pb::EnrollResponse, Status> {
        let cert = self.0.ca.sign_csr(
            csr_pem,
            &rec.id,
            &rec.hostname,
            Duration::from_secs(self.0.cfg.cert_ttl_s),
        )?;
        self.update(&rec.id, |r| {
            let newest = r.cert_fingerprints.last().cloned();
            r.cert_fingerprints = newest.into_iter().collect();
            r.cert_fingerprints.push(cert.fingerprint.clone());
            r.cert_not_after = cert.not_after;
        })?;
        tracing::info!(agent = rec.id, "agent certificate renewed");
        Ok(pb::EnrollResponse {
            agent_id: rec.id.clone(),
            cert_pem: cert.cert_pem,
            ca_pem: self.0.ca.cert_pem().to_owned(),
            not_after: cert.not_after,
        })
    }

    /// Revokes `id`: refused from now on, its live session closed.
    ///
    /// # Errors
    /// `Internal` on a storage failure.
    pub fn revoke(&self, id: &str) -> Result<bool, Status> {
        let found = self.update(id, |r| r.revoked = true)?.is_some();
        if let Some(s) = lock(&self.0.sessions).remove(id) {
            let _ = s.tx.try_send(Err(Status::permission_denied(format!(
                "agent {id} is revoked"
            ))));
        }
        lock(&self.0.counters).remove(id);
        if found {
            tracing::warn!(agent = id, "agent revoked");
        }
        Ok(found)
    }
}

fn token_hash(token: &str) -> String {
    ca::sha256_hex(token.as_bytes())
}

fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom as _;
    let mut b = vec![0u8; bytes];
    // The system RNG does not fail on Linux; zeros would only weaken a token
    // that is also single-use and short-lived.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    hex::encode(b)
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}
