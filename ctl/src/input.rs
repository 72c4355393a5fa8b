//! Reading what the user hands rampartctl: files (or stdin), durations,
//! times and `key=value` labels.

use std::{io::Read as _, path::Path, time::SystemTime};

use rampart_proto::v1 as pb;

use crate::error::Failure;

/// rampartd refuses documents larger than this (its `[api]
/// max_request_bytes` default and the model's limit); rampartctl refuses
/// them before sending anything.
pub const MAX_DOCUMENT_BYTES: u64 = 4 * 1024 * 1024;

/// A file's text and the name diagnostics use; `-` reads stdin. Files over
/// [`MAX_DOCUMENT_BYTES`] are refused unread.
pub fn read_input(path: &Path) -> Result<(String, String), Failure> {
    let name = if path.as_os_str() == "-" {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    };
    let read_err = |e: std::io::Error| Failure::usage(format!("cannot read {name}: {e}"));
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        // One byte past the limit is enough to know it is too large.
        std::io::stdin()
            .take(MAX_DOCUMENT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
    } else {
        let file = std::fs::File::open(path).map_err(read_err)?;
        file.take(MAX_DOCUMENT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
    }
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(Failure::usage(format!(
            "{name}: larger than 4 MiB; documents over 4 MiB are refused (split the services \
             over several files)"
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| Failure::usage(format!("{name}: not UTF-8 text: {e}")))?;
    Ok((text, name))
}

/// A small file such as a token or a certificate.
pub fn read_file(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read {what} {}: {e}", path.display())))
}

/// `key=value`, for clap.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// `24h`, `30d`, `never`/`0` (= no expiry) in seconds.
pub fn ttl_seconds(s: &str) -> Result<u64, Failure> {
    if s == "never" || s == "0" {
        return Ok(0);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_secs().max(1))
        .map_err(|e| Failure::usage(format!("--ttl {s:?}: {e} (use e.g. 24h, 30d or never)")))
}

/// `1h` (ago) or an RFC 3339 time, as a timestamp.
pub fn time_arg(flag: &str, s: &str) -> Result<prost_types::Timestamp, Failure> {
    let t = match humantime::parse_duration(s) {
        Ok(d) => SystemTime::now()
            .checked_sub(d)
            .unwrap_or(SystemTime::UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(s).map_err(|e| {
            Failure::usage(format!(
                "--{flag} {s:?}: neither a duration (1h) nor a time: {e}"
            ))
        })?,
    };
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Ok(prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    })
}

/// A credentials file: `username`, `password`, `privateKey`, `apiKey`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct CredentialsFile {
    username: String,
    password: String,
    private_key: String,
    api_key: String,
}

/// Reads a credentials file.
pub fn credentials_file(path: &Path) -> Result<pb::DeviceCredentials, Failure> {
    let (text, name) = read_input(path)?;
    let c: CredentialsFile =
        serde_norway::from_str(&text).map_err(|e| Failure::usage(format!("{name}: {e}")))?;
    Ok(pb::DeviceCredentials {
        username: c.username,
        password: c.password,
        private_key: c.private_key,
        api_key: c.api_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_over_4_mib_is_refused_unsent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        let mut text = "# padding\n".repeat(419_431);
        assert!(text.len() as u64 > MAX_DOCUMENT_BYTES);
        std::fs::write(&path, &text).unwrap();
        let f = read_input(&path).unwrap_err();
        assert_eq!(f.code, 3);
        assert!(
            f.message.contains("documents over 4 MiB are refused"),
            "{}",
            f.message
        );
        text.truncate(usize::try_from(MAX_DOCUMENT_BYTES).unwrap());
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_input(&path).unwrap().0.len(), text.len());
    }
}
