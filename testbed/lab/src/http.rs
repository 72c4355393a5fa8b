//! The lab's web backend: answers every HTTP request with its node name, so
//! a client looping over a load-balanced address sees which backend served.
//!
//! Deliberately tiny (std only, HTTP/1.0 semantics, one thread per
//! connection): it starts in milliseconds and has no dependency to install.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use thiserror::Error;

/// Server start-up failures.
#[derive(Debug, Error)]
pub enum HttpError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The response body: the node name and the port, one line.
#[must_use]
pub fn body(name: &str, port: u16) -> String {
    format!("{name} {port}\n")
}

fn answer(mut stream: TcpStream, name: &str, port: u16) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // Drain the header block.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let head = request.starts_with("HEAD ");
    let text = body(name, port);
    let mut out = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Served-By: {name}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    if !head {
        out.push_str(&text);
    }
    let _ = stream.write_all(out.as_bytes());
    tracing::debug!(request = request.trim(), port, "served");
}

/// Serves on every address in `listen` until the process is killed.
///
/// # Errors
/// [`HttpError::Bind`] when an address cannot be bound (nothing is served
/// then: all addresses are bound before the first request is accepted).
pub fn serve(name: &str, listen: &[SocketAddr]) -> Result<(), HttpError> {
    let listeners = listen
        .iter()
        .map(|a| {
            TcpListener::bind(a)
                .map(|l| (l, a.port()))
                .map_err(|source| HttpError::Bind { addr: *a, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    tracing::info!(name, ?listen, "serving");
    std::thread::scope(|s| {
        for (l, port) in &listeners {
            s.spawn(move || {
                for stream in l.incoming().flatten() {
                    let n = name.to_owned();
                    let p = *port;
                    std::thread::spawn(move || answer(stream, &n, p));
                }
            });
        }
    });
    Ok(())
}
