//! The control plane's side of `vtepd trace`: starts, polls and stops the trace sessions the
//! workers fill ([`super::session`]), and runs `--inject` simulations ([`super::inject`]).

use super::handler::NetList;
use super::inject::Injector;
use super::trace::TraceSessions;
use crate::control::protocol::{Inject, Response, TracePolled, TraceRow};
use crate::control::server::Reply;
use crate::core::trace::{Filter, Origin, Outcome, Record};
use crate::core::{Core, NetId, Timestamp};
use encap::Vni;
use std::sync::Arc;

/// The tool's name in answers.
const TOOL: &str = "trace";
/// Records handed over per poll, at most (the rest wait for the next).
const POLL_MAX: usize = 4096;

/// Trace sessions and the engine to simulate with.
#[derive(Debug)]
pub struct TraceControl {
    /// The sessions, shared with the workers.
    pub sessions: Arc<TraceSessions>,
    /// The engine (none in tests without a dataplane: inject refused).
    pub injector: Option<Injector>,
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    Response::ok(serde_json::to_value(v).unwrap_or_default())
}

impl TraceControl {
    /// Starts a session; `nets` checks the filter's VNI.
    pub fn start(
        &self,
        now: Timestamp,
        filter: Filter,
        count: u64,
        nets: &NetList,
    ) -> Result<Response, Response> {
        self.sessions
            .start_for(TOOL, filter, count, u64::MAX, (), now, nets)
    }

    /// The records of session `id` so far, each with its network's device (written to the
    /// client as they are serialized: up to [`POLL_MAX`] records are never one JSON value).
    pub fn poll(
        &self,
        now: Timestamp,
        id: u64,
        nets: &NetList,
        fallback_dev: Option<&str>,
    ) -> Result<Reply<'static>, Response> {
        let p = self.sessions.poll_for(TOOL, id, now, POLL_MAX, |_| true)?;
        Ok(Reply::data(TracePolled {
            records: p
                .records
                .into_iter()
                .map(|r| row(r, nets, fallback_dev))
                .collect(),
            overflow: p.overflow,
            done: p.done,
        }))
    }

    /// Stops session `id`.
    pub fn stop(&self, id: u64) -> Result<Response, Response> {
        self.sessions.stop_for(TOOL, id)
    }

    /// Simulates `req`; `target` is the network it names (or the only one).
    pub fn inject(
        &self,
        now: Timestamp,
        req: &Inject,
        core: &Core,
        target: Option<Vni>,
        nets: &NetList,
        fallback_dev: Option<&str>,
    ) -> Result<Response, Response> {
        let injector = self
            .injector
            .as_ref()
            .ok_or_else(|| Response::err(false, "this daemon has no engine to simulate with"))?;
        let (net, vni) = match target {
            Some(v) => (core.net_by_vni(v).unwrap_or(NetId(0)), v.get()),
            None => (crate::core::ipip::NET, 0),
        };
        let r = injector
            .run(now, req, net, vni)
            .map_err(|e| Response::err(true, e))?;
        Ok(json(&row(r, nets, fallback_dev)))
    }
}

/// A record with the device of its network (`fallback`: the device of a daemon without
/// networks, IPIP).
fn row(record: Record, nets: &NetList, fallback: Option<&str>) -> TraceRow {
    let vni = match (&record.origin, &record.outcome) {
        (Origin::Device { vni }, _) | (_, Outcome::Deliver { vni }) => Some(*vni),
        _ => record.headers.vni,
    };
    let dev = match nets.nets() {
        [] => fallback.map(str::to_owned),
        _ => vni
            .and_then(|v| Vni::new(v).ok())
            .and_then(|v| nets.dev(v))
            .map(str::to_owned),
    };
    TraceRow { record, dev }
}
