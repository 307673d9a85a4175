//! The control socket's transport: binds the Unix socket (mode 0600, stale file handled), reads
//! one request line per client and writes the answer of a [`Handle`] back, each client on a
//! short-lived thread of its own with one deadline for the whole exchange. What a request does
//! is the handler's (the daemon implements [`Handle`] on its state); nothing here knows the
//! daemon.

use super::protocol::{MAX_REQUEST, Request, Response};
use crate::error::Failure;
use crate::sys;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);
/// How long one client may take to send its request and read the answer, in all.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Clients served at the same time; one more is told the daemon is busy.
const MAX_CLIENTS: usize = 16;

/// The control socket's file; removed on drop if it is still the one we created.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(md) if md.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    warn!("cannot remove control socket {}: {e}", self.path.display());
                }
            }
            _ => {}
        }
    }
}

/// Binds the control socket at `path`: creates the parent directory, removes a stale socket
/// nobody answers on, refuses when a live daemon answers, creates the socket with mode 0600.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketFile), Failure> {
    let shown = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::Runtime(format!(
                "cannot create control socket directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(Failure::Runtime(format!(
                    "another vtepd is answering on {shown} (stop it, or use another --control)"
                )));
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                info!("removing stale control socket {shown}");
                std::fs::remove_file(path).map_err(|e| {
                    Failure::Runtime(format!("cannot remove stale control socket {shown}: {e}"))
                })?;
            }
            Err(e) => return Err(Failure::Runtime(format!("control socket {shown}: {e}"))),
        },
        Ok(_) => {
            return Err(Failure::Runtime(format!(
                "{shown} exists and is not a socket"
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Failure::Runtime(format!("control socket {shown}: {e}"))),
    }
    // Only the main thread runs at this point, so the process-wide umask may be borrowed.
    let listener = sys::with_umask(0o177, || UnixListener::bind(path))
        .map_err(|e| Failure::Runtime(format!("cannot bind control socket {shown}: {e}")))?;
    let md = std::fs::metadata(path)
        .map_err(|e| Failure::Runtime(format!("control socket {shown}: {e}")))?;
    let file = SocketFile {
        path: path.to_owned(),
        ino: md.ino(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Failure::Runtime(format!("cannot chmod control socket {shown}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Failure::Runtime(format!("control socket {shown}: {e}")))?;
    Ok((listener, file))
}

/// Answers control requests; implemented by the daemon on its shared state.
pub trait Handle: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, req: Request) -> Response;
}

/// The control thread's loop.
#[derive(Debug)]
pub struct Server<H> {
    listener: UnixListener,
    handler: Arc<H>,
    active: Arc<AtomicUsize>,
    poll: Poll,
    stop: Arc<AtomicBool>,
}

impl<H: Handle> Server<H> {
    /// A server on a bound, non-blocking listener; returns its waker (set `stop`, then wake).
    pub fn new(
        listener: UnixListener,
        handler: H,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<(Server<H>, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let fd = listener.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)?;
        Ok((
            Server {
                listener,
                handler: Arc::new(handler),
                active: Arc::new(AtomicUsize::new(0)),
                poll,
                stop,
            },
            waker,
        ))
    }

    /// Serves clients, each on its own short-lived thread (at most [`MAX_CLIENTS`] at once, so
    /// one slow or silent client never holds up the others), until `stop` is set.
    pub fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(8);
        loop {
            if let Err(e) = self.poll.poll(&mut events, None) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("control socket: poll failed: {e}"));
            }
            if self.stop.load(Ordering::Acquire) {
                self.wait_for_clients();
                return Ok(());
            }
            loop {
                match self.listener.accept() {
                    Ok((stream, _)) => self.dispatch(stream),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // EMFILE and friends: give up on this round, try again on the next event.
                        warn!("control socket: accept failed: {e}");
                        break;
                    }
                }
            }
        }
    }

    /// Waits (at most a little longer than one client's deadline) until no client thread holds
    /// the shared state, so that what it owns (kernel routes, in L3 mode) is released when the
    /// daemon drops it on the way out.
    fn wait_for_clients(&self) {
        let deadline = Instant::now() + CLIENT_TIMEOUT + Duration::from_secs(1);
        while self.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Hands one client to a thread of its own, or tells it the daemon is busy.
    fn dispatch(&self, stream: UnixStream) {
        if self.active.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            self.active.fetch_sub(1, Ordering::AcqRel);
            // The accepted socket is non-blocking: a client that does not read just misses this.
            let mut out = serde_json::to_vec(&Response::err(
                false,
                format!("vtepd is busy ({MAX_CLIENTS} control clients already connected)"),
            ))
            .unwrap_or_default();
            out.push(b'\n');
            if let Err(e) = (&stream).write_all(&out) {
                debug!("control client (busy): {e}");
            }
            return;
        }
        let (handler, active) = (Arc::clone(&self.handler), Arc::clone(&self.active));
        let spawned = std::thread::Builder::new()
            .name("vtepd-control-client".into())
            .spawn(move || {
                // Frees the slot however the thread ends (a panic included), and only after
                // this thread's handle on the shared state (declared later, dropped first).
                let _slot = Slot(active);
                let handler = handler;
                if let Err(e) = try_serve(&*handler, stream) {
                    debug!("control client: {e}");
                }
            });
        if let Err(e) = spawned {
            // The closure (and the stream in it) is gone: the client sees the connection close.
            warn!("control socket: cannot start a client thread: {e}");
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A taken client slot, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads one request, answers it; the whole exchange within [`CLIENT_TIMEOUT`].
fn try_serve(handler: &impl Handle, stream: UnixStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    // One deadline for the whole exchange: a per-read timeout alone would let a client that
    // drips a byte every second hold its thread (and a client slot) for hours.
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let resp = match read_request(&stream, deadline)? {
        RequestLine::TooLong => Response::err(true, "request too long"),
        RequestLine::Line(line) => match serde_json::from_slice::<Request>(line.trim_ascii()) {
            Ok(req) => {
                debug!(?req, "control request");
                handler.handle(req)
            }
            Err(e) => Response::err(true, format!("bad request: {e}")),
        },
    };
    let mut out = serde_json::to_vec(&resp).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write_response(&stream, &out, deadline)
}

/// What a client sent.
#[derive(Debug, PartialEq, Eq)]
enum RequestLine {
    /// The bytes before the first newline (or before end of stream).
    Line(Vec<u8>),
    /// More than [`MAX_REQUEST`] bytes without a newline.
    TooLong,
}

/// The time left until `deadline`, or a `TimedOut` error once it has passed.
fn remaining(deadline: Instant) -> std::io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(std::io::Error::new(
            ErrorKind::TimedOut,
            "client too slow: deadline passed",
        )),
    }
}

