//! An interactive SSH CLI session (Cisco ASA style) over ssh2.
//!
//! Devices without an API are driven the way an operator drives them: a
//! shell on a pty, commands typed one at a time, output read until the
//! prompt comes back. What makes that robust:
//! - the prompt is learnt once (after any login banner has been read: a
//!   candidate prompt only counts when the device then stays quiet), and
//!   afterwards only `<hostname>[(<mode>)]>|#` at the very end of the output
//!   ends a command;
//! - `<--- More --->` pagers are answered with a space and removed from the
//!   output (and `terminal pager 0` is sent right after login);
//! - `enable` is handled with its `Password:` exchange;
//! - any output line starting with `ERROR:` or `%` makes the command fail
//!   with that output.
//!
//! The session is blocking (libssh2); callers run it on the blocking pool.

use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::{Duration, Instant},
};

use crate::transport::{
    known_hosts::{self, HostKeyPolicy, Problem},
    ssh_channel::SshChannel,
};

/// Why a CLI exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// TCP connect failed.
    #[error("connect {host}:{port}: {source}")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An SSH step failed.
    #[error("ssh {stage}: {source}")]
    Ssh {
        /// `handshake`, `auth`, `channel`, `pty`, `shell`.
        stage: &'static str,
        /// libssh2's error.
        #[source]
        source: ssh2::Error,
    },
    /// The host key is unknown or changed.
    #[error("host key of {host}:{port} ({fingerprint}): {reason} ({known_hosts})")]
    HostKey {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// SHA-256 fingerprint.
        fingerprint: String,
        /// What is wrong.
        reason: String,
        /// The known_hosts file.
        known_hosts: String,
    },
    /// Reading or writing the channel failed.
    #[error("{command:?}: {source}")]
    Io {
        /// The command being run.
        command: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No prompt within the time limit.
    #[error("{command:?}: no prompt after {waited:?}; last output: {tail:?}")]
    Timeout {
        /// The command being run.
        command: String,
        /// How long we waited.
        waited: Duration,
        /// The end of what was read.
        tail: String,
    },
    /// The device closed the session.
    #[error("{command:?}: the device closed the session")]
    Closed {
        /// The command being run.
        command: String,
    },
    /// The device answered with an error line.
    #[error("{command:?} was refused: {message}")]
    Command {
        /// The command.
        command: String,
        /// The `ERROR:`/`%` lines.
        message: String,
        /// The whole output.
        output: String,
    },
    /// Entering privileged mode failed.
    #[error("enable: {reason}")]
    Enable {
        /// What the device said.
        reason: String,
    },
}

/// Where and how to log in.
#[derive(Debug, Clone)]
pub struct CliConfig {
    /// Host.
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// User.
    pub username: String,
    /// Login password.
    pub password: String,
    /// Enable password (`None`: stay at the login privilege).
    pub enable_password: Option<String>,
    /// Host-key verification.
    pub host_key: HostKeyPolicy,
    /// Connect + login + first prompt.
    pub connect_timeout: Duration,
    /// One command.
    pub command_timeout: Duration,
}

/// The pager marker of ASA/IOS style CLIs.
const MORE: &str = "<--- More --->";

/// An interactive CLI session.
pub struct CliSession {
    _session: ssh2::Session,
    channel: SshChannel,
    hostname: String,
    prompt: String,
    timeout: Duration,
}

impl std::fmt::Debug for CliSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliSession")
            .field("prompt", &self.prompt)
            .finish_non_exhaustive()
    }
}

/// Whether `line` looks like a prompt of any host: `name[(mode)]>|#`.
fn generic_prompt(line: &str) -> Option<String> {
    let l = line.trim_end();
    let body = l.strip_suffix('#').or_else(|| l.strip_suffix('>'))?;
    let host = match body.find('(') {
        Some(i) if body.ends_with(')') => &body[..i],
        Some(_) => return None,
        None => body,
    };
    let ok = !host.is_empty()
        && host
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    ok.then(|| host.to_owned())
}

/// The last line of `buf` (after the last newline).
fn last_line(buf: &str) -> &str {
    buf.rsplit(['\n', '\r']).next().unwrap_or(buf)
}

fn verify_host_key(ssh: &ssh2::Session, cfg: &CliConfig) -> Result<(), CliError> {
    known_hosts::verify(ssh, &cfg.host, cfg.port, &cfg.host_key).map_err(|r| CliError::HostKey {
        host: cfg.host.clone(),
        port: cfg.port,
        reason: match r.problem {
            Problem::NoKey => "the server offered no host key".to_owned(),
            Problem::File(reason) => reason,
            Problem::Mismatch => "does not match: possible man-in-the-middle".to_owned(),
            Problem::Unknown => "unknown host".to_owned(),
        },
        fingerprint: r.fingerprint,
        known_hosts: cfg.host_key.known_hosts.display().to_string(),
    })
}

/// Lines of `output` that report an error.
fn error_lines(output: &str) -> Vec<&str> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("ERROR:") || l.starts_with('%'))
        .collect()
}

