//! Device credentials encrypted at rest (ChaCha20-Poly1305 from ring).
//!
//! Each record is sealed with a random 96-bit nonce under the current key;
//! the device name is the associated data, so a ciphertext copied onto
//! another device's key does not open. Records name their key id (the first
//! 8 bytes of the key's SHA-256, hex) so older keys listed in
//! `[secrets] previous_key_files` still decrypt after a rotation, and
//! [`Store::reencrypt_secrets`] moves every record to the current key.
//!
//! ring rather than the RustCrypto `chacha20poly1305` crate: ring is already
//! in the tree as rustls's provider, and its AEAD is the same construction.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use ring::{
    aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    digest,
    rand::{SecureRandom as _, SystemRandom},
};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::{Store, StoreError, decode, encode, trees};

/// Environment variable holding the current key (base64 of 32 bytes).
pub const KEY_ENV: &str = "RAMPARTD_SECRET_KEY";

/// Secret-handling failures. Messages never contain secret material.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key file or the environment variable is unusable.
    #[error("secret key from {origin}: {message}")]
    Key {
        /// File or variable.
        origin: String,
        /// What is wrong (never the key).
        message: String,
    },
    /// No keyring was installed in the store (a wiring defect).
    #[error("no secret key is configured")]
    NoKeyring,
    /// A record is sealed under a key that is not configured.
    #[error(
        "credentials of device {device:?} are encrypted with key {key_id}, which is not configured (add it to [secrets] previous_key_files)"
    )]
    UnknownKey {
        /// Device.
        device: String,
        /// Key id of the record.
        key_id: String,
    },
    /// Authentication of the ciphertext failed (tampering or wrong key).
    #[error("credentials of device {device:?} do not decrypt (tampered, or the key file changed)")]
    Decrypt {
        /// Device.
        device: String,
    },
}

/// Device credentials in clear, for drivers only: zeroed on drop, redacted
/// in `Debug`, not `Serialize`able into logs by accident.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
    /// SSH/TLS private key, PEM.
    pub private_key: String,
    /// API key (Meraki and the like).
    pub api_key: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.username.zeroize();
        self.password.zeroize();
        self.private_key.zeroize();
        self.api_key.zeroize();
    }
}

impl Secret {
    /// Whether nothing is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.private_key.is_empty()
            && self.api_key.is_empty()
    }
}

struct Key {
    id: String,
    key: LessSafeKey,
}

/// The current key and the previous ones (decrypt only).
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Where the current key came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `[secrets] key_file`.
    File(PathBuf),
    /// The environment variable.
    Env,
    /// Generated into the data directory now.
    Generated(PathBuf),
    /// Read from the data directory (generated earlier).
    DataDir(PathBuf),
}

fn key_from_bytes(raw: &[u8], origin: &str) -> Result<Key, SecretsError> {
    let bad = |message: &str| SecretsError::Key {
        origin: origin.to_owned(),
        message: message.to_owned(),
    };
    let text = std::str::from_utf8(raw).map(str::trim).unwrap_or_default();
    let bytes: Zeroizing<Vec<u8>> = if raw.len() == 32 {
        Zeroizing::new(raw.to_vec())
    } else {
        Zeroizing::new(
            STANDARD
                .decode(text)
                .map_err(|_| bad("not base64 of 32 bytes (nor 32 raw bytes)"))?,
        )
    };
    if bytes.len() != 32 {
        return Err(bad(&format!("key is {} bytes, expected 32", bytes.len())));
    }
    let id = hex::encode(&digest::digest(&digest::SHA256, &bytes).as_ref()[..8]);
    let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| bad("unusable key"))?;
    Ok(Key {
        id,
        key: LessSafeKey::new(key),
    })
}

fn read_key_file(path: &Path) -> Result<Key, SecretsError> {
    let raw = Zeroizing::new(std::fs::read(path).map_err(|e| SecretsError::Key {
        origin: path.display().to_string(),
        message: e.to_string(),
    })?);
    key_from_bytes(&raw, &path.display().to_string())
}

