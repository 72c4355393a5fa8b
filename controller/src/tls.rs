//! TLS material of the management API: a private certificate authority, the
//! server certificate it issues, and the identity in client certificates.
//!
//! On first start without a configured certificate, rampartd creates the CA
//! and a server certificate in `<data_dir>/tls/` (keys 0600), so TLS is on
//! by default without any set-up; rampartctl trusts `ca.crt`. The CA keeps
//! its key: it will also sign agent certificates (agent enrollment).

use std::{
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use zeroize::Zeroizing;

/// TLS set-up failures, with the file involved.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Certificate or key generation/parsing failed.
    #[error("{what}: {source}")]
    Cert {
        /// What was being done.
        what: String,
        #[source]
        source: rcgen::Error,
    },
    /// A client certificate that names no usable user.
    #[error("client certificate: {message}")]
    Identity {
        /// What is wrong.
        message: String,
    },
}

/// What an issued certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (rampartd's API).
    Server,
    /// A TLS client (users, agents).
    Client,
    /// Both (agents that also serve).
    ServerAndClient,
}

/// A certificate and its private key, PEM.
pub struct IssuedCert {
    pub cert_pem: String,
    /// Private key (zeroed on drop).
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

/// A certificate authority that can issue server and client certificates.
pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

fn cert_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> TlsError {
    let what = what.into();
    move |source| TlsError::Cert { what, source }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

fn validity(ttl: Duration) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    // Tolerate clocks a little behind ours.
    let before = now - time::Duration::minutes(5);
    let after = now + time::Duration::seconds(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2));
    (before, after)
}

/// A SAN from a string: an IP address, a URI (`scheme://...`) or a DNS name.
fn san(s: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let ia5 = s
        .to_owned()
        .try_into()
        .map_err(cert_err(format!("SAN {s:?}")))?;
    Ok(if s.contains("://") {
        SanType::URI(ia5)
    } else {
        SanType::DnsName(ia5)
    })
}

