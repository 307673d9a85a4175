//! The control socket's transport: binds the Unix socket (mode 0600, stale file handled), reads
//! one request line per client and writes the answer of a [`Handle`] back. What a request does
//! is the handler's (the daemon implements [`Handle`] on its state); nothing here knows the
//! daemon.
//!
//! The control thread accepts connections and reads their requests, all of them at once and
//! without blocking: a connection that has not sent its request yet costs a file descriptor
//! and a small buffer, never a thread. A complete request is answered on a short-lived thread
//! of its own, so a long answer or a slow reader never holds up the others. What a slow or
//! hostile client can take is bounded:
//!
//! - a request must arrive within [`REQUEST_TIMEOUT`] of the connection being accepted, and at
//!   most [`MAX_WAITING`] connections wait for theirs: one more closes the one that has waited
//!   longest (with an error line), so silent connections, however many and however fast they
//!   are opened again, never keep a real client's request from being read, since a real client
//!   sends it as soon as it is connected;
//! - at most [`MAX_ANSWERING`] requests are answered at once, and up to [`MAX_QUEUED`] more
//!   wait their turn in arrival order; only beyond that is a client told the daemon is busy;
//! - garbage (a request too long, not JSON, not a request) is answered by the control thread
//!   itself with a one-line error and takes no answering thread;
//! - an answer is written as it is produced (a [`Reply::Data`]: a million FDB entries are never
//!   one JSON value in memory); the client may keep it waiting at most [`WRITE_STALL`] at a
//!   time (not reading at all) and [`WRITE_WAIT`] in all (reading too slowly), so a client
//!   that stops reading, or reads a little at a time, loses its answer and frees its thread
//!   within the time the answer takes to produce plus [`WRITE_WAIT`].

use super::protocol::{MAX_REQUEST, Request, Response};
use crate::error::Failure;
use crate::sys;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{BufWriter, ErrorKind, Read, Write};
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
/// Tokens from here on are connections waiting for their request (`FIRST + id`).
const FIRST: usize = 2;
/// How long a client may take, from being accepted, to send its whole request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one write of an answer may wait for the client to make room (the client not
/// reading at all).
pub const WRITE_STALL: Duration = Duration::from_secs(2);
/// How long, in all, writing one answer may wait for the client to make room (a client that
/// reads, however slowly). The daemon's own time to produce the answer is not counted: a
/// client reading as it should waits for the daemon, never the other way round (a million FDB
/// entries, about 100 MB of JSON, reach the CLI in about a second).
pub const WRITE_WAIT: Duration = Duration::from_secs(10);
/// The answering thread's write buffer.
const WRITE_BUFFER: usize = 64 * 1024;
/// Connections waiting for their request; one more closes the one waiting longest.
pub const MAX_WAITING: usize = 128;
/// Requests answered at the same time, each on a thread of its own.
pub const MAX_ANSWERING: usize = 16;
/// Complete requests waiting for an answering thread; one more is told the daemon is busy.
pub const MAX_QUEUED: usize = 64;
/// Connections accepted in a row before the requests already accepted are read again.
const ACCEPT_BATCH: usize = 32;

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
    /// Answers one request: a whole response, or data written as it is produced.
    fn handle(&self, req: Request) -> Reply<'_>;
}

/// A writer of an answer's data, straight to the client.
type DataWriter<'a> = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()> + 'a>;

/// A [`Handle`]'s answer to one request.
pub enum Reply<'a> {
    /// A whole response: an error, or a small answer.
    Whole(Response),
    /// A success whose data (one JSON value) is written to the client as it is produced, so a
    /// large answer is never built in memory as a whole. What reaches the client is exactly
    /// the line `Response::ok(data)` would be.
    Data(DataWriter<'a>),
}

impl fmt::Debug for Reply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Whole(r) => f.debug_tuple("Whole").field(r).finish(),
            Reply::Data(_) => f.write_str("Data(..)"),
        }
    }
}

impl From<Response> for Reply<'_> {
    fn from(r: Response) -> Self {
        Reply::Whole(r)
    }
}

