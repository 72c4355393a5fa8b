//! One blocking NETCONF session over SSH (libssh2 through `ssh2`).
//!
//! Everything here blocks the calling thread; the async layer
//! ([`super::pool`]) runs it on tokio's blocking pool. Every read and write
//! is bounded by a timeout and every message by a size limit, so a dead or
//! hostile peer costs at most one timeout.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    path::PathBuf,
    time::{Duration, Instant},
};

use super::{
    framing::{FrameDecoder, Framing, FramingError, encode},
    ops::{self, Commit, Datastore, EditConfig, Filter, Operation},
    reply::{self, ReplyError, RpcReply},
};
pub use crate::transport::known_hosts::HostKeyPolicy;
use crate::transport::{
    error::{self as rpc_error, RpcError},
    known_hosts::{self, Problem},
    ssh_channel::SshChannel,
};

/// How the client proves who it is.
#[derive(Clone)]
pub enum Auth {
    /// Password authentication.
    Password(String),
    /// Public-key authentication with a private key file.
    KeyFile {
        /// Private key (OpenSSH or PEM format).
        path: PathBuf,
        /// Passphrase of the key, if it has one.
        passphrase: Option<String>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Password(_) => f.write_str("Password(<redacted>)"),
            Auth::KeyFile { path, .. } => write!(f, "KeyFile({})", path.display()),
        }
    }
}

/// Everything needed to open a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Host name or address.
    pub host: String,
    /// SSH port (830 on real devices).
    pub port: u16,
    /// User name.
    pub username: String,
    /// Credentials.
    pub auth: Auth,
    /// Host-key verification.
    pub host_key: HostKeyPolicy,
    /// TCP connect plus SSH handshake plus hello.
    pub connect_timeout: Duration,
    /// Longest wait for one RPC reply.
    pub rpc_timeout: Duration,
    /// SSH keepalive interval; `None` disables keepalives.
    pub keepalive: Option<Duration>,
    /// Largest reply accepted.
    pub max_message_bytes: usize,
}

impl SessionConfig {
    /// A config with sensible timeouts (10 s connect, 60 s RPC, 30 s
    /// keepalive, 64 MiB replies).
    #[must_use]
    pub fn new(
        host: impl Into<String>,
        port: u16,
        username: impl Into<String>,
        auth: Auth,
        host_key: HostKeyPolicy,
    ) -> SessionConfig {
        SessionConfig {
            host: host.into(),
            port,
            username: username.into(),
            auth,
            host_key,
            connect_timeout: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(60),
            keepalive: Some(Duration::from_secs(30)),
            max_message_bytes: 64 << 20,
        }
    }
}

