//! The metrics listener: a tiny HTTP/1.1 server on its own thread (`vtepd-metrics`) that
//! answers `GET /metrics` with a fresh scrape, `GET /` with a link to it, other paths with 404
//! and other methods with 405, one request per connection (`Connection: close`).
//!
//! Written by hand on mio (already the daemon's event loop) because the small HTTP server
//! crates do not bound what a scraper can take: tiny_http, the usual candidate, serves each
//! connection on a thread of a pool that grows as connections come, and its configuration (an
//! address and TLS) has no connection cap and no request deadline, so silent connections would
//! pile up threads. Requests are parsed by `httparse`. One thread serves every connection
//! without ever blocking on one:
//!
//! - at most [`MAX_CONNECTIONS`] connections at once; one more closes the connection that has
//!   waited longest for its request (a real scraper sends its request as soon as it is
//!   connected, so silent connections never keep it out), or, if every connection is being
//!   answered, is refused with a 503;
//! - a request must be complete within [`REQUEST_TIMEOUT`] of the connection being accepted
//!   and fit in [`MAX_REQUEST`] bytes (else 431, and closed);
//! - writing an answer may take at most [`WRITE_TIMEOUT`] (a scraper that never reads loses
//!   its answer then).
//!
//! A scrape is rendered on this thread from the control plane's state; no worker and no
//! control client ever waits for this thread.

use crate::error::Failure;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Connections served at once (waiting for their request or being answered).
pub const MAX_CONNECTIONS: usize = 16;
/// Longest request (request line and headers) read; a longer one is answered 431.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a scraper may take, from being accepted, to send its whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing one answer may take in all (the scraper reading too slowly or not at all).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Headers parsed in a request; more is answered 431.
const MAX_HEADERS: usize = 64;
/// How soon accepting is tried again after it failed (out of descriptors, ...).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);
/// Tokens from here on are connections (`FIRST + slot`).
const FIRST: usize = 2;

/// Binds the metrics listener: a one-line error when the address cannot be listened on. An
/// address that is not local, a port in use or one needing a privilege is a configuration
/// error (status 2).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, Failure> {
    let l = std::net::TcpListener::bind(addr).map_err(|e| {
        let msg = format!("cannot listen for metrics on {addr}: {e}");
        match e.kind() {
            ErrorKind::AddrInUse | ErrorKind::AddrNotAvailable | ErrorKind::PermissionDenied => {
                Failure::Usage(msg)
            }
            _ => Failure::Runtime(msg),
        }
    })?;
    l.set_nonblocking(true)
        .map_err(|e| Failure::Runtime(format!("metrics listener {addr}: {e}")))?;
    Ok(l)
}

/// Renders one scrape's body (the OpenMetrics text), or `None` if it could not be made.
pub type Render = Box<dyn Fn() -> Option<String> + Send>;

enum State {
    /// Waiting for the whole request.
    Reading(Vec<u8>),
    /// Writing the answer from `at`.
    Writing { out: Vec<u8>, at: usize },
}

struct Conn {
    stream: TcpStream,
    accepted: Instant,
    deadline: Instant,
    state: State,
}

