//! An SSH channel whose `flush` cannot throw away what the device sent.
//!
//! In the `ssh2` crate, `Write::flush` on a channel calls
//! `libssh2_channel_flush_ex`, which *discards the channel's unread incoming
//! data* (libssh2 documents it as flushing the read buffer) and reports the
//! number of bytes dropped as success. A write pulls whatever the server has
//! already sent into that buffer, so a flush after a write deletes it: a
//! NETCONF hello that arrived before ours was sent vanished in 2,000-byte
//! blocks (netconf-subsystem's relay size), and CLI output could too.
//! libssh2 sends on `write` itself, so there is nothing to flush outbound:
//! here `flush` does nothing, and the raw channel is never exposed.

use std::io::{self, Read, Write};

/// An open session channel (subsystem or shell) of one SSH connection.
pub struct SshChannel(ssh2::Channel);

impl SshChannel {
    /// Wraps a channel; from here on it is only read and written through
    /// this type.
    #[must_use]
    pub fn new(channel: ssh2::Channel) -> Self {
        Self(channel)
    }

    /// Whether the remote end has sent EOF.
    #[must_use]
    pub fn eof(&self) -> bool {
        self.0.eof()
    }

    /// Closes the channel (best effort: the peer may already be gone).
    ///
    /// # Errors
    /// libssh2's error when the close message cannot be sent.
    pub fn close(&mut self) -> Result<(), ssh2::Error> {
        self.0.close()
    }
}

impl Read for SshChannel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for SshChannel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    /// Deliberately nothing: see the module documentation.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
