//! `control_request`: the control protocol's request parsing (`serde_json::from_slice` into
//! [`Request`], as the control server reads a request line) on arbitrary bytes, and the
//! response parsing the client does.
//!
//! Checked: no panic; a request that parses serializes, and that parses back to the same
//! request (as bytes, as text and as a JSON value); parsing a slice and its text agree.

use vtepd::control::protocol::{Request, Response};

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
    }
    // The client's side: a response line; whatever parses serializes again.
    if let Ok(resp) = serde_json::from_slice::<Response>(data) {
        let s = serde_json::to_string(&resp).expect("a response serializes");
        assert!(serde_json::from_str::<Response>(&s).is_ok(), "{s}");
    }
}
