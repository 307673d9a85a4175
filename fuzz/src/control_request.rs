//! `control_request`: the control protocol's request parsing (`serde_json::from_slice` into
//! [`Request`], as the control server reads a request line) on arbitrary bytes, and the
//! response parsing the client does.
//!
//! Checked: no panic; a request that parses serializes, and that parses back to the same
//! request (as bytes, as text and as a JSON value); parsing a slice and its text agree.
//!
//! The trace and capture requests are then answered by a daemon's control handler (one L2
//! network, VNI 42, no workers), odd arguments included: every answer is one response line
//! that parses; a start refused is a usage error exactly when its count, snap length, byte
//! budget or VNI is out of range; a session started is polled (nothing yet, not done), stopped,
//! and then unknown to poll and stop alike, so no run leaves one armed.

use encap::{MacAddr, Vni};
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use vtepd::control::protocol::{Request, Response};
use vtepd::control::server::Handle;
use vtepd::core::{Core, CoreConfig, NetworkConfig};
use vtepd::daemon::handler::{Handler, NetInfo};
use vtepd::daemon::stats::{Clock, StatsBoard};

/// The target's body.
pub fn run(data: &[u8]) {
    let parsed = serde_json::from_slice::<Request>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let t = serde_json::from_str::<Request>(text);
        assert_eq!(
            t.as_ref().ok(),
            parsed.as_ref().ok(),
            "slice and text parse alike"
        );
    }
    if let Ok(r) = parsed {
        let s = serde_json::to_string(&r).expect("a request serializes");
        assert!(!s.contains('\n'), "one line: {s}");
        let back: Request = serde_json::from_str(&s).expect("what we write parses");
        assert_eq!(back, r, "round trip through text");
        let v = serde_json::to_value(&r).expect("to a value");
        let back: Request = serde_json::from_value(v).expect("from a value");
        assert_eq!(back, r, "round trip through a value");
        sessions(r);
    }
    // The client's side: a response line; whatever parses serializes again.
    if let Ok(resp) = serde_json::from_slice::<Response>(data) {
        let s = serde_json::to_string(&resp).expect("a response serializes");
        assert!(serde_json::from_str::<Response>(&s).is_ok(), "{s}");
    }
}

/// The handler the session requests go to (built once: starting one is the slow part).
fn handler() -> &'static Handler {
    static HANDLER: OnceLock<Handler> = OnceLock::new();
    HANDLER.get_or_init(|| {
        let vni = Vni::new(42).expect("a VNI");
        let core = Core::new(CoreConfig {
            local: Ipv4Addr::new(192, 0, 2, 1).into(),
            allow_any_peer: false,
            networks: vec![NetworkConfig {
                vni,
                peers: vec![Ipv4Addr::new(192, 0, 2, 2).into()],
                own_mac: MacAddr([2, 0, 0, 0, 0, 1]),
                ..Default::default()
            }],
        })
        .expect("a core");
        let nets = vec![NetInfo {
            vni,
            dev: "vx0".to_owned(),
            mac: None,
        }];
        let board = Arc::new(StatsBoard::new(1));
        Handler::new(Arc::new(core), nets, board, Clock::new(), None)
    })
}

/// The handler's answer to `req`, as the line the client reads.
fn answer(req: Request) -> Response {
    let mut line = Vec::new();
    handler()
        .handle(req)
        .write_to(&mut line)
        .expect("written to memory");
    assert!(line.ends_with(b"\n"), "one line");
    serde_json::from_slice(&line).expect("the answer parses")
}

/// A request about session `id` (stop, poll) of one kind.
type SessionRequest = fn(u64) -> Request;

/// Answers a trace or capture request (anything else is left alone) and checks what a
/// started session then answers.
fn sessions(req: Request) {
    let in_range = |count: u64, max: u64, vni: Option<u32>| {
        (1..=max).contains(&count) && vni.is_none_or(|v| v == 42)
    };
    let (fine, stop, poll): (bool, SessionRequest, SessionRequest) = match &req {
        Request::TraceStart { filter, count } => (
            in_range(*count, 100_000, filter.vni),
            |session| Request::TraceStop { session },
            |session| Request::TracePoll { session },
        ),
        Request::CaptureStart(c) => (
            in_range(c.count, 1_000_000, c.filter.vni)
                && c.bytes > 0
                && (1..=vtepd::core::capture::MAX_SNAPLEN).contains(&c.spec.snaplen),
            |session| Request::CaptureStop { session },
            |session| Request::CapturePoll { session },
        ),
        Request::TracePoll { .. }
        | Request::TraceStop { .. }
        | Request::CapturePoll { .. }
        | Request::CaptureStop { .. }
        | Request::TraceInject(_) => {
            // No session runs between two inputs, and this handler has no engine to simulate
            // with: each is refused, and not as the client's usage error but for a session.
            let r = answer(req);
            assert!(!r.ok && r.error.is_some(), "{r:?}");
            return;
        }
        _ => return,
    };
    let r = answer(req);
    assert_eq!(r.ok, fine, "{r:?}");
    assert_eq!(
        r.usage, !fine,
        "a refused start is the request's fault: {r:?}"
    );
    if !r.ok {
        return;
    }
    let id = r.data["session"].as_u64().expect("a session id");
    let p = answer(poll(id));
    assert!(p.ok, "{p:?}");
    assert_eq!(
        p.data["records"],
        serde_json::json!([]),
        "no workers, no records"
    );
    assert_eq!(p.data["done"], false, "{p:?}");
    assert!(answer(stop(id)).ok, "stopped");
    for gone in [stop(id), poll(id)] {
        let r = answer(gone);
        assert!(!r.ok && !r.usage, "stopped already: {r:?}");
    }
}