impl<'a> Reply<'a> {
    /// A success carrying `data`, serialized straight to the client.
    pub fn data<T: Serialize + 'a>(data: T) -> Reply<'a> {
        Reply::Data(Box::new(move |out| {
            serde_json::to_writer(out, &data).map_err(Into::into)
        }))
    }

    /// A success whose data is a JSON array of `rows`, each one made and serialized as it is
    /// written.
    pub fn rows<I>(rows: I) -> Reply<'a>
    where
        I: IntoIterator + 'a,
        I::Item: Serialize,
    {
        Reply::Data(Box::new(move |out| {
            out.write_all(b"[")?;
            for (i, row) in rows.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, &row)?;
            }
            out.write_all(b"]")
        }))
    }

    /// Writes the reply as one answer line (and flushes `out`).
    pub fn write_to(self, out: &mut dyn Write) -> std::io::Result<()> {
        match self {
            Reply::Whole(resp) => serde_json::to_writer(&mut *out, &resp)?,
            Reply::Data(data) => {
                out.write_all(br#"{"ok":true,"data":"#)?;
                data(&mut *out)?;
                out.write_all(b"}")?;
            }
        }
        out.write_all(b"\n")?;
        out.flush()
    }
}

/// The limits of a [`Server`] (the constants above; smaller ones in tests).
#[derive(Debug, Clone, Copy)]
struct Limits {
    request_timeout: Duration,
    write_stall: Duration,
    write_wait: Duration,
    max_waiting: usize,
    max_answering: usize,
    max_queued: usize,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        request_timeout: REQUEST_TIMEOUT,
        write_stall: WRITE_STALL,
        write_wait: WRITE_WAIT,
        max_waiting: MAX_WAITING,
        max_answering: MAX_ANSWERING,
        max_queued: MAX_QUEUED,
    };
}

/// A connection whose request line has not arrived (in full) yet.
#[derive(Debug)]
struct Waiting {
    stream: UnixStream,
    line: Vec<u8>,
    since: Instant,
}

/// How reading a waiting connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// A whole line (without its newline), or what came before the end of the stream.
    Line,
    /// The client hung up before sending anything.
    Gone,
    /// More than [`MAX_REQUEST`] bytes without a newline.
    TooLong,
}

/// A request read in full, waiting for a thread to answer it.
#[derive(Debug)]
struct Job {
    stream: UnixStream,
    req: Request,
}

/// The control thread's loop.
#[derive(Debug)]
pub struct Server<H> {
    listener: UnixListener,
    handler: Arc<H>,
    poll: Poll,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    limits: Limits,
    /// Connections waiting for their request, by id; ids grow, so the first is the oldest.
    waiting: BTreeMap<usize, Waiting>,
    next_id: usize,
    /// Complete requests waiting for an answering thread, in arrival order.
    queue: VecDeque<Job>,
    /// Answering threads running.
    active: Arc<AtomicUsize>,
}