/// Why a NETCONF exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum NetconfError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}:{port}: {source}")]
    Resolve {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Resolver error.
        #[source]
        source: std::io::Error,
    },
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Address tried last.
        addr: String,
        /// Socket error.
        #[source]
        source: std::io::Error,
    },
    /// An SSH step failed.
    #[error("SSH {stage} with {host}:{port} failed: {source}")]
    Ssh {
        /// Which step (handshake, channel, subsystem, ...).
        stage: &'static str,
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// libssh2's error.
        #[source]
        source: ssh2::Error,
    },
    /// The host key is not in the known-hosts file and TOFU is off.
    #[error("host key of {host}:{port} ({fingerprint}) is not in {known_hosts}")]
    UnknownHostKey {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// SHA-256 fingerprint of the offered key.
        fingerprint: String,
        /// The file consulted.
        known_hosts: String,
    },
    /// The host key differs from the recorded one.
    #[error(
        "host key of {host}:{port} ({fingerprint}) does not match {known_hosts}: possible man-in-the-middle"
    )]
    HostKeyMismatch {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// SHA-256 fingerprint of the offered key.
        fingerprint: String,
        /// The file consulted.
        known_hosts: String,
    },
    /// Reading or writing the known-hosts file failed.
    #[error("known-hosts file {path}: {reason}")]
    KnownHosts {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Authentication was refused.
    #[error("authentication of {user}@{host}:{port} refused: {reason}")]
    Auth {
        /// User.
        user: String,
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Why.
        reason: String,
    },
    /// No reply in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// The peer closed the channel.
    #[error("the server closed the session{}", if *mid_message { " in the middle of a message" } else { "" })]
    Closed {
        /// Whether part of a message had arrived.
        mid_message: bool,
    },
    /// Channel I/O failed.
    #[error("session I/O failed: {0}")]
    Io(#[source] std::io::Error),
    /// The byte stream is not valid NETCONF framing.
    #[error("framing: {0}")]
    Framing(#[from] FramingError),
    /// A message could not be parsed.
    #[error("reply: {0}")]
    Reply(#[from] ReplyError),
    /// The reply answers another request.
    #[error("reply message-id {got:?} does not match request {expected}")]
    MessageId {
        /// Sent id.
        expected: u64,
        /// Received id.
        got: Option<String>,
    },
    /// The server answered with `<rpc-error>`s of severity error.
    #[error("{operation} failed: {}", rpc_error::join(errors))]
    Rpc {
        /// The operation.
        operation: &'static str,
        /// Every error reported (warnings included).
        errors: Vec<RpcError>,
    },
    /// The reply had neither `<ok/>`, `<data>` nor errors.
    #[error("{operation}: empty reply")]
    EmptyReply {
        /// The operation.
        operation: &'static str,
    },
    /// The server lacks a capability the operation needs.
    #[error("server does not advertise {capability}")]
    MissingCapability {
        /// The capability URI.
        capability: String,
    },
}

impl NetconfError {
    /// Whether the session is unusable after this error (transport-level),
    /// as opposed to an `rpc-error` after which the session is fine.
    #[must_use]
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            NetconfError::Rpc { .. }
                | NetconfError::EmptyReply { .. }
                | NetconfError::MissingCapability { .. }
        )
    }

    /// Whether retrying the connection can help (network trouble, not
    /// credentials or host keys).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NetconfError::Connect { .. }
                | NetconfError::Ssh { .. }
                | NetconfError::Timeout { .. }
                | NetconfError::Closed { .. }
                | NetconfError::Io(_)
        )
    }

    /// The `rpc-error`s, if the server reported any.
    #[must_use]
    pub fn rpc_errors(&self) -> &[RpcError] {
        match self {
            NetconfError::Rpc { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// Capabilities a server advertised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    uris: BTreeSet<String>,
}

/// Well-known capability URIs.
pub mod cap {
    /// base:1.1 (chunked framing).
    pub const BASE_11: &str = "urn:ietf:params:netconf:base:1.1";
    /// `:candidate`.
    pub const CANDIDATE: &str = "urn:ietf:params:netconf:capability:candidate:1.0";
    /// `:confirmed-commit:1.1`.
    pub const CONFIRMED_COMMIT_11: &str = "urn:ietf:params:netconf:capability:confirmed-commit:1.1";
    /// `:confirmed-commit:1.0`.
    pub const CONFIRMED_COMMIT_10: &str = "urn:ietf:params:netconf:capability:confirmed-commit:1.0";
    /// `:validate:1.1`.
    pub const VALIDATE_11: &str = "urn:ietf:params:netconf:capability:validate:1.1";
    /// `:validate:1.0`.
    pub const VALIDATE_10: &str = "urn:ietf:params:netconf:capability:validate:1.0";
    /// `:rollback-on-error`.
    pub const ROLLBACK_ON_ERROR: &str = "urn:ietf:params:netconf:capability:rollback-on-error:1.0";
    /// `:xpath`.
    pub const XPATH: &str = "urn:ietf:params:netconf:capability:xpath:1.0";
}

impl Capabilities {
    /// From the URIs of a hello.
    #[must_use]
    pub fn new(uris: impl IntoIterator<Item = String>) -> Capabilities {
        Capabilities {
            uris: uris.into_iter().collect(),
        }
    }

    /// Whether `uri` was advertised (ignoring any `?parameters`).
    #[must_use]
    pub fn has(&self, uri: &str) -> bool {
        self.uris.iter().any(|u| u.split('?').next() == Some(uri))
    }

    /// base:1.1.
    #[must_use]
    pub fn base11(&self) -> bool {
        self.has(cap::BASE_11)
    }

    /// `:candidate`.
    #[must_use]
    pub fn candidate(&self) -> bool {
        self.has(cap::CANDIDATE)
    }

    /// `:confirmed-commit` (1.0 or 1.1).
    #[must_use]
    pub fn confirmed_commit(&self) -> bool {
        self.has(cap::CONFIRMED_COMMIT_11) || self.has(cap::CONFIRMED_COMMIT_10)
    }

    /// `:validate` (1.0 or 1.1).
    #[must_use]
    pub fn validate(&self) -> bool {
        self.has(cap::VALIDATE_11) || self.has(cap::VALIDATE_10)
    }

    /// `:rollback-on-error`.
    #[must_use]
    pub fn rollback_on_error(&self) -> bool {
        self.has(cap::ROLLBACK_ON_ERROR)
    }

    /// YANG modules advertised (`?module=NAME`).
    pub fn modules(&self) -> impl Iterator<Item = &str> {
        self.uris.iter().filter_map(|u| {
            let q = u.split_once('?')?.1;
            q.split('&')
                .find_map(|kv| kv.strip_prefix("module="))
                .or_else(|| q.split("&amp;").find_map(|kv| kv.strip_prefix("module=")))
        })
    }

    /// Every URI.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.uris.iter().map(String::as_str)
    }
}

/// An open NETCONF session.
pub struct Session {
    ssh: ssh2::Session,
    channel: SshChannel,
    decoder: FrameDecoder,
    capabilities: Capabilities,
    session_id: u32,
    next_id: u64,
    rpc_timeout: Duration,
    keepalive: Option<Duration>,
    last_io: Instant,
    label: String,
    buf: Vec<u8>,
    /// A second handle on the TCP socket libssh2 owns, to re-arm
    /// `TCP_QUICKACK` before each read: the server side writes replies in
    /// several small packets (chunk headers, data, trailer) without
    /// `TCP_NODELAY`, and a delayed ACK from us would stall each reply by
    /// up to 40 ms under Nagle.
    tcp: Option<TcpStream>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.label)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

fn io_error(e: std::io::Error, what: &str, after: Duration) -> NetconfError {
    if matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) {
        NetconfError::Timeout {
            what: what.to_owned(),
            after,
        }
    } else {
        NetconfError::Io(e)
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

impl Session {
    /// Connects, authenticates, verifies the host key, opens the `netconf`
    /// subsystem and exchanges hellos. Framing follows the capabilities:
    /// chunked when both sides speak base:1.1.
    ///
    /// # Errors
    /// [`NetconfError`] naming the failed step.
    pub fn connect(cfg: &SessionConfig) -> Result<Session, NetconfError> {
        let started = Instant::now();
        let (host, port) = (cfg.host.clone(), cfg.port);
        let addrs: Vec<_> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|source| NetconfError::Resolve {
                host: host.clone(),
                port,
                source,
            })?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, cfg.connect_timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some((addr.to_string(), e)),
            }
        }
        let tcp = match (tcp, last) {
            (Some(t), _) => t,
            (None, Some((addr, source))) => return Err(NetconfError::Connect { addr, source }),
            (None, None) => {
                return Err(NetconfError::Resolve {
                    host,
                    port,
                    source: std::io::Error::other("no addresses"),
                });
            }
        };
        // Without TCP_NODELAY every small SSH packet waits for the peer's
        // delayed ACK (~40 ms per round trip on Linux).
        tcp.set_nodelay(true).map_err(NetconfError::Io)?;
        let tcp_handle = tcp.try_clone().ok();
        quickack(tcp_handle.as_ref());
        let ssh_err = |stage: &'static str| {
            let host = host.clone();
            move |source: ssh2::Error| NetconfError::Ssh {
                stage,
                host,
                port,
                source,
            }
        };
        let mut ssh = ssh2::Session::new().map_err(ssh_err("session setup"))?;
        ssh.set_timeout(millis(cfg.connect_timeout));
        ssh.set_tcp_stream(tcp);
        // The setup steps run non-blocking so TCP_QUICKACK can be re-armed
        // before every wait: sshd does not set TCP_NODELAY for a subsystem
        // session, so each multi-packet answer (banner + KEXINIT, auth
        // success + channel confirmation) otherwise stalls on our delayed
        // ACK for up to 40 ms.
        let deadline = started + cfg.connect_timeout;
        let stepper = Stepper {
            ssh: ssh.clone(),
            tcp: tcp_handle.as_ref(),
            deadline,
        };
        if stepper.tcp.is_some() {
            ssh.set_blocking(false);
        }
        stepper.run(|| ssh.handshake()).map_err(|e| {
            timeout_or(
                e,
                "SSH handshake",
                cfg.connect_timeout,
                ssh_err("handshake"),
            )
        })?;
        verify_host_key(&ssh, cfg)?;
        stepper
            .run(|| match &cfg.auth {
                Auth::Password(pw) => ssh.userauth_password(&cfg.username, pw),
                Auth::KeyFile { path, passphrase } => {
                    ssh.userauth_pubkey_file(&cfg.username, None, path, passphrase.as_deref())
                }
            })
            .map_err(|e| NetconfError::Auth {
                user: cfg.username.clone(),
                host: host.clone(),
                port,
                reason: e.message().to_owned(),
            })?;
        if !ssh.authenticated() {
            return Err(NetconfError::Auth {
                user: cfg.username.clone(),
                host,
                port,
                reason: "server did not accept the credentials".to_owned(),
            });
        }
        if let Some(k) = cfg.keepalive {
            ssh.set_keepalive(true, u32::try_from(k.as_secs()).unwrap_or(u32::MAX).max(1));
        }
        let mut channel = stepper
            .run(|| ssh.channel_session())
            .map_err(ssh_err("channel open"))?;
        stepper
            .run(|| channel.subsystem("netconf"))
            .map_err(ssh_err("netconf subsystem request"))?;
        ssh.set_blocking(true);
        let mut session = Session {
            ssh,
            channel: SshChannel::new(channel),
            decoder: FrameDecoder::new(Framing::EndOfMessage, cfg.max_message_bytes),
            capabilities: Capabilities::default(),
            session_id: 0,
            next_id: 1,
            rpc_timeout: cfg.rpc_timeout,
            keepalive: cfg.keepalive,
            last_io: Instant::now(),
            label: format!("{host}:{port}"),
            buf: vec![0; 64 * 1024],
            tcp: tcp_handle,
        };
        session.send(ops::CLIENT_HELLO.as_bytes())?;
        let remaining = cfg.connect_timeout.saturating_sub(started.elapsed());
        let hello = reply::parse_hello(&session.receive("hello", remaining)?)?;
        session.capabilities = Capabilities::new(hello.capabilities);
        session.session_id = hello.session_id;
        if session.capabilities.base11() {
            session.decoder.set_framing(Framing::Chunked);
        }
        session.ssh.set_timeout(millis(cfg.rpc_timeout));
        tracing::debug!(peer = %session.label, session_id = session.session_id, chunked = session.capabilities.base11(), elapsed_ms = started.elapsed().as_millis(), "netconf session open");
        Ok(session)
    }

    /// The server's capabilities.
    #[must_use]
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The server-assigned session id.
    #[must_use]
    pub fn session_id(&self) -> u32 {
        self.session_id
    }

    /// The framing in use.
    #[must_use]
    pub fn framing(&self) -> Framing {
        self.decoder.framing()
    }

    fn send(&mut self, body: &[u8]) -> Result<(), NetconfError> {
        let frame = encode(self.decoder.framing(), body);
        let after = self.rpc_timeout;
        // No flush: libssh2 sends on write, and a raw channel flush would
        // discard the reply data already read (see `SshChannel`).
        self.channel
            .write_all(&frame)
            .map_err(|e| io_error(e, "write", after))?;
        self.last_io = Instant::now();
        Ok(())
    }

    fn receive(&mut self, what: &str, timeout: Duration) -> Result<Vec<u8>, NetconfError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(msg) = self.decoder.next_message()? {
                self.last_io = Instant::now();
                return Ok(msg);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(NetconfError::Timeout {
                    what: what.to_owned(),
                    after: timeout,
                });
            }
            self.ssh.set_timeout(millis(deadline - now));
            quickack(self.tcp.as_ref());
            let n = match self.channel.read(&mut self.buf) {
                Ok(n) => n,
                // libssh2 can answer EAGAIN (or time out early) on a blocking
                // channel when the packet it read was not channel data
                // (window adjust, keepalive reply): read again until the
                // deadline instead of failing the whole exchange.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) && Instant::now() < deadline =>
                {
                    continue;
                }
                Err(e) => return Err(io_error(e, what, timeout)),
            };
            if n == 0 {
                return Err(NetconfError::Closed {
                    mid_message: self.decoder.has_partial(),
                });
            }
            let (decoder, buf) = (&mut self.decoder, &self.buf);
            decoder.push(&buf[..n]);
        }
    }

    /// Sends one operation and returns its reply. `rpc-error`s of severity
    /// error become [`NetconfError::Rpc`]; warnings stay in the reply.
    ///
    /// # Errors
    /// [`NetconfError`].
    pub fn rpc(&mut self, op: &Operation) -> Result<RpcReply, NetconfError> {
        self.rpc_xml(op.name(), &op.to_xml())
    }

    /// Sends a raw operation element (for vendor RPCs).
    ///
    /// # Errors
    /// [`NetconfError`].
    pub fn rpc_xml(
        &mut self,
        name: &'static str,
        operation: &str,
    ) -> Result<RpcReply, NetconfError> {
        if let Some(k) = self.keepalive
            && self.last_io.elapsed() >= k
        {
            self.ssh
                .keepalive_send()
                .map_err(|source| NetconfError::Ssh {
                    stage: "keepalive",
                    host: self.label.clone(),
                    port: 0,
                    source,
                })?;
        }
        let id = self.next_id;
        self.next_id += 1;
        let started = Instant::now();
        self.send(ops::rpc(id, operation).as_bytes())?;
        let msg = self.receive(name, self.rpc_timeout)?;
        let reply = reply::parse_reply(&msg)?;
        tracing::trace!(peer = %self.label, operation = name, message_id = id, bytes = msg.len(), elapsed_us = started.elapsed().as_micros(), "rpc");
        if reply.message_id.as_deref() != Some(id.to_string().as_str()) {
            return Err(NetconfError::MessageId {
                expected: id,
                got: reply.message_id,
            });
        }
        if reply.fatal_errors().next().is_some() {
            return Err(NetconfError::Rpc {
                operation: name,
                errors: reply.errors,
            });
        }
        if !reply.ok && reply.data.is_none() && reply.errors.is_empty() {
            return Err(NetconfError::EmptyReply { operation: name });
        }
        Ok(reply)
    }

    fn data(&mut self, op: &Operation) -> Result<String, NetconfError> {
        let reply = self.rpc(op)?;
        reply.data.ok_or(NetconfError::EmptyReply {
            operation: op.name(),
        })
    }

    /// `<get>`: state and configuration; returns the inner XML of `<data>`.
    ///
    /// # Errors
    /// [`NetconfError`].
    pub fn get(&mut self, filter: Option<Filter>) -> Result<String, NetconfError> {
        self.data(&Operation::Get(filter))
    }

    /// `<get-config>`; returns the inner XML of `<data>`.
    ///
    /// # Errors
    /// [`NetconfError`].
    pub fn get_config(
        &mut self,
        source: Datastore,
        filter: Option<Filter>,
    ) -> Result<String, NetconfError> {
        self.data(&Operation::GetConfig(source, filter))
    }

    /// `<edit-config>`.
    ///
    /// # Errors
    /// [`NetconfError`].
    pub fn edit_config(&mut self, edit: EditConfig) -> Result<(), NetconfError> {
        self.rpc(&Operation::EditConfig(edit)).map(drop)
    }

    /// `<lock>`.
    ///
    /// # Errors
    /// [`NetconfError`]; `lock-denied` carries the holder's session id in
    /// `error-info`.
    pub fn lock(&mut self, target: Datastore) -> Result<(), NetconfError> {
        self.rpc(&Operation::Lock(target)).map(drop)
    }

    /// `<unlock>`.
    ///
    /// # Errors
    /// [`NetconfError`].
    pub fn unlock(&mut self, target: Datastore) -> Result<(), NetconfError> {
        self.rpc(&Operation::Unlock(target)).map(drop)
    }

    /// `<discard-changes>`.
    ///
    /// # Errors
    /// [`NetconfError`].
    pub fn discard_changes(&mut self) -> Result<(), NetconfError> {
        self.rpc(&Operation::DiscardChanges).map(drop)
    }

    /// `<validate>`.
    ///
    /// # Errors
    /// [`NetconfError`].
    pub fn validate(&mut self, source: Datastore) -> Result<(), NetconfError> {
        self.rpc(&Operation::Validate(source)).map(drop)
    }

    /// `<commit>`, plain or confirmed.
    ///
    /// # Errors
    /// [`NetconfError`]; [`NetconfError::MissingCapability`] for a confirmed
    /// commit on a server without `:confirmed-commit`.
    pub fn commit(&mut self, commit: Commit) -> Result<(), NetconfError> {
        if (commit.confirmed || commit.persist_id.is_some())
            && !self.capabilities.confirmed_commit()
        {
            return Err(NetconfError::MissingCapability {
                capability: cap::CONFIRMED_COMMIT_11.to_owned(),
            });
        }
        self.rpc(&Operation::Commit(commit)).map(drop)
    }

    /// `<cancel-commit>`.
    ///
    /// # Errors
    /// [`NetconfError`].
    pub fn cancel_commit(&mut self, persist_id: Option<String>) -> Result<(), NetconfError> {
        self.rpc(&Operation::CancelCommit(persist_id)).map(drop)
    }

    /// `<kill-session>` of another session.
    ///
    /// # Errors
    /// [`NetconfError`].
    pub fn kill_session(&mut self, session_id: u32) -> Result<(), NetconfError> {
        self.rpc(&Operation::KillSession(session_id)).map(drop)
    }

    /// `<close-session>`, then closes the channel.
    ///
    /// # Errors
    /// [`NetconfError`].
    pub fn close(mut self) -> Result<(), NetconfError> {
        let r = self.rpc(&Operation::CloseSession).map(drop);
        let _ = self.channel.close();
        let _ = self.ssh.disconnect(None, "close-session", None);
        r
    }
}