/// The metrics server; [`MetricsServer::run`] on its own thread.
pub struct MetricsServer {
    listener: TcpListener,
    addr: SocketAddr,
    poll: Poll,
    stop: Arc<AtomicBool>,
    conns: Vec<Option<Conn>>,
    render: Render,
    /// Accepting failed (no descriptors, ...): try again after [`ACCEPT_RETRY`].
    retry_accept: bool,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// A server on a bound, non-blocking listener; returns its waker (set `stop`, then wake).
    pub fn new(
        listener: std::net::TcpListener,
        render: Render,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<(MetricsServer, Arc<Waker>)> {
        let addr = listener.local_addr()?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let srv = MetricsServer {
            listener,
            addr,
            poll,
            stop,
            conns: (0..MAX_CONNECTIONS).map(|_| None).collect(),
            render,
            retry_accept: false,
        };
        Ok((srv, waker))
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop` is set (and the waker woken).
    pub fn run(mut self) -> Result<(), String> {
        info!("metrics on http://{}/metrics", self.addr);
        let mut events = Events::with_capacity(64);
        while !self.stop.load(Ordering::Acquire) {
            let timeout = self.next_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("metrics server: poll failed: {e}"));
            }
            for ev in &events {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    WAKE => {}
                    Token(t) => self.ready(t - FIRST),
                }
            }
            if self.retry_accept {
                self.accept_all();
            }
            self.expire(Instant::now());
        }
        Ok(())
    }

    /// Until the earliest deadline (or the accept retry), `None` when idle.
    fn next_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let deadline = self
            .conns
            .iter()
            .flatten()
            .map(|c| c.deadline.saturating_duration_since(now))
            .min();
        let retry = self.retry_accept.then_some(ACCEPT_RETRY);
        match (deadline, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn accept_all(&mut self) {
        self.retry_accept = false;
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("metrics server: accept failed: {e}");
                    self.retry_accept = true;
                    return;
                }
            }
        }
    }

    /// Takes a new connection into a free slot, making room by closing the connection that has
    /// waited longest for its request; refused (503) when every slot is answering.
    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let slot = match self.conns.iter().position(Option::is_none) {
            Some(s) => s,
            None => {
                let oldest = self
                    .conns
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
                    .filter(|(_, c)| matches!(c.state, State::Reading(_)))
                    .min_by_key(|(_, c)| c.accepted)
                    .map(|(i, _)| i);
                match oldest {
                    Some(i) => {
                        debug!(
                            "metrics server: too many connections, closing the oldest silent one"
                        );
                        self.close(i);
                        i
                    }
                    None => {
                        debug!(%peer, "metrics server: every connection is being answered, refused");
                        // Best effort, without waiting: the socket buffer takes it or not.
                        let _ = stream.write_all(&response(
                            "503 Service Unavailable",
                            "text/plain; charset=utf-8",
                            b"too many scrapes at once\n",
                            &[],
                        ));
                        return;
                    }
                }
            }
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(FIRST + slot), interest)
        {
            warn!("metrics server: cannot watch a connection: {e}");
            return;
        }
        let now = Instant::now();
        self.conns[slot] = Some(Conn {
            stream,
            accepted: now,
            deadline: now + REQUEST_TIMEOUT,
            state: State::Reading(Vec::new()),
        });
    }

    fn close(&mut self, slot: usize) {
        if let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    fn expire(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            if self.conns[slot].as_ref().is_some_and(|c| c.deadline <= now) {
                debug!("metrics server: a connection passed its deadline, closed");
                self.close(slot);
            }
        }
    }

    /// The connection in `slot` is readable or writable: read its request, or write its answer.
    fn ready(&mut self, slot: usize) {
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if let State::Reading(buf) = &mut c.state {
            match read_request(&mut c.stream, buf) {
                Progress::Wait => return,
                Progress::Closed => return self.close(slot),
                Progress::Request(req) => {
                    let out = self.answer(&req);
                    let Some(c) = self.conns[slot].as_mut() else {
                        return;
                    };
                    c.state = State::Writing { out, at: 0 };
                    c.deadline = Instant::now() + WRITE_TIMEOUT;
                }
            }
        }
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        if let State::Writing { out, at } = &mut c.state {
            loop {
                if *at == out.len() {
                    let _ = c.stream.shutdown(std::net::Shutdown::Write);
                    return self.close(slot);
                }
                match c.stream.write(&out[*at..]) {
                    Ok(0) => return self.close(slot),
                    Ok(n) => *at += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return self.close(slot),
                }
            }
        }
    }

    /// The whole answer to one request.
    fn answer(&self, req: &Parsed) -> Vec<u8> {
        const TEXT: &str = "text/plain; charset=utf-8";
        let path = match req {
            Parsed::TooLarge => {
                return response(
                    "431 Request Header Fields Too Large",
                    TEXT,
                    b"request too large\n",
                    &[],
                );
            }
            Parsed::Bad => return response("400 Bad Request", TEXT, b"bad request\n", &[]),
            Parsed::Get(path) => path.as_str(),
            Parsed::Other => {
                return response(
                    "405 Method Not Allowed",
                    TEXT,
                    b"only GET\n",
                    &[("Allow", "GET")],
                );
            }
        };
        match path.split('?').next().unwrap_or_default() {
            "/metrics" => match (self.render)() {
                Some(body) => response("200 OK", super::CONTENT_TYPE, body.as_bytes(), &[]),
                None => response(
                    "500 Internal Server Error",
                    TEXT,
                    b"cannot encode the metrics\n",
                    &[],
                ),
            },
            "/" => response(
                "200 OK",
                "text/html; charset=utf-8",
                b"<html><head><title>vtepd</title></head><body>\
<a href=\"/metrics\">metrics</a></body></html>\n",
                &[],
            ),
            _ => response("404 Not Found", TEXT, b"not found: try /metrics\n", &[]),
        }
    }
}

/// What a complete request asks.
enum Parsed {
    /// `GET` of this target.
    Get(String),
    /// Another method.
    Other,
    /// Longer than [`MAX_REQUEST`], or too many headers.
    TooLarge,
    /// Not HTTP.
    Bad,
}

enum Progress {
    /// Not complete yet: wait for more.
    Wait,
    /// The peer closed or failed before its request was complete.
    Closed,
    /// The request (or why it is refused).
    Request(Parsed),
}

/// Reads what is there (until it would block) and parses what was read so far.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Progress {
    let mut chunk = [0u8; 2048];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Progress::Closed,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                match parse(buf) {
                    Some(p) => return Progress::Request(p),
                    None if buf.len() >= MAX_REQUEST => {
                        return Progress::Request(Parsed::TooLarge);
                    }
                    None => {}
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Wait,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Progress::Closed,
        }
    }
}

/// Parses a request read so far: `None` while it is incomplete.
fn parse(buf: &[u8]) -> Option<Parsed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(len)) if len > MAX_REQUEST => Some(Parsed::TooLarge),
        Ok(httparse::Status::Complete(_)) => Some(match (req.method, req.path) {
            (Some("GET"), Some(path)) => Parsed::Get(path.to_owned()),
            _ => Parsed::Other,
        }),
        Err(httparse::Error::TooManyHeaders) => Some(Parsed::TooLarge),
        Err(_) => Some(Parsed::Bad),
    }
}

/// A whole HTTP/1.1 response that closes the connection.
fn response(status: &str, content_type: &str, body: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
Connection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        out += &format!("{k}: {v}\r\n");
    }
    out += "\r\n";
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_or_wait() {
        assert!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").is_none());
        assert!(matches!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Parsed::Get(p)) if p == "/metrics"
        ));
        assert!(matches!(
            parse(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Some(Parsed::Other)
        ));
        assert!(matches!(
            parse(b"\x16\x03\x01 hello\r\n\r\n"),
            Some(Parsed::Bad)
        ));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&many), Some(Parsed::TooLarge)));
    }

    #[test]
    fn responses_are_whole() {
        let r = response(
            "405 Method Not Allowed",
            "text/plain",
            b"no\n",
            &[("Allow", "GET")],
        );
        let text = String::from_utf8(r).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
Connection: close\r\nAllow: GET\r\n\r\nno\n"
        );
    }
}
