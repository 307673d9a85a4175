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
    exchange(&stream, req, path)
}

/// One request and its answer on a connected stream.
fn exchange(stream: &UnixStream, req: &Request, path: &Path) -> Result<serde_json::Value, Failure> {
    let io_err = |e: std::io::Error| {
        Failure::Runtime(format!("talking to vtepd at {}: {e}", path.display()))
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    let mut line = serde_json::to_vec(req).map_err(|e| Failure::Runtime(e.to_string()))?;
    line.push(b'\n');
    // The daemon may answer without reading the request (it is busy, or this connection waited
    // too long) and hang up: a write error is then only half the story, and the answer already
    // sent says why. So the answer is read whether the request went out or not.
    let sent = (&*stream).write_all(&line);
    let mut answer = String::new();
    let read = BufReader::new(stream.take(MAX_RESPONSE)).read_line(&mut answer);
    match (sent, read) {
        (_, Ok(_)) if !answer.is_empty() => {}
        (Err(e), _) | (Ok(()), Err(e)) => return Err(io_err(e)),
        (Ok(()), Ok(_)) => {
            return Err(Failure::Runtime(format!(
                "vtepd at {} closed the connection without answering",
                path.display()
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon end that answers `line` and hangs up without reading the request.
    fn hung_up_after(line: &[u8]) -> UnixStream {
        let (client, daemon) = UnixStream::pair().unwrap();
        (&daemon).write_all(line).unwrap();
        drop(daemon);
        client
    }

    #[test]
    fn an_answer_sent_before_the_daemon_hung_up_is_shown_not_the_broken_pipe() {
        let busy = br#"{"ok":false,"error":"vtepd is busy (16 control requests being answered, 64 more waiting)","data":null}"#;
        let client = hung_up_after(&[&busy[..], b"\n"].concat());
        let got = exchange(&client, &Request::Stats, Path::new("/x.sock")).unwrap_err();
        assert_eq!(
            got,
            Failure::Runtime(
                "vtepd is busy (16 control requests being answered, 64 more waiting)".into()
            )
        );
        assert_eq!(got.exit_code(), 1);
    }

    #[test]
    fn without_an_answer_the_write_error_is_reported() {
        let client = hung_up_after(b"");
        let got = exchange(&client, &Request::Stats, Path::new("/x.sock")).unwrap_err();
        assert!(got.message().contains("Broken pipe"), "{got}");
    }
}