/// Asks the kernel to ACK received segments at once (Linux resets the
/// mode on its own, so this is re-armed before every read).
/// Drives one libssh2 call in non-blocking mode to completion, waiting for
/// the socket between attempts with `TCP_QUICKACK` re-armed, until a
/// deadline. Without a socket handle the session stays blocking and the
/// call runs once.
struct Stepper<'a> {
    ssh: ssh2::Session,
    tcp: Option<&'a TcpStream>,
    deadline: Instant,
}

/// libssh2's `LIBSSH2_ERROR_EAGAIN`.
const EAGAIN: i32 = -37;
/// libssh2's `LIBSSH2_ERROR_TIMEOUT`.
const ETIMEOUT: i32 = -9;

impl Stepper<'_> {
    fn run<T>(&self, mut f: impl FnMut() -> Result<T, ssh2::Error>) -> Result<T, ssh2::Error> {
        loop {
            match f() {
                Err(e) if e.code() == ssh2::ErrorCode::Session(EAGAIN) => {
                    let Some(tcp) = self.tcp else { return Err(e) };
                    let now = Instant::now();
                    if now >= self.deadline {
                        return Err(ssh2::Error::new(
                            ssh2::ErrorCode::Session(ETIMEOUT),
                            "timed out during session setup",
                        ));
                    }
                    self.wait(tcp, self.deadline - now);
                }
                other => return other,
            }
        }
    }

    /// Waits until the socket is readable (or, when libssh2 is blocked on
    /// sending, briefly), at most `left`.
    fn wait(&self, tcp: &TcpStream, left: Duration) {
        quickack(Some(tcp));
        if self.ssh.block_directions() == ssh2::BlockDirections::Outbound {
            std::thread::sleep(Duration::from_micros(200).min(left));
            return;
        }
        // libssh2 keeps the socket non-blocking; a blocking peek with a
        // timeout on the shared descriptor is the portable readiness wait.
        if tcp.set_nonblocking(false).is_ok() {
            let _ = tcp.set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let _ = tcp.peek(&mut [0u8; 1]);
            let _ = tcp.set_read_timeout(None);
            let _ = tcp.set_nonblocking(true);
        }
        quickack(Some(tcp));
    }
}