impl CertificateAuthority {
    /// A new CA with a fresh ECDSA P-256 key, valid ten years.
    ///
    /// # Errors
    /// [`TlsError::Cert`] when key generation or signing fails.
    pub fn generate(common_name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(cert_err("CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Rampart");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = validity(Duration::from_secs(10 * 365 * 86_400));
        let cert = params
            .self_signed(&key)
            .map_err(cert_err("CA certificate"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its PEM certificate and key.
    ///
    /// # Errors
    /// [`TlsError::Cert`] when either does not parse.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(cert_err("CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(cert_err("CA certificate"))?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// Loads `ca.crt`/`ca.key` from `dir`, creating them when absent.
    /// Returns the CA and whether it was created now.
    ///
    /// # Errors
    /// [`TlsError`] when the files exist but are unusable, or cannot be written.
    pub fn load_or_create(dir: &Path) -> Result<(Self, bool), TlsError> {
        let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        if cert_path.exists() && key_path.exists() {
            let cert = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
            let key =
                Zeroizing::new(std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?);
            return Ok((Self::from_pem(&cert, &key)?, false));
        }
        create_private_dir(dir)?;
        let ca = Self::generate("Rampart management CA")?;
        write_private(&key_path, ca.issuer.key().serialize_pem().as_bytes())?;
        write_public(&cert_path, ca.cert_pem.as_bytes())?;
        Ok((ca, true))
    }

    /// The CA certificate, PEM: what clients trust.
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate for `cn` with `sans` (IPs, DNS names, or URIs
    /// such as `rampart://user/alice`), valid for `ttl`.
    ///
    /// # Errors
    /// [`TlsError::Cert`] on an unusable SAN or a signing failure.
    pub fn issue(
        &self,
        cn: &str,
        sans: &[String],
        usage: Usage,
        ttl: Duration,
    ) -> Result<IssuedCert, TlsError> {
        self.issue_with(cn, &[], sans, usage, ttl)
    }

    /// Like [`issue`](Self::issue), with organisational units (a client
    /// certificate's OU may carry its role).
    ///
    /// # Errors
    /// [`TlsError::Cert`] on an unusable SAN or a signing failure.
    pub fn issue_with(
        &self,
        cn: &str,
        ous: &[&str],
        sans: &[String],
        usage: Usage,
        ttl: Duration,
    ) -> Result<IssuedCert, TlsError> {
        let key = KeyPair::generate().map_err(cert_err("key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        for ou in ous {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, *ou);
        }
        params.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        (params.not_before, params.not_after) = validity(ttl);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(cert_err(format!("certificate for {cn}")))?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }
}

/// The files rampartd serves TLS with.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    /// CA that signed the server certificate (what clients trust).
    pub ca_cert: PathBuf,
    /// Server certificate.
    pub cert: PathBuf,
    /// Server key.
    pub key: PathBuf,
}

/// Creates (or reuses) the CA in `dir` and issues a fresh server
/// certificate for localhost, 127.0.0.1, ::1, the host name and
/// `extra_sans`. The server certificate is re-issued on every start so it
/// follows host name and configuration changes; clients trust the CA.
///
/// # Errors
/// [`TlsError`] on unusable files or SANs.
pub fn bootstrap_server(
    dir: &Path,
    extra_sans: &[String],
) -> Result<(CertificateAuthority, ServerFiles), TlsError> {
    let (ca, created) = CertificateAuthority::load_or_create(dir)?;
    if created {
        tracing::info!(ca = %dir.join("ca.crt").display(), "created the management CA");
    }
    let mut sans: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(str::to_owned).into();
    if let Some(h) = hostname()
        && !sans.contains(&h)
    {
        sans.push(h);
    }
    for s in extra_sans {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    let issued = ca.issue(
        "rampartd",
        &sans,
        Usage::Server,
        Duration::from_secs(365 * 86_400),
    )?;
    let files = ServerFiles {
        ca_cert: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    write_private(&files.key, issued.key_pem.as_bytes())?;
    write_public(&files.cert, issued.cert_pem.as_bytes())?;
    tracing::info!(cert = %files.cert.display(), sans = ?sans, "issued the server certificate");
    Ok((ca, files))
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Creates a directory only its owner can enter.
///
/// # Errors
/// [`TlsError::Io`].
pub fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
}

/// Writes a file readable by its owner only (0600), replacing it atomically.
///
/// # Errors
/// [`TlsError::Io`].
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_mode(path, contents, 0o600)
}

fn write_public(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_mode(path, contents, 0o644)
}

fn write_mode(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(contents).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Who a (verified) client certificate says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// `rampart://user/<name>` SAN, else the CN.
    pub user: String,
    /// Organisational units (a role may be named there).
    pub ous: Vec<String>,
    /// Tenants from `rampart://tenant/<name>` SANs.
    pub tenants: Vec<String>,
}

/// Reads the identity of a client certificate (already verified against
/// the trusted CA by rustls). Whether the names are acceptable user and
/// tenant names is the auth layer's decision, not this parser's.
///
/// # Errors
/// [`TlsError::Identity`] when it does not parse or names no user.
pub fn cert_identity(der: &[u8]) -> Result<CertIdentity, TlsError> {
    use x509_parser::{extensions::GeneralName, prelude::FromDer as _};
    let bad = |message: String| TlsError::Identity { message };
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| bad(format!("does not parse: {e}")))?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned);
    let ous = subject
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_owned)
        .collect();
    let mut uri_user = None;
    let mut tenants = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if let Some(u) = uri.strip_prefix("rampart://user/") {
                    uri_user = Some(u.to_owned());
                } else if let Some(t) = uri.strip_prefix("rampart://tenant/") {
                    tenants.push(t.to_owned());
                }
            }
        }
    }
    let user = uri_user
        .or(cn)
        .ok_or_else(|| bad("names no user (no CN and no rampart://user/ SAN)".to_owned()))?;
    Ok(CertIdentity { user, ous, tenants })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_persists_and_issues_identities() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let (ca, created) = CertificateAuthority::load_or_create(&tls).unwrap();
        assert!(created);
        let (again, created) = CertificateAuthority::load_or_create(&tls).unwrap();
        assert!(!created);
        assert_eq!(ca.cert_pem(), again.cert_pem());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(tls.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let c = again
            .issue_with(
                "alice",
                &["operator"],
                &["rampart://tenant/acme".into()],
                Usage::Client,
                Duration::from_secs(3600),
            )
            .unwrap();
        let der = pem_der(&c.cert_pem);
        let id = cert_identity(&der).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.ous, ["operator"]);
        assert_eq!(id.tenants, ["acme"]);
        let c = ca
            .issue(
                "x",
                &["rampart://user/bob".into()],
                Usage::Client,
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(cert_identity(&pem_der(&c.cert_pem)).unwrap().user, "bob");
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        use base64::Engine as _;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    }
}
