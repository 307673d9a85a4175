//! The client end of the control socket: one request line to the daemon, its answer back as
//! data (or the daemon's error as a [`Failure`]). Printing is the CLI's.
//!
//! The answer's data is read straight into the type the caller wants (the protocol's
//! [`Response`](super::protocol::Response) with its data typed).

use super::protocol::{MAX_RESPONSE, Request};
use crate::error::Failure;
use serde::Deserialize;
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
    call_typed(path, req)
}

/// [`call`], with the answer's data read as a `T` (straight from the answer line: a listing of
/// a million rows is never an intermediate JSON value).
pub fn call_typed<T: DeserializeOwned>(path: &Path, req: &Request) -> Result<T, Failure> {
    let stream = UnixStream::connect(path).map_err(|e| unreachable(path, &e))?;
    exchange(&stream, req, path)
}

/// An answer line as the client reads it: [`Response`] with its data typed.
#[derive(Deserialize)]
struct Answer<T> {
    ok: bool,
    #[serde(default)]
    usage: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default = "Option::default")]
    data: Option<T>,
}

/// One request and its answer on a connected stream.
fn exchange<T: DeserializeOwned>(
    stream: &UnixStream,
    req: &Request,
    path: &Path,
) -> Result<T, Failure> {
    let shown = path.display();
    let io_err = |e: std::io::Error| {
        Failure::Runtime(match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => format!(
                "vtepd at {shown} did not answer within {} s",
                TIMEOUT.as_secs()
            ),
            _ => format!("talking to vtepd at {shown}: {e}"),
        })
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    let mut line = serde_json::to_vec(req).map_err(|e| Failure::Runtime(e.to_string()))?;
    line.push(b'\n');
    // The daemon may answer without reading the request (it is busy, or this connection waited
    // too long) and hang up: a write error is then only half the story, and the answer already
    // sent says why. So the answer is read whether the request went out or not.
    let sent = (&*stream).write_all(&line);
    let mut answer = Vec::new();
    let read = BufReader::with_capacity(64 * 1024, stream.take(MAX_RESPONSE))
        .read_until(b'\n', &mut answer);
    match (sent, read) {
        (_, Ok(_)) if !answer.is_empty() => {}
        (Err(e), _) | (Ok(()), Err(e)) => return Err(io_err(e)),
        (Ok(()), Ok(_)) => {
            return Err(Failure::Runtime(format!(
                "vtepd at {shown} closed the connection without answering"
            )));
        }
    }
    if answer.len() as u64 == MAX_RESPONSE && answer.last() != Some(&b'\n') {
        return Err(Failure::Runtime(format!(
            "the answer from vtepd at {shown} is larger than {} MiB",
            MAX_RESPONSE >> 20
        )));
    }
    let resp: Answer<T> = serde_json::from_slice(&answer)
        .map_err(|e| Failure::Runtime(format!("unreadable answer from vtepd at {shown}: {e}")))?;
    match resp {
        Answer {
            ok: true,
            data: Some(data),
            ..
        } => Ok(data),
        // `null` (what changes answer) reads as no data: fine where a `T` may be null.
        Answer { ok: true, .. } => serde_json::from_value(serde_json::Value::Null)
            .map_err(|e| Failure::Runtime(format!("unreadable answer from vtepd at {shown}: {e}"))),
        Answer { usage, error, .. } => {
            let msg = error.unwrap_or_else(|| "request failed".into());
            Err(if usage {
                Failure::Usage(msg)
            } else {
                Failure::Runtime(msg)
            })
        }
    }
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
        let got = exchange::<serde_json::Value>(&client, &Request::Stats, Path::new("/x.sock"))
            .unwrap_err();
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
        let got = exchange::<serde_json::Value>(&client, &Request::Stats, Path::new("/x.sock"))
            .unwrap_err();
        assert!(got.message().contains("Broken pipe"), "{got}");
    }
}
