//! The client subcommands (`fdb`, `peers`, `routes`, `neigh`, `stats`, `reload`, `config`): each
//! builds one control request, sends it with [`client::call`] and prints the answer as a table,
//! as JSON or as text.

use super::{
    ControlArg, Failure, FdbCommand, NeighCommand, PeersCommand, RoutesCommand, StatsArgs,
};
use crate::control::client::{call, call_typed};
use crate::control::output;
use crate::control::protocol::{
    ConfigShowReport, FdbRow, NeighRow, PeersRow, ReloadReport, Request, RouteRow, StatsReport,
};
use encap::Vni;
use std::io::{ErrorKind, Write};

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

/// Writes `v` as pretty JSON to stdout as it is serialized (a listing of a million rows is
/// not copied into one string first); a closed pipe is not an error.
fn emit_json<T: serde::Serialize>(v: &T) -> Result<(), Failure> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = serde_json::to_writer_pretty(&mut out, v)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => {
            Err(Failure::Runtime(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

fn vni(v: Option<Vni>) -> Option<u32> {
    v.map(Vni::get)
}

/// `vtepd fdb ...`
pub fn fdb(cmd: FdbCommand) -> Result<(), Failure> {
    match cmd {
        FdbCommand::Show { vni: v, json, ctl } => {
            let rows: Vec<FdbRow> = call_typed(&ctl.control, &Request::FdbShow { vni: vni(v) })?;
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
            let rows: Vec<PeersRow> = call_typed(&ctl.control, &Request::PeersShow)?;
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
            let rows: Vec<RouteRow> = call_typed(&ctl.control, &Request::RoutesShow)?;
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
    let st: StatsReport = call_typed(&a.ctl.control, &Request::Stats)?;
    if a.json {
        emit_json(&st)
    } else {
        emit(&output::stats_table(&st, a.all))
    }
}

/// `vtepd neigh ...`
pub fn neigh(cmd: NeighCommand) -> Result<(), Failure> {
    match cmd {
        NeighCommand::Show { vni: v, json, ctl } => {
            let rows: Vec<NeighRow> =
                call_typed(&ctl.control, &Request::NeighShow { vni: vni(v) })?;
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

/// `vtepd reload`: what changed, one line each, or "no change".
pub fn reload(ctl: &ControlArg) -> Result<(), Failure> {
    let r: ReloadReport = call_typed(&ctl.control, &Request::Reload)?;
    if r.changes.is_empty() {
        return emit("no change\n");
    }
    emit(
        &r.changes
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
}

/// `vtepd config show`: the running configuration, a TOML file.
pub fn config_show(ctl: &ControlArg) -> Result<(), Failure> {
    let r: ConfigShowReport = call_typed(&ctl.control, &Request::ConfigShow)?;
    emit(&r.config)
}