impl<H: Handle> Server<H> {
    /// A server on a bound, non-blocking listener; returns its waker (set `stop`, then wake).
    pub fn new(
        listener: UnixListener,
        handler: H,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<(Server<H>, Arc<Waker>)> {
        Server::with_limits(listener, handler, stop, Limits::DEFAULT)
    }

    fn with_limits(
        listener: UnixListener,
        handler: H,
        stop: Arc<AtomicBool>,
        limits: Limits,
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
                poll,
                waker: Arc::clone(&waker),
                stop,
                limits,
                waiting: BTreeMap::new(),
                next_id: 0,
                queue: VecDeque::new(),
                active: Arc::new(AtomicUsize::new(0)),
            },
            waker,
        ))
    }

    /// Accepts connections, reads their requests and hands them to answering threads, until
    /// `stop` is set.
    pub fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(64);
        // The listener is edge-triggered: once it is readable, accept until it would block
        // (a batch per round, so requests already accepted are read in between).
        let mut accepting = false;
        loop {
            let timeout = if accepting {
                Some(Duration::ZERO)
            } else {
                self.next_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("control socket: poll failed: {e}"));
            }
            if self.stop.load(Ordering::Acquire) {
                self.shut_down();
                return Ok(());
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => accepting = true,
                    WAKE => {}
                    Token(t) => self.read(t - FIRST),
                }
            }
            self.expire(Instant::now());
            if accepting {
                accepting = self.accept_some();
            }
            self.start_answers();
        }
    }

    /// When the oldest waiting connection runs out of time.
    fn next_deadline(&self) -> Option<Instant> {
        let (_, w) = self.waiting.first_key_value()?;
        Some(w.since + self.limits.request_timeout)
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections; true if more may be pending.
    fn accept_some(&mut self) -> bool {
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: give up on this round, try again on the next event.
                    warn!("control socket: accept failed: {e}");
                    return false;
                }
            }
        }
        true
    }

    /// Starts waiting for a new connection's request (making room if needed) and reads what
    /// it already sent.
    fn admit(&mut self, stream: UnixStream) {
        if self.waiting.len() >= self.limits.max_waiting
            && let Some((_, oldest)) = self.waiting.pop_first()
        {
            self.close(
                oldest,
                "vtepd is busy: too many connections without a request, this one waited longest",
            );
        }
        let id = self.next_id;
        self.next_id += 1;
        let fd = stream.as_raw_fd();
        let registered = stream.set_nonblocking(true).and_then(|()| {
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), Token(FIRST + id), Interest::READABLE)
        });
        if let Err(e) = registered {
            debug!("control client: {e}");
            return;
        }
        let since = Instant::now();
        self.waiting.insert(
            id,
            Waiting {
                stream,
                line: Vec::new(),
                since,
            },
        );
        self.read(id);
    }

    /// Reads what waiting connection `id` sent; a complete request goes to the queue.
    fn read(&mut self, id: usize) {
        let Some(w) = self.waiting.get_mut(&id) else {
            return;
        };
        let mut buf = [0u8; 4096];
        let end = loop {
            match (&w.stream).read(&mut buf) {
                Ok(0) if w.line.trim_ascii().is_empty() => break Ended::Gone,
                Ok(0) => break Ended::Line,
                Ok(n) => {
                    let (part, newline) = match buf[..n].iter().position(|&b| b == b'\n') {
                        Some(at) => (&buf[..at], true),
                        None => (&buf[..n], false),
                    };
                    w.line.extend_from_slice(part);
                    if w.line.len() as u64 > MAX_REQUEST {
                        break Ended::TooLong;
                    }
                    if newline {
                        break Ended::Line;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("control client: {e}");
                    break Ended::Gone;
                }
            }
        };
        let Some(w) = self.waiting.remove(&id) else {
            return;
        };
        self.forget(&w.stream);
        match end {
            Ended::Gone => {}
            Ended::TooLong => reply_now(&w.stream, &Response::err(true, "request too long")),
            Ended::Line => match serde_json::from_slice::<Request>(w.line.trim_ascii()) {
                Ok(req) => {
                    debug!(?req, "control request");
                    self.enqueue(Job {
                        stream: w.stream,
                        req,
                    });
                }
                Err(e) => reply_now(&w.stream, &Response::err(true, format!("bad request: {e}"))),
            },
        }
    }

    /// Queues a request for an answering thread, or tells the client the daemon is busy.
    fn enqueue(&mut self, job: Job) {
        if self.queue.len() >= self.limits.max_queued {
            let msg = format!(
                "vtepd is busy ({} control requests being answered, {} more waiting)",
                self.limits.max_answering, self.limits.max_queued
            );
            reply_now(&job.stream, &Response::err(false, msg));
            return;
        }
        self.queue.push_back(job);
    }

    /// Closes waiting connections whose time to send a request is over.
    fn expire(&mut self, now: Instant) {
        while let Some(deadline) = self.next_deadline()
            && deadline <= now
            && let Some((_, w)) = self.waiting.pop_first()
        {
            let msg = format!(
                "no request received within {} ms",
                self.limits.request_timeout.as_millis()
            );
            self.close(w, &msg);
        }
    }

    /// Stops watching a connection's socket.
    fn forget(&self, stream: &UnixStream) {
        let fd = stream.as_raw_fd();
        if let Err(e) = self.poll.registry().deregister(&mut SourceFd(&fd)) {
            debug!("control client: {e}");
        }
    }

    /// Closes a waiting connection, telling the client why.
    fn close(&self, w: Waiting, why: &str) {
        self.forget(&w.stream);
        reply_now(&w.stream, &Response::err(false, why));
    }

    /// Hands queued requests to answering threads while fewer than the limit run.
    fn start_answers(&mut self) {
        // Only this thread adds to `active` (the answering threads only take away), so a slot
        // seen free here stays free until it is taken below.
        while self.active.load(Ordering::Acquire) < self.limits.max_answering
            && let Some(job) = self.queue.pop_front()
        {
            self.active.fetch_add(1, Ordering::AcqRel);
            let slot = Slot {
                active: Arc::clone(&self.active),
                waker: Arc::clone(&self.waker),
            };
            let (handler, stop) = (Arc::clone(&self.handler), Arc::clone(&self.stop));
            let limits = self.limits;
            let spawned = std::thread::Builder::new()
                .name("vtepd-control-client".into())
                .spawn(move || {
                    // Frees the slot however the thread ends (a panic included), and only
                    // after this thread's handle on the shared state (declared later, dropped
                    // first).
                    let _slot = slot;
                    let handler = handler;
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    if let Err(e) = answer(&*handler, job, &limits, &stop) {
                        debug!("control client: {e}");
                    }
                });
            if let Err(e) = spawned {
                // The closure (the slot and the stream in it) is gone: the slot is free again
                // and the client sees the connection close.
                warn!("control socket: cannot start a client thread: {e}");
                break;
            }
        }
    }

    /// Closes every connection not being answered yet, then waits (a little longer than a
    /// write may stall: answering threads give up at their next write once `stop` is set)
    /// until no answering thread holds the shared state, so that what it owns (kernel routes,
    /// in L3 mode) is released when the daemon drops it on the way out.
    fn shut_down(&mut self) {
        self.waiting.clear();
        self.queue.clear();
        let deadline = Instant::now() + self.limits.write_stall + Duration::from_secs(1);
        while self.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A taken answering slot, given back on drop (and the control thread woken to fill it).
struct Slot {
    active: Arc<AtomicUsize>,
    waker: Arc<Waker>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
        if let Err(e) = self.waker.wake() {
            debug!("control socket: cannot wake the control thread: {e}");
        }
    }
}

/// Writes a short answer to a non-blocking socket, once: a client that does not read it, or
/// is gone, just misses it.
fn reply_now(stream: &UnixStream, resp: &Response) {
    let mut out = serde_json::to_vec(resp).unwrap_or_default();
    out.push(b'\n');
    if let Err(e) = (&*stream).write_all(&out) {
        debug!("control client: {e}");
    }
}

/// Answers one request on a blocking socket, writing the answer as it is produced.
fn answer(
    handler: &impl Handle,
    job: Job,
    limits: &Limits,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    job.stream.set_nonblocking(false)?;
    let reply = handler.handle(job.req);
    let to_client = AnswerStream {
        stream: &job.stream,
        waited: Duration::ZERO,
        limits,
        stop,
    };
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, to_client);
    let written = reply.write_to(&mut out);
    if written.is_err() {
        // Not flushed again on drop: the client already had its chance.
        drop(out.into_parts());
    }
    written
}