impl Keyring {
    /// A keyring from one raw 32-byte key (tests, tools).
    ///
    /// # Errors
    /// [`SecretsError::Key`] when the key is not 32 bytes.
    pub fn from_key(key: &[u8], previous: &[&[u8]]) -> Result<Self, SecretsError> {
        Ok(Self {
            current: key_from_bytes(key, "argument")?,
            previous: previous
                .iter()
                .map(|k| key_from_bytes(k, "argument"))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Loads the current key from `key_file`, else `env_value`, else
    /// `<data_dir>/secret.key` (generated, 0600, when missing), plus the
    /// previous keys.
    ///
    /// # Errors
    /// [`SecretsError::Key`] naming the unusable file.
    pub fn load(
        key_file: Option<&Path>,
        env_value: Option<&str>,
        previous_files: &[PathBuf],
        data_dir: &Path,
    ) -> Result<(Self, KeySource), SecretsError> {
        let (current, source) = if let Some(p) = key_file {
            (read_key_file(p)?, KeySource::File(p.to_owned()))
        } else if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
            (key_from_bytes(v.as_bytes(), KEY_ENV)?, KeySource::Env)
        } else {
            let path = data_dir.join("secret.key");
            if path.exists() {
                (read_key_file(&path)?, KeySource::DataDir(path))
            } else {
                let mut raw = Zeroizing::new([0u8; 32]);
                SystemRandom::new()
                    .fill(raw.as_mut())
                    .map_err(|_| SecretsError::Key {
                        origin: "system random source".to_owned(),
                        message: "failed".to_owned(),
                    })?;
                let encoded = Zeroizing::new(STANDARD.encode(raw.as_ref()));
                crate::tls::write_private(&path, encoded.as_bytes()).map_err(|e| {
                    SecretsError::Key {
                        origin: path.display().to_string(),
                        message: e.to_string(),
                    }
                })?;
                (
                    key_from_bytes(raw.as_ref(), "generated")?,
                    KeySource::Generated(path),
                )
            }
        };
        let previous = previous_files
            .iter()
            .map(|p| read_key_file(p))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|k| k.id != current.id)
            .collect();
        Ok((Self { current, previous }, source))
    }

    /// Id of the key new records are sealed with.
    #[must_use]
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    fn find(&self, id: &str) -> Option<&Key> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }
}

/// Holds the keyring once installed; part of every [`Store`] clone.
#[derive(Debug, Clone, Default)]
pub struct KeySlot(Arc<OnceLock<Keyring>>);

/// A sealed record as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    key_id: String,
    nonce: String,
    ciphertext: String,
}

/// What a re-encryption pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotateReport {
    /// Records moved to the current key.
    pub reencrypted: u64,
    /// Records in total.
    pub total: u64,
}

fn seal(key: &Key, device: &str, secret: &Secret) -> Result<Sealed, SecretsError> {
    let mut plain =
        Zeroizing::new(
            serde_json::to_vec(secret).map_err(|source| StoreError::Encode {
                what: "credentials",
                source,
            })?,
        );
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SecretsError::Key {
            origin: "system random source".to_owned(),
            message: "failed".to_owned(),
        })?;
    key.key
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(device.as_bytes()),
            &mut *plain,
        )
        .map_err(|_| SecretsError::Decrypt {
            device: device.to_owned(),
        })?;
    Ok(Sealed {
        key_id: key.id.clone(),
        nonce: STANDARD.encode(nonce),
        ciphertext: STANDARD.encode(&*plain),
    })
}

fn open(ring: &Keyring, device: &str, sealed: &Sealed) -> Result<Secret, SecretsError> {
    let key = ring
        .find(&sealed.key_id)
        .ok_or_else(|| SecretsError::UnknownKey {
            device: device.to_owned(),
            key_id: sealed.key_id.clone(),
        })?;
    let fail = || SecretsError::Decrypt {
        device: device.to_owned(),
    };
    let nonce: [u8; NONCE_LEN] = STANDARD
        .decode(&sealed.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(fail)?;
    let mut buf = Zeroizing::new(STANDARD.decode(&sealed.ciphertext).map_err(|_| fail())?);
    let plain = key
        .key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(device.as_bytes()),
            &mut buf,
        )
        .map_err(|_| fail())?;
    serde_json::from_slice(plain).map_err(|_| fail())
}

impl Store {
    fn keyring(&self) -> Result<&Keyring, SecretsError> {
        self.secret_keys.0.get().ok_or(SecretsError::NoKeyring)
    }

    /// Installs the keyring (once; later calls keep the first).
    pub fn install_keyring(&self, keyring: Keyring) {
        if self.secret_keys.0.set(keyring).is_err() {
            tracing::warn!("secret keyring already installed; keeping the first");
        }
    }

    /// Id of the current key, when a keyring is installed.
    #[must_use]
    pub fn secret_key_id(&self) -> Option<String> {
        self.secret_keys.0.get().map(|k| k.current.id.clone())
    }

    /// Encrypts and stores the credentials of `device`, then flushes.
    ///
    /// # Errors
    /// [`SecretsError`]; nothing is stored then.
    pub async fn put_device_credentials(
        &self,
        device: &str,
        secret: &Secret,
    ) -> Result<(), SecretsError> {
        let ring = self.keyring()?;
        let sealed = seal(&ring.current, device, secret)?;
        self.kv.insert(
            trees::SECRETS,
            device.as_bytes(),
            encode("credentials", &sealed)?,
        )?;
        self.flush().await?;
        Ok(())
    }

    /// The decrypted credentials of `device`, for drivers. Never hand the
    /// result to the API, a log or a rendering.
    ///
    /// # Errors
    /// [`SecretsError`] when the record does not decrypt.
    pub fn device_credentials(&self, device: &str) -> Result<Option<Secret>, SecretsError> {
        let Some(bytes) = self.kv.get(trees::SECRETS, device.as_bytes())? else {
            return Ok(None);
        };
        let sealed: Sealed = decode("credentials", device.as_bytes(), &bytes)?;
        open(self.keyring()?, device, &sealed).map(Some)
    }