/// A socket timeout (`EAGAIN` on a blocking socket) reported as what it is.
fn timed_out(e: std::io::Error) -> std::io::Error {
    if e.kind() == ErrorKind::WouldBlock {
        std::io::Error::new(ErrorKind::TimedOut, "client too slow: deadline passed")
    } else {
        e
    }
}

/// Reads one request line from a blocking stream, giving up at `deadline`. Bytes are kept as
/// bytes, so invalid UTF-8 gets a "bad request" answer from the JSON parser.
fn read_request(stream: &UnixStream, deadline: Instant) -> std::io::Result<RequestLine> {
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        let n = match (&*stream).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(timed_out(e)),
        };
        if n == 0 {
            return Ok(RequestLine::Line(line));
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            return Ok(if line.len() as u64 > MAX_REQUEST {
                RequestLine::TooLong
            } else {
                RequestLine::Line(line)
            });
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() as u64 > MAX_REQUEST {
            return Ok(RequestLine::TooLong);
        }
    }
}

/// Writes the whole answer to a blocking stream, giving up at `deadline`.
fn write_response(stream: &UnixStream, mut out: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !out.is_empty() {
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        match (&*stream).write(out) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => out = &out[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(timed_out(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn a_client_dripping_bytes_is_cut_off_at_the_deadline() {
        let (server, client) = UnixStream::pair().unwrap();
        // One byte every 50 ms: each read finishes well inside any per-read timeout, but the
        // whole line takes about 2 s, far past the 300 ms deadline.
        let writer = thread::spawn(move || {
            for b in b"{\"cmd\":\"stats\"}\n"
                .iter()
                .chain(b"                    ")
            {
                if (&client).write_all(&[*b]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        let got = read_request(&server, Instant::now() + Duration::from_millis(300));
        let err = got.expect_err("a drip-fed request must not be served");
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        drop(server);
        writer.join().unwrap();
    }

    /// A handler holding some shared state (like the daemon's), answering every request.
    #[derive(Debug, Default)]
    struct Fake {
        state: Arc<()>,
    }

    impl Handle for Fake {
        fn handle(&self, _req: Request) -> Response {
            Response::ok(serde_json::json!({ "answered": true }))
        }
    }

    #[test]
    fn silent_clients_do_not_hold_up_the_next_one() {
        let dir = std::env::temp_dir().join(format!("vtepd-ctl-test-{}", std::process::id()));
        let path = dir.join("c.sock");
        let (listener, file) = bind(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (srv, waker) = Server::new(listener, Fake::default(), Arc::clone(&stop)).unwrap();
        let thread = thread::spawn(move || srv.run());
        // Three clients that connect and never send: served one at a time, they would hold the
        // control plane for 3 x CLIENT_TIMEOUT (6 s) before the request below got an answer.
        let silent: Vec<_> = (0..3)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        thread::sleep(Duration::from_millis(100));
        let c = UnixStream::connect(&path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
        (&c).write_all(b"{\"cmd\":\"peers_show\"}\n").unwrap();
        let mut answer = String::new();
        (&c).read_to_string(&mut answer)
            .expect("an answer while others stay silent");
        let resp: Response = serde_json::from_str(answer.trim()).unwrap();
        assert!(resp.ok, "{answer}");
        drop(silent);
        stop.store(true, Ordering::Release);
        waker.wake().unwrap();
        thread.join().unwrap().unwrap();
        drop(file);
        assert!(!path.exists(), "socket file left behind");
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn stopping_waits_for_client_threads_to_let_go_of_the_state() {
        let dir = std::env::temp_dir().join(format!("vtepd-ctl-stop-{}", std::process::id()));
        let path = dir.join("c.sock");
        let (listener, file) = bind(&path).unwrap();
        let h = Fake::default();
        let state = Arc::clone(&h.state);
        let stop = Arc::new(AtomicBool::new(false));
        let (srv, waker) = Server::new(listener, h, Arc::clone(&stop)).unwrap();
        let thread = thread::spawn(move || srv.run());
        // A client whose thread is still running (it never sends) when the server is stopped.
        let silent = UnixStream::connect(&path).unwrap();
        thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Release);
        waker.wake().unwrap();
        thread.join().unwrap().unwrap();
        assert_eq!(
            Arc::strong_count(&state),
            1,
            "a client thread still holds the shared state after the server stopped"
        );
        drop(silent);
        drop(file);
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn a_silent_client_times_out() {
        let (server, _client) = UnixStream::pair().unwrap();
        let err = read_request(&server, Instant::now() + Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
    }

    #[test]
    fn reads_one_line_and_refuses_an_endless_one() {
        let (server, client) = UnixStream::pair().unwrap();
        (&client).write_all(b"{\"cmd\":\"stats\"}\nrest").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            read_request(&server, deadline).unwrap(),
            RequestLine::Line(b"{\"cmd\":\"stats\"}".to_vec())
        );

        let (server, client) = UnixStream::pair().unwrap();
        let writer = thread::spawn(move || {
            let chunk = [b'x'; 4096];
            while (&client).write_all(&chunk).is_ok() {}
        });
        assert_eq!(
            read_request(&server, deadline).unwrap(),
            RequestLine::TooLong
        );
        drop(server);
        writer.join().unwrap();
    }

    #[test]
    fn invalid_utf8_is_a_bad_request_not_a_silent_hang_up() {
        let (server, client) = UnixStream::pair().unwrap();
        (&client).write_all(b"{\"cmd\":\"st\xffats\"}\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let RequestLine::Line(line) = read_request(&server, deadline).unwrap() else {
            panic!("a short line")
        };
        assert!(serde_json::from_slice::<Request>(&line).is_err());
    }
}