/// The socket an answer goes to: each write may wait for the client at most the stall limit,
/// all of them together at most the wait limit, and writing stops once the daemon is stopping.
struct AnswerStream<'a> {
    stream: &'a UnixStream,
    /// Time spent in writes so far (waiting for the client to make room, nearly all of it).
    waited: Duration,
    limits: &'a Limits,
    stop: &'a AtomicBool,
}

fn too_slow() -> std::io::Error {
    std::io::Error::new(ErrorKind::TimedOut, "client too slow to read its answer")
}

impl Write for AnswerStream<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Acquire) {
            return Err(std::io::Error::other("the daemon is stopping"));
        }
        let left = self
            .limits
            .write_wait
            .checked_sub(self.waited)
            .filter(|d| !d.is_zero())
            .ok_or_else(too_slow)?;
        self.stream
            .set_write_timeout(Some(left.min(self.limits.write_stall)))?;
        let started = Instant::now();
        let written = loop {
            // A blocking write with a timeout returns what it sent before the timeout, or
            // EAGAIN if it sent nothing at all.
            match (&*self.stream).write(buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Err(too_slow()),
                r => break r,
            }
        };
        self.waited += started.elapsed();
        written
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::thread;

    /// A handler holding some shared state (like the daemon's), answering every request after
    /// `delay`: with `rows` numbers (a streamed answer) if there are any.
    #[derive(Debug, Default)]
    struct Fake {
        state: Arc<()>,
        delay: Duration,
        rows: u32,
    }

    impl Handle for Fake {
        fn handle(&self, _req: Request) -> Reply<'_> {
            thread::sleep(self.delay);
            if self.rows > 0 {
                return Reply::rows(0..self.rows);
            }
            Response::ok(serde_json::json!({ "answered": true })).into()
        }
    }

    /// A server on a socket of its own, on a thread; stopped on drop.
    struct Running {
        dir: PathBuf,
        path: PathBuf,
        file: Option<SocketFile>,
        stop: Arc<AtomicBool>,
        waker: Arc<Waker>,
        thread: Option<thread::JoinHandle<Result<(), String>>>,
    }

    fn serve(tag: &str, h: Fake, limits: Limits) -> Running {
        let dir = std::env::temp_dir().join(format!("vtepd-ctl-{tag}-{}", std::process::id()));
        let path = dir.join("c.sock");
        let (listener, file) = bind(&path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (srv, waker) = Server::with_limits(listener, h, Arc::clone(&stop), limits).unwrap();
        Running {
            dir,
            path,
            file: Some(file),
            stop,
            waker,
            thread: Some(thread::spawn(move || srv.run())),
        }
    }

    impl Running {
        fn connect(&self) -> UnixStream {
            let c = UnixStream::connect(&self.path).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c
        }
        /// Sends `bytes` on a new connection.
        fn send(&self, bytes: &[u8]) -> UnixStream {
            let c = self.connect();
            (&c).write_all(bytes).unwrap();
            c
        }
        fn stop(&mut self) {
            if let Some(t) = self.thread.take() {
                self.stop.store(true, Ordering::Release);
                self.waker.wake().unwrap();
                t.join().unwrap().unwrap();
            }
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop();
            drop(self.file.take());
            assert!(!self.path.exists(), "socket file left behind");
            let _ = std::fs::remove_dir(&self.dir);
        }
    }

    /// The one answer line on `c`.
    fn answer_on(c: &UnixStream) -> Response {
        let mut line = String::new();
        BufReader::new(c).read_line(&mut line).expect("an answer");
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    const STATS: &[u8] = b"{\"cmd\":\"stats\"}\n";

    fn small(limits: impl FnOnce(&mut Limits)) -> Limits {
        let mut l = Limits::DEFAULT;
        limits(&mut l);
        l
    }

    #[test]
    fn silent_clients_do_not_hold_up_the_next_one() {
        let srv = serve("silent", Fake::default(), Limits::DEFAULT);
        // More connections that never send than requests are answered at once: none of them
        // takes an answering thread.
        let silent: Vec<_> = (0..MAX_ANSWERING + 24).map(|_| srv.connect()).collect();
        thread::sleep(Duration::from_millis(100));
        let resp = answer_on(&srv.send(STATS));
        assert!(resp.ok, "{resp:?}");
        drop(silent);
    }

    #[test]
    fn the_connection_waiting_longest_makes_room_for_a_new_one() {
        let srv = serve("evict", Fake::default(), small(|l| l.max_waiting = 4));
        let silent: Vec<_> = (0..4).map(|_| srv.connect()).collect();
        thread::sleep(Duration::from_millis(100));
        let resp = answer_on(&srv.send(STATS));
        assert!(resp.ok, "{resp:?}");
        // The oldest silent connection was told why and closed; the others still wait.
        let told = answer_on(&silent[0]);
        assert!(!told.ok && told.error.as_deref().unwrap().contains("busy"));
        let mut rest = Vec::new();
        (&silent[0]).read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        silent[1].set_nonblocking(true).unwrap();
        let e = (&silent[1]).read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::WouldBlock,
            "the next oldest is still open"
        );
    }

    #[test]
    fn a_client_dripping_bytes_is_cut_off_at_the_deadline() {
        let srv = serve(
            "drip",
            Fake::default(),
            small(|l| {
                l.request_timeout = Duration::from_millis(300);
            }),
        );
        let c = srv.connect();
        let writer = {
            let c = c.try_clone().unwrap();
            // One byte every 50 ms: the whole line takes about 2 s, far past the deadline.
            thread::spawn(move || {
                for b in STATS.iter().chain(b"                    ") {
                    if (&c).write_all(&[*b]).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let resp = answer_on(&c);
        assert!(!resp.ok, "a drip-fed request must not be served: {resp:?}");
        assert!(resp.error.unwrap().contains("no request"));
        writer.join().unwrap();
    }

    #[test]
    fn a_silent_client_is_told_and_closed_at_the_deadline() {
        let srv = serve(
            "mute",
            Fake::default(),
            small(|l| {
                l.request_timeout = Duration::from_millis(100);
            }),
        );
        let c = srv.connect();
        let mut all = String::new();
        (&c).read_to_string(&mut all).unwrap();
        let resp: Response = serde_json::from_str(all.trim()).unwrap();
        assert!(!resp.ok && resp.error.unwrap().contains("within 100 ms"));
    }

    #[test]
    fn reads_one_line_and_refuses_an_endless_one() {
        let srv = serve("line", Fake::default(), Limits::DEFAULT);
        let resp = answer_on(&srv.send(b"{\"cmd\":\"stats\"}\nrest"));
        assert!(resp.ok, "{resp:?}");
        // Without a newline, the end of the stream ends the request.
        let c = srv.send(b"{\"cmd\":\"stats\"}");
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(answer_on(&c).ok);

        let c = srv.connect();
        let writer = {
            let c = c.try_clone().unwrap();
            thread::spawn(move || {
                let chunk = [b'x'; 4096];
                while (&c).write_all(&chunk).is_ok() {}
            })
        };
        let resp = answer_on(&c);
        assert!(resp.usage && resp.error.as_deref() == Some("request too long"));
        drop(c);
        writer.join().unwrap();
    }

    #[test]
    fn invalid_utf8_is_a_bad_request_not_a_silent_hang_up() {
        let srv = serve("utf8", Fake::default(), Limits::DEFAULT);
        let resp = answer_on(&srv.send(b"{\"cmd\":\"st\xffats\"}\n"));
        assert!(resp.usage && resp.error.unwrap().starts_with("bad request"));
    }

    #[test]
    fn requests_wait_their_turn_and_only_beyond_the_queue_is_the_daemon_busy() {
        let slow = Fake {
            delay: Duration::from_millis(300),
            ..Fake::default()
        };
        let srv = serve(
            "queue",
            slow,
            small(|l| {
                l.max_answering = 1;
                l.max_queued = 2;
            }),
        );
        // One being answered, two waiting, the fourth refused.
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let c = srv.send(STATS);
                thread::sleep(Duration::from_millis(20));
                c
            })
            .collect();
        let answers: Vec<Response> = clients.iter().map(answer_on).collect();
        for (i, a) in answers[..3].iter().enumerate() {
            assert!(a.ok, "request {i}: {a:?}");
        }
        assert!(!answers[3].ok && answers[3].error.as_deref().unwrap().contains("busy"));
        // A slot freed wakes the control thread: later requests are answered again.
        assert!(answer_on(&srv.send(STATS)).ok);
    }

    #[test]
    fn a_streamed_answer_is_the_line_a_whole_one_would_be() {
        let whole = |data: serde_json::Value| {
            let mut v = serde_json::to_vec(&Response::ok(data)).unwrap();
            v.push(b'\n');
            v
        };
        let streamed = |r: Reply<'_>| {
            let mut v = Vec::new();
            r.write_to(&mut v).unwrap();
            v
        };
        assert_eq!(
            streamed(Reply::rows(["a", "b"])),
            whole(serde_json::json!(["a", "b"]))
        );
        assert_eq!(
            streamed(Reply::rows(Vec::<u8>::new())),
            whole(serde_json::json!([]))
        );
        let report = BTreeMap::from([("x", 1)]);
        assert_eq!(
            streamed(Reply::data(&report)),
            whole(serde_json::json!({ "x": 1 }))
        );
        let err = Response::err(true, "give --vni");
        assert_eq!(streamed(err.clone().into()), {
            let mut v = serde_json::to_vec(&err).unwrap();
            v.push(b'\n');
            v
        });
    }

    #[test]
    fn a_large_answer_arrives_whole() {
        let big = Fake {
            rows: 2_000_000,
            ..Fake::default()
        };
        let srv = serve("big", big, Limits::DEFAULT);
        let resp = answer_on(&srv.send(STATS));
        let rows = resp.data.as_array().unwrap();
        assert_eq!(rows.len(), 2_000_000);
        assert_eq!(rows[1_999_999], 1_999_999);
    }

    #[test]
    fn a_client_that_does_not_read_its_answer_is_cut_off_and_frees_its_thread() {
        let big = Fake {
            rows: 2_000_000,
            ..Fake::default()
        };
        let srv = serve(
            "stall",
            big,
            small(|l| {
                l.write_stall = Duration::from_millis(200);
                l.max_answering = 1;
            }),
        );
        // Asks for about 15 MB and reads none of it: the only answering thread stalls.
        let stalled = srv.send(STATS);
        thread::sleep(Duration::from_millis(100));
        // Waits its turn, then gets its whole answer once the stalled one is given up on.
        let resp = answer_on(&srv.send(STATS));
        assert_eq!(resp.data.as_array().map(Vec::len), Some(2_000_000));
        // The stalled client got the start of its answer and then the end of the stream.
        let mut got = Vec::new();
        (&stalled).read_to_end(&mut got).unwrap();
        assert!(got.starts_with(br#"{"ok":true,"data":[0,1,2,"#));
        assert!(!got.ends_with(b"\n"), "a cut-off answer looked whole");
    }

    #[test]
    fn a_slow_reader_is_cut_off_once_it_made_the_answer_wait_too_long() {
        let big = Fake {
            rows: 2_000_000,
            ..Fake::default()
        };
        let srv = serve(
            "limit",
            big,
            small(|l| l.write_wait = Duration::from_millis(300)),
        );
        // Reads 4 KB every 50 ms: always some progress, but 15 MB would keep the answer
        // waiting for minutes.
        let c = srv.send(STATS);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match (&c).read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            thread::sleep(Duration::from_millis(50));
        }
        assert!(got.starts_with(br#"{"ok":true,"data":[0,1,2,"#));
        assert!(!got.ends_with(b"\n"), "a cut-off answer looked whole");
    }

    #[test]
    fn stopping_waits_for_client_threads_to_let_go_of_the_state() {
        let h = Fake {
            delay: Duration::from_millis(300),
            ..Fake::default()
        };
        let state = Arc::clone(&h.state);
        let mut srv = serve("stop", h, Limits::DEFAULT);
        // A request being answered, and a silent client, when the server is stopped.
        let _asking = srv.send(STATS);
        let _silent = srv.connect();
        thread::sleep(Duration::from_millis(100));
        srv.stop();
        assert_eq!(
            Arc::strong_count(&state),
            1,
            "a client thread still holds the shared state after the server stopped"
        );
    }
}
