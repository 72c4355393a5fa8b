//! The agent certificate authority: signs agents' CSRs (their keys never
//! leave the host) and issues the agent port's server certificate. It is the
//! management CA of `tls.rs` (same `ca.crt`/`ca.key`), so one trust root
//! covers the whole deployment; agent certificates are told apart by their
//! `rampart://agent/<id>` SAN and by the registry's fingerprints.

use std::{path::Path, time::Duration};

use rcgen::{
    CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::FleetError;
use crate::tls::{CertificateAuthority, Usage};

/// The CA, able to sign CSRs.
pub struct AgentCa {
    ca: CertificateAuthority,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for AgentCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCa").finish_non_exhaustive()
    }
}

/// A certificate signed for an agent.
#[derive(Debug, Clone)]
pub struct AgentCert {
    pub cert_pem: String,
    /// SHA-256 of the DER, hex: what the registry accepts.
    pub fingerprint: String,
    /// Expiry, Unix seconds.
    pub not_after: i64,
}

/// SHA-256 hex of bytes.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> FleetError + '_ {
    move |e| FleetError::Csr {
        message: format!("{what}: {e}"),
    }
}

impl AgentCa {
    /// Loads (or creates) the CA in `dir` (`<data_dir>/tls`).
    ///
    /// # Errors
    /// [`FleetError`] when the files are unusable.
    pub fn load_or_create(dir: &Path) -> Result<Self, FleetError> {
        let (ca, _) = CertificateAuthority::load_or_create(dir)?;
        let key_path = dir.join("ca.key");
        let key_pem =
            zeroize::Zeroizing::new(std::fs::read_to_string(&key_path).map_err(|source| {
                FleetError::Io {
                    path: key_path.clone(),
                    source,
                }
            })?);
        let key = KeyPair::from_pem(&key_pem).map_err(cert_err("CA key"))?;
        let issuer =
            Issuer::from_ca_cert_pem(ca.cert_pem(), key).map_err(cert_err("CA certificate"))?;
        Ok(Self { ca, issuer })
    }

    /// The CA certificate agents trust.
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// The agent port's server certificate and key, PEM.
    ///
    /// # Errors
    /// [`FleetError`] on an unusable SAN.
    pub fn server_identity(&self, extra_sans: &[String]) -> Result<(String, String), FleetError> {
        let mut sans: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(str::to_owned).into();
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let h = h.trim().to_owned();
            if !h.is_empty() && !sans.contains(&h) {
                sans.push(h);
            }
        }
        sans.extend(extra_sans.iter().cloned());
        let c = self.ca.issue(
            "rampartd-agents",
            &sans,
            Usage::Server,
            Duration::from_secs(365 * 86_400),
        )?;
        Ok((c.cert_pem, c.key_pem.to_string()))
    }

    /// Signs `csr_pem` for agent `id`: the subject and SANs are the
    /// controller's choice (CN = id, `rampart://agent/<id>`, the host name
    /// when it is a valid DNS name), never the CSR's; only its public key
    /// is used.
    ///
    /// # Errors
    /// [`FleetError::Csr`] when the CSR does not parse or verify.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        id: &str,
        hostname: &str,
        ttl: Duration,
    ) -> Result<AgentCert, FleetError> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| FleetError::Csr {
                message: format!("csr_pem does not parse as a PKCS#10 request: {e}"),
            })?;
        let p = &mut csr.params;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, id);
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "rampart-agent");
        let mut sans = vec![SanType::URI(
            format!("rampart://agent/{id}")
                .try_into()
                .map_err(cert_err("agent SAN"))?,
        )];
        if let Ok(dns) = hostname.to_owned().try_into() {
            sans.push(SanType::DnsName(dns));
        }
        p.subject_alt_names = sans;
        p.is_ca = IsCa::ExplicitNoCa;
        p.use_authority_key_identifier_extension = true;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::minutes(5);
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 4);
        p.not_after = now + time::Duration::seconds(secs);
        let not_after = p.not_after.unix_timestamp();
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(cert_err("signing the agent certificate"))?;
        Ok(AgentCert {
            fingerprint: sha256_hex(cert.der()),
            cert_pem: cert.pem(),
            not_after,
        })
    }
}

/// The agent id of a verified client certificate: its
/// `rampart://agent/<id>` SAN. Certificates without one (management users
/// of the same CA) name no agent.
#[must_use]
pub fn agent_id_of(der: &[u8]) -> Option<String> {
    use x509_parser::{extensions::GeneralName, prelude::FromDer as _};
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(u) => u.strip_prefix("rampart://agent/").map(str::to_owned),
        _ => None,
    })
}