impl CliSession {
    /// Connects, logs in, waits for the first prompt (past any banner),
    /// enters privileged mode when an enable password is given, and turns
    /// the pager off.
    ///
    /// # Errors
    /// Connection, host key, authentication, enable, timeouts.
    pub fn connect(cfg: &CliConfig) -> Result<CliSession, CliError> {
        let connect_err = |source| CliError::Connect {
            host: cfg.host.clone(),
            port: cfg.port,
            source,
        };
        let addr = (cfg.host.as_str(), cfg.port)
            .to_socket_addrs()
            .map_err(connect_err)?
            .next()
            .ok_or_else(|| connect_err(std::io::Error::new(ErrorKind::NotFound, "no address")))?;
        let tcp = TcpStream::connect_timeout(&addr, cfg.connect_timeout).map_err(connect_err)?;
        let _ = tcp.set_nodelay(true);
        let mut ssh = ssh2::Session::new().map_err(|source| CliError::Ssh {
            stage: "session",
            source,
        })?;
        ssh.set_tcp_stream(tcp);
        ssh.set_timeout(u32::try_from(cfg.connect_timeout.as_millis()).unwrap_or(u32::MAX));
        ssh.handshake().map_err(|source| CliError::Ssh {
            stage: "handshake",
            source,
        })?;
        verify_host_key(&ssh, cfg)?;
        ssh.userauth_password(&cfg.username, &cfg.password)
            .map_err(|source| CliError::Ssh {
                stage: "auth",
                source,
            })?;
        let mut channel = ssh.channel_session().map_err(|source| CliError::Ssh {
            stage: "channel",
            source,
        })?;
        channel
            .request_pty("vt100", None, Some((511, 24, 0, 0)))
            .map_err(|source| CliError::Ssh {
                stage: "pty",
                source,
            })?;
        channel.shell().map_err(|source| CliError::Ssh {
            stage: "shell",
            source,
        })?;
        ssh.set_blocking(false);
        let mut s = CliSession {
            _session: ssh,
            channel: SshChannel::new(channel),
            hostname: String::new(),
            prompt: String::new(),
            timeout: cfg.command_timeout,
        };
        s.first_prompt(cfg.connect_timeout)?;
        if let Some(pw) = &cfg.enable_password
            && !s.privileged()
        {
            s.enable(pw)?;
        }
        s.run("terminal pager 0")?;
        Ok(s)
    }

    /// The current prompt.
    #[must_use]
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// Whether the session is in privileged mode (`#`).
    #[must_use]
    pub fn privileged(&self) -> bool {
        self.prompt.trim_end().ends_with('#')
    }

