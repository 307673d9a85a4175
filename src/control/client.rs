//! The client end of the control socket: one request line to the daemon, its answer back as
//! data (or the daemon's error as a [`Failure`]). Printing is the CLI's.

use super::protocol::{MAX_RESPONSE, Request, Response};
use crate::error::Failure;
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

/// [`call`], with the answer's data read as a `T`.
pub fn call_typed<T: DeserializeOwned>(path: &Path, req: &Request) -> Result<T, Failure> {
    serde_json::from_value(call(path, req)?)
        .map_err(|e| Failure::Runtime(format!("unexpected answer from vtepd: {e}")))
}
