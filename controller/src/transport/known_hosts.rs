//! SSH host-key checking against an OpenSSH `known_hosts` file, shared by
//! the NETCONF and CLI sessions. Fingerprints are shown as OpenSSH shows
//! them (`SHA256:` and unpadded base64), so an operator can compare them
//! with `ssh-keygen -lf`.

use std::path::PathBuf;

use base64::Engine as _;
use ssh2::{CheckResult, HashType, KnownHostFileKind};

/// How the server's host key is checked.
#[derive(Debug, Clone)]
pub struct HostKeyPolicy {
    /// OpenSSH `known_hosts` file.
    pub known_hosts: PathBuf,
    /// Record an unknown host's key instead of refusing it. Only for
    /// bootstrapping: a changed key is still refused.
    pub trust_on_first_use: bool,
}

/// Why a host key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The server offered no key.
    NoKey,
    /// The known_hosts file could not be read or written.
    File(String),
    /// The key differs from the one recorded for the host.
    Mismatch,
    /// The host is not in the file (and trust on first use is off).
    Unknown,
}

/// A refused host key, with the offered key's fingerprint.
#[derive(Debug, Clone)]
pub struct Refused {
    /// What is wrong.
    pub problem: Problem,
    /// `SHA256:<base64>` of the offered key (empty without a key).
    pub fingerprint: String,
}

/// The OpenSSH form of a SHA-256 key hash.
#[must_use]
pub fn fingerprint(sha256: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha256)
    )
}

/// Checks the key `ssh` was offered by `host:port` against `policy`,
/// recording it when the host is unknown and trust on first use is on.
///
/// # Errors
/// [`Refused`] saying why.
pub fn verify(
    ssh: &ssh2::Session,
    host: &str,
    port: u16,
    policy: &HostKeyPolicy,
) -> Result<(), Refused> {
    let path = &policy.known_hosts;
    let fingerprint = ssh
        .host_key_hash(HashType::Sha256)
        .map(self::fingerprint)
        .unwrap_or_default();
    let refuse = |problem| Refused {
        problem,
        fingerprint: fingerprint.clone(),
    };
    let file = |e: ssh2::Error| refuse(Problem::File(e.to_string()));
    let (key, key_type) = ssh.host_key().ok_or_else(|| refuse(Problem::NoKey))?;
    let mut known = ssh.known_hosts().map_err(file)?;
    if path.exists() {
        known
            .read_file(path, KnownHostFileKind::OpenSSH)
            .map_err(file)?;
    }
    match known.check_port(host, port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(refuse(Problem::Mismatch)),
        CheckResult::NotFound if policy.trust_on_first_use => {
            let name = if port == 22 {
                host.to_owned()
            } else {
                format!("[{host}]:{port}")
            };
            known
                .add(
                    &name,
                    key,
                    "added by rampartd (trust on first use)",
                    key_type.into(),
                )
                .map_err(file)?;
            known
                .write_file(path, KnownHostFileKind::OpenSSH)
                .map_err(file)?;
            tracing::warn!(host, port, %fingerprint, known_hosts = %path.display(), "trusting host key on first use");
            Ok(())
        }
        CheckResult::NotFound | CheckResult::Failure => Err(refuse(Problem::Unknown)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprints_read_as_openssh_prints_them() {
        // ssh-keygen -lf prints the SHA-256 of the key blob as unpadded
        // base64; 32 zero bytes give 43 'A's.
        assert_eq!(
            super::fingerprint(&[0; 32]),
            format!("SHA256:{}", "A".repeat(43))
        );
        assert_eq!(super::fingerprint(&[0xff, 0xfe]), "SHA256://4");
    }
}