    fn write_all(&mut self, command: &str, data: &[u8]) -> Result<(), CliError> {
        let deadline = Instant::now() + self.timeout;
        let mut off = 0;
        while off < data.len() {
            match self.channel.write(&data[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(source) => {
                    return Err(CliError::Io {
                        command: command.to_owned(),
                        source,
                    });
                }
            }
        }
        // No flush: libssh2 sends on write, and a raw channel flush would
        // discard device output already read (see `SshChannel`).
        Ok(())
    }

    /// Reads what is available within `wait`; `Ok(None)` on end of stream.
    fn read_some(&mut self, command: &str, wait: Duration) -> Result<Option<String>, CliError> {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 8192];
        loop {
            match self.channel.read(&mut buf) {
                Ok(0) if self.channel.eof() => return Ok(None),
                Ok(0) => {}
                Ok(n) => return Ok(Some(String::from_utf8_lossy(&buf[..n]).into_owned())),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(source) => {
                    return Err(CliError::Io {
                        command: command.to_owned(),
                        source,
                    });
                }
            }
            if Instant::now() >= deadline {
                return Ok(Some(String::new()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn first_prompt(&mut self, timeout: Duration) -> Result<(), CliError> {
        let start = Instant::now();
        let mut out = String::new();
        loop {
            let Some(chunk) = self.read_some("<login>", Duration::from_millis(50))? else {
                return Err(CliError::Closed {
                    command: "<login>".to_owned(),
                });
            };
            out.push_str(&chunk);
            if chunk.is_empty()
                && let Some(host) = generic_prompt(last_line(&out))
            {
                // A banner line can look like a prompt: only a quiet device
                // waiting at it is one.
                let more = self.read_some("<login>", Duration::from_millis(150))?;
                match more {
                    Some(m) if m.is_empty() => {
                        self.hostname = host;
                        self.prompt = last_line(&out).trim_end().to_owned();
                        tracing::debug!(prompt = self.prompt, "CLI prompt learnt");
                        return Ok(());
                    }
                    Some(m) => out.push_str(&m),
                    None => {
                        return Err(CliError::Closed {
                            command: "<login>".to_owned(),
                        });
                    }
                }
            }
            if start.elapsed() > timeout {
                return Err(CliError::Timeout {
                    command: "<login>".to_owned(),
                    waited: timeout,
                    tail: out
                        .chars()
                        .rev()
                        .take(200)
                        .collect::<String>()
                        .chars()
                        .rev()
                        .collect(),
                });
            }
        }
    }

    /// Whether `line` is this device's prompt (any mode).
    fn is_prompt(&self, line: &str) -> bool {
        generic_prompt(line).is_some_and(|h| h == self.hostname)
    }

    /// Sends `text` + newline and reads until `done(buffer)` or the prompt.
    fn exchange(
        &mut self,
        command: &str,
        text: &str,
        until_password: bool,
    ) -> Result<String, CliError> {
        self.write_all(command, format!("{text}\n").as_bytes())?;
        let start = Instant::now();
        let mut out = String::new();
        loop {
            let Some(chunk) = self.read_some(command, Duration::from_millis(20))? else {
                return Err(CliError::Closed {
                    command: command.to_owned(),
                });
            };
            out.push_str(&chunk);
            let tail = last_line(&out).trim_end();
            if tail.ends_with(MORE) {
                // Next page; the marker is removed from the output below.
                self.write_all(command, b" ")?;
                continue;
            }
            if until_password && tail.ends_with("Password:") {
                return Ok(out);
            }
            if self.is_prompt(tail) {
                self.prompt = tail.to_owned();
                return Ok(out);
            }
            if start.elapsed() > self.timeout {
                return Err(CliError::Timeout {
                    command: command.to_owned(),
                    waited: self.timeout,
                    tail: out
                        .chars()
                        .rev()
                        .take(200)
                        .collect::<String>()
                        .chars()
                        .rev()
                        .collect(),
                });
            }
        }
    }

    /// Output without the echoed command, pager markers and the prompt.
    fn clean(command: &str, raw: &str) -> String {
        let mut lines: Vec<String> = raw
            .replace("\r\n", "\n")
            .split('\n')
            .map(|l| {
                let l = l.rsplit('\r').next().unwrap_or(l);
                l.replace(MORE, "").trim_end().to_owned()
            })
            .collect();
        if lines.first().is_some_and(|l| l.trim() == command.trim()) {
            lines.remove(0);
        }
        lines.pop(); // the prompt
        lines
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs one command; error lines make it fail.
    ///
    /// # Errors
    /// [`CliError::Command`] with the device's error lines; I/O, timeouts.
    pub fn run(&mut self, command: &str) -> Result<String, CliError> {
        let out = self.run_unchecked(command)?;
        let errors = error_lines(&out);
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(CliError::Command {
                command: command.to_owned(),
                message: errors.join(" "),
                output: out,
            })
        }
    }

    /// Runs one command and returns its output whatever it says.
    ///
    /// # Errors
    /// I/O, timeouts, a closed session.
    pub fn run_unchecked(&mut self, command: &str) -> Result<String, CliError> {
        let raw = self.exchange(command, command, false)?;
        tracing::trace!(command, prompt = self.prompt, "CLI command done");
        Ok(Self::clean(command, &raw))
    }

    /// Enters privileged mode.
    ///
    /// # Errors
    /// [`CliError::Enable`] when the password is refused.
    pub fn enable(&mut self, password: &str) -> Result<(), CliError> {
        let out = self.exchange("enable", "enable", true)?;
        if last_line(&out).trim_end().ends_with("Password:") {
            let after = self.exchange("enable", password, true)?;
            if last_line(&after).trim_end().ends_with("Password:") {
                // Refused: leave the password prompt without guessing again
                // (the device asks up to three times, then gives up).
                for _ in 0..3 {
                    let out = self.exchange("enable", "", true)?;
                    if !last_line(&out).trim_end().ends_with("Password:") {
                        break;
                    }
                }
                return Err(CliError::Enable {
                    reason: "the enable password was refused".to_owned(),
                });
            }
        }
        if self.privileged() {
            Ok(())
        } else {
            Err(CliError::Enable {
                reason: format!("still at prompt {:?}", self.prompt),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_recognised_and_banners_are_not() {
        assert_eq!(generic_prompt("asa-sim> ").as_deref(), Some("asa-sim"));
        assert_eq!(
            generic_prompt("asa-sim(config-network-object-group)# ").as_deref(),
            Some("asa-sim")
        );
        assert_eq!(generic_prompt("fw1/ctx#").as_deref(), Some("fw1/ctx"));
        assert_eq!(generic_prompt("Unauthorized access is prohibited!"), None);
        assert_eq!(generic_prompt("=== Welcome to the lab ==> "), None);
        assert_eq!(generic_prompt("Password:"), None);
    }

    #[test]
    fn output_is_cleaned_of_echo_pager_and_prompt() {
        let raw = "show run\r\nline 1\r\n<--- More --->\r              \rline 2\r\nasa# ";
        assert_eq!(CliSession::clean("show run", raw), "line 1\nline 2");
        assert_eq!(
            error_lines("x\nERROR: % Invalid input detected at '^' marker.\n%Error writing disk"),
            vec![
                "ERROR: % Invalid input detected at '^' marker.",
                "%Error writing disk"
            ]
        );
        assert!(error_lines("WARNING: <A> found duplicate element").is_empty());
    }
}
