//! The control plane's side of `vtepd capture`: starts, polls and stops the capture sessions
//! the workers fill ([`super::capture`]). The daemon only hands records over the control
//! socket: the client writes the file (a root daemon never writes to a path a client names).

use super::capture::{CAPTURE_LIMITS, CaptureSessions};
use super::handler::NetList;
use crate::control::protocol::{CapturePolled, CaptureStart, Response};
use crate::control::server::Reply;
use crate::core::Timestamp;
use crate::core::capture::MAX_SNAPLEN;
use std::sync::Arc;

/// The tool's name in answers.
const TOOL: &str = "capture";
/// Records handed over per poll, at most (the rest wait for the next).
const POLL_MAX: usize = 4096;
/// Packet bytes handed over per poll, about (the record that passes it is the last).
const POLL_BYTES: usize = 8 << 20;

/// The capture sessions, shared with the workers.
#[derive(Debug)]
pub struct CaptureControl {
    /// The sessions.
    pub sessions: Arc<CaptureSessions>,
}

/// Within a daemon's capture bounds ([`CAPTURE_LIMITS`]), not a trace's (sessions' defaults).
impl Default for CaptureControl {
    fn default() -> CaptureControl {
        CaptureControl {
            sessions: Arc::new(CaptureSessions::new(CAPTURE_LIMITS)),
        }
    }
}

impl CaptureControl {
    /// Starts a capture; `nets` checks the filter's VNI.
    pub fn start(
        &self,
        now: Timestamp,
        req: CaptureStart,
        nets: &NetList,
    ) -> Result<Response, Response> {
        if !(1..=MAX_SNAPLEN).contains(&req.spec.snaplen) {
            return Err(Response::err(
                true,
                format!(
                    "snap length {} is out of range (1-{MAX_SNAPLEN})",
                    req.spec.snaplen
                ),
            ));
        }
        if req.bytes == 0 {
            return Err(Response::err(true, "a byte budget of 0 captures nothing"));
        }
        let (filter, spec) = (req.filter, req.spec);
        self.sessions
            .start_for(TOOL, filter, req.count, req.bytes, spec, now, nets)
    }

    /// The records of session `id` so far (up to [`POLL_MAX`] records or about
    /// [`POLL_BYTES`] of packets; written to the client as they are serialized).
    pub fn poll(&self, now: Timestamp, id: u64) -> Result<Reply<'static>, Response> {
        let mut bytes = 0;
        let p = self.sessions.poll_for(TOOL, id, now, POLL_MAX, |r| {
            bytes += r.data.len();
            bytes < POLL_BYTES
        })?;
        Ok(Reply::data(CapturePolled {
            records: p.records,
            overflow: p.overflow,
            done: p.done,
        }))
    }

    /// Stops session `id`.
    pub fn stop(&self, id: u64) -> Result<Response, Response> {
        self.sessions.stop_for(TOOL, id)
    }
}