fn quickack(tcp: Option<&TcpStream>) {
    if let Some(t) = tcp {
        let _ = socket2::SockRef::from(t).set_tcp_quickack(true);
    }
}

fn timeout_or(
    e: ssh2::Error,
    what: &str,
    after: Duration,
    other: impl FnOnce(ssh2::Error) -> NetconfError,
) -> NetconfError {
    if matches!(e.code(), ssh2::ErrorCode::Session(-9)) {
        NetconfError::Timeout {
            what: what.to_owned(),
            after,
        }
    } else {
        other(e)
    }
}

fn verify_host_key(ssh: &ssh2::Session, cfg: &SessionConfig) -> Result<(), NetconfError> {
    let known_hosts = cfg.host_key.known_hosts.display().to_string();
    known_hosts::verify(ssh, &cfg.host, cfg.port, &cfg.host_key).map_err(|r| match r.problem {
        Problem::NoKey => NetconfError::KnownHosts {
            path: known_hosts,
            reason: "server offered no host key".to_owned(),
        },
        Problem::File(reason) => NetconfError::KnownHosts {
            path: known_hosts,
            reason,
        },
        Problem::Mismatch => NetconfError::HostKeyMismatch {
            host: cfg.host.clone(),
            port: cfg.port,
            fingerprint: r.fingerprint,
            known_hosts,
        },
        Problem::Unknown => NetconfError::UnknownHostKey {
            host: cfg.host.clone(),
            port: cfg.port,
            fingerprint: r.fingerprint,
            known_hosts,
        },
    })
}
