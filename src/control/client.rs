//! The client side of the client subcommands: one request to the daemon's control socket,
//! then its answer printed as a table or as JSON.

use super::output;
use super::protocol::{
    FdbRow, MAX_RESPONSE, NeighRow, PeersRow, Request, Response, RouteRow, StatsReport,
};
use crate::cli::{Failure, FdbCommand, NeighCommand, PeersCommand, RoutesCommand, StatsArgs};
use encap::Vni;
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long the client waits for the daemon.
const TIMEOUT: Duration = Duration::from_secs(10);

fn unreachable(path: &Path, e: &std::io::Error) -> Failure {
    let why = match e.kind() {
        ErrorKind::NotFound => "no control socket there".to_owned(),
        ErrorKind::ConnectionRefused => "connection refused (stale socket?)".to_owned(),
        ErrorKind::PermissionDenied => "permission denied (run as root?)".to_owned(),
        _ => e.to_string(),
    };
    Failure::Runtime(format!(
        "cannot reach vtepd at {}: {why}; is the daemon running (see --control)?",
        path.display()
    ))
}

/// Sends one request and returns the answer's data (or the daemon's error as a [`Failure`]).
pub fn call(path: &Path, req: &Request) -> Result<serde_json::Value, Failure> {
    let stream = UnixStream::connect(path).map_err(|e| unreachable(path, &e))?;
    let io_err = |e: std::io::Error| {
        Failure::Runtime(format!("talking to vtepd at {}: {e}", path.display()))
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    let mut line = serde_json::to_vec(req).map_err(|e| Failure::Runtime(e.to_string()))?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(io_err)?;
    let mut answer = String::new();
    BufReader::new((&stream).take(MAX_RESPONSE))
        .read_line(&mut answer)
        .map_err(io_err)?;
    if answer.is_empty() {
        return Err(Failure::Runtime(format!(
            "vtepd at {} closed the connection without answering",
            path.display()
        )));
    }
    let resp: Response = serde_json::from_str(answer.trim()).map_err(|e| {
        Failure::Runtime(format!(
            "unreadable answer from vtepd at {}: {e}",
            path.display()
        ))
    })?;
    if resp.ok {
        Ok(resp.data)
    } else {
        let msg = resp.error.unwrap_or_else(|| "request failed".into());
        Err(if resp.usage {
            Failure::Usage(msg)
        } else {
            Failure::Runtime(msg)
        })
    }
}

fn typed<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, Failure> {
    serde_json::from_value(v)
        .map_err(|e| Failure::Runtime(format!("unexpected answer from vtepd: {e}")))
}

/// Writes to stdout; a closed pipe (`vtepd fdb show | head`) is not an error.
fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => {
            Err(Failure::Runtime(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

fn emit_json<T: serde::Serialize>(v: &T) -> Result<(), Failure> {
    let mut s = serde_json::to_string_pretty(v).map_err(|e| Failure::Runtime(e.to_string()))?;
    s.push('\n');
    emit(&s)
}

fn vni(v: Option<Vni>) -> Option<u32> {
    v.map(Vni::get)
}

/// `vtepd fdb ...`
pub fn fdb(cmd: FdbCommand) -> Result<(), Failure> {
    match cmd {
        FdbCommand::Show { vni: v, json, ctl } => {
            let rows: Vec<FdbRow> = typed(call(&ctl.control, &Request::FdbShow { vni: vni(v) })?)?;
            if json {
                emit_json(&rows)
            } else {
                emit(&output::fdb_table(&rows))
            }
        }
        FdbCommand::Add {
            mac,
            remote,
            vni: v,
            ctl,
        } => {
            let req = Request::FdbAdd {
                vni: vni(v),
                mac: mac.to_string(),
                remote,
            };
            call(&ctl.control, &req).map(drop)
        }
        FdbCommand::Del { mac, vni: v, ctl } => call(
            &ctl.control,
            &Request::FdbDel {
                vni: vni(v),
                mac: mac.to_string(),
            },
        )
        .map(drop),
        FdbCommand::Flush {
            vni: v,
            learned_only,
            ctl,
        } => call(
            &ctl.control,
            &Request::FdbFlush {
                vni: vni(v),
                learned_only,
            },
        )
        .map(drop),
    }
}

/// `vtepd peers ...`
pub fn peers(cmd: PeersCommand) -> Result<(), Failure> {
    match cmd {
        PeersCommand::Show { json, ctl } => {
            let rows: Vec<PeersRow> = typed(call(&ctl.control, &Request::PeersShow)?)?;
            if json {
                emit_json(&rows)
            } else {
                emit(&output::peers_table(&rows))
            }
        }
        PeersCommand::Add { ip, vni: v, ctl } => {
            call(&ctl.control, &Request::PeersAdd { vni: vni(v), ip }).map(drop)
        }
        PeersCommand::Del { ip, vni: v, ctl } => {
            call(&ctl.control, &Request::PeersDel { vni: vni(v), ip }).map(drop)
        }
    }
}

/// `vtepd routes ...`
pub fn routes(cmd: RoutesCommand) -> Result<(), Failure> {
    match cmd {
        RoutesCommand::Show { json, ctl } => {
            let rows: Vec<RouteRow> = typed(call(&ctl.control, &Request::RoutesShow)?)?;
            if json {
                emit_json(&rows)
            } else {
                emit(&output::routes_table(&rows))
            }
        }
        RoutesCommand::Add { prefix, via, ctl } => call(
            &ctl.control,
            &Request::RoutesAdd {
                prefix: prefix.to_string(),
                via,
            },
        )
        .map(drop),
        RoutesCommand::Del { prefix, ctl } => call(
            &ctl.control,
            &Request::RoutesDel {
                prefix: prefix.to_string(),
            },
        )
        .map(drop),
    }
}

/// `vtepd stats`
pub fn stats(a: StatsArgs) -> Result<(), Failure> {
    let st: StatsReport = typed(call(&a.ctl.control, &Request::Stats)?)?;
    if a.json {
        emit_json(&st)
    } else {
        emit(&output::stats_table(&st))
    }
}

/// `vtepd neigh ...`
pub fn neigh(cmd: NeighCommand) -> Result<(), Failure> {
    match cmd {
        NeighCommand::Show { vni: v, json, ctl } => {
            let rows: Vec<NeighRow> =
                typed(call(&ctl.control, &Request::NeighShow { vni: vni(v) })?)?;
            if json {
                emit_json(&rows)
            } else {
                emit(&output::neigh_table(&rows))
            }
        }
        NeighCommand::Add {
            ip,
            mac,
            vni: v,
            ctl,
        } => {
            let req = Request::NeighAdd {
                vni: vni(v),
                ip,
                mac: mac.to_string(),
            };
            call(&ctl.control, &req).map(drop)
        }
        NeighCommand::Del { ip, vni: v, ctl } => {
            call(&ctl.control, &Request::NeighDel { vni: vni(v), ip }).map(drop)
        }
    }
}