    /// Whether credentials are stored for `device`.
    ///
    /// # Errors
    /// Storage failures.
    pub fn has_device_credentials(&self, device: &str) -> Result<bool, StoreError> {
        Ok(self.kv.get(trees::SECRETS, device.as_bytes())?.is_some())
    }

    /// Forgets the credentials of `device`.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn remove_device_credentials(&self, device: &str) -> Result<(), StoreError> {
        self.kv.remove(trees::SECRETS, device.as_bytes())?;
        self.flush().await
    }

    /// Re-encrypts every record not under the current key, then flushes.
    ///
    /// # Errors
    /// [`SecretsError`] naming the first record that does not decrypt;
    /// records already moved stay moved (each is rewritten atomically).
    pub async fn reencrypt_secrets(&self) -> Result<RotateReport, SecretsError> {
        let ring = self.keyring()?;
        let mut report = RotateReport {
            reencrypted: 0,
            total: 0,
        };
        for (k, v) in self.kv.collect(trees::SECRETS)? {
            report.total += 1;
            let sealed: Sealed = decode("credentials", &k, &v)?;
            if sealed.key_id == ring.current.id {
                continue;
            }
            let device = String::from_utf8_lossy(&k).into_owned();
            let secret = open(ring, &device, &sealed)?;
            let resealed = seal(&ring.current, &device, &secret)?;
            // Only if unchanged since read: a concurrent update wins.
            if self.kv.cas(
                trees::SECRETS,
                &k,
                Some(&v),
                Some(encode("credentials", &resealed)?),
            )? {
                report.reencrypted += 1;
            }
        }
        self.flush().await?;
        Ok(report)
    }

    /// The raw stored bytes of a record (tests prove no plaintext is kept).
    ///
    /// # Errors
    /// Storage failures.
    pub fn sealed_credentials_bytes(&self, device: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.kv.get(trees::SECRETS, device.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret {
            username: "admin".into(),
            password: "hunter2-SUPERSECRET".into(),
            private_key: String::new(),
            api_key: String::new(),
        }
    }

    #[tokio::test]
    async fn seal_open_rotate() {
        let old = [7u8; 32];
        let new = [9u8; 32];
        let s = Store::temporary().unwrap();
        s.install_keyring(Keyring::from_key(&old, &[]).unwrap());
        s.put_device_credentials("csr1", &secret()).await.unwrap();
        let raw = s.sealed_credentials_bytes("csr1").unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("SUPERSECRET"));
        assert_eq!(s.device_credentials("csr1").unwrap().unwrap(), secret());
        assert_eq!(format!("{:?}", secret()), "Secret(<redacted>)");

        // A store reopened with a new key and the old one as previous.
        let s2 = Store {
            secret_keys: KeySlot::default(),
            ..s.clone()
        };
        s2.install_keyring(Keyring::from_key(&new, &[&old]).unwrap());
        assert_eq!(s2.device_credentials("csr1").unwrap().unwrap(), secret());
        let r = s2.reencrypt_secrets().await.unwrap();
        assert_eq!((r.reencrypted, r.total), (1, 1));
        let r = s2.reencrypt_secrets().await.unwrap();
        assert_eq!(r.reencrypted, 0);

        // Without the old key the rotated record still opens; a store with
        // only the old key cannot read it any more.
        let s3 = Store {
            secret_keys: KeySlot::default(),
            ..s.clone()
        };
        s3.install_keyring(Keyring::from_key(&old, &[]).unwrap());
        assert!(matches!(
            s3.device_credentials("csr1"),
            Err(SecretsError::UnknownKey { .. })
        ));
    }

    #[tokio::test]
    async fn ciphertext_is_bound_to_its_device() {
        let s = Store::temporary().unwrap();
        s.install_keyring(Keyring::from_key(&[1u8; 32], &[]).unwrap());
        s.put_device_credentials("a", &secret()).await.unwrap();
        let raw = s.sealed_credentials_bytes("a").unwrap().unwrap();
        s.kv.insert(trees::SECRETS, b"b", raw).unwrap();
        assert!(matches!(
            s.device_credentials("b"),
            Err(SecretsError::Decrypt { .. })
        ));
    }

    #[test]
    fn key_loading_generates_once_and_rejects_short_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (a, src) = Keyring::load(None, None, &[], dir.path()).unwrap();
        assert!(matches!(src, KeySource::Generated(_)));
        let (b, src) = Keyring::load(None, None, &[], dir.path()).unwrap();
        assert!(matches!(src, KeySource::DataDir(_)));
        assert_eq!(a.current_id(), b.current_id());
        let err = Keyring::load(None, Some("c2hvcnQ="), &[], dir.path()).unwrap_err();
        assert!(err.to_string().contains("expected 32"), "{err}");
    }
}
