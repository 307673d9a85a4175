//! Shared by the byte-exact TCP transfer tests (L2 multi-worker, L3 IPIP with offloads): a
//! pseudo-random payload file and a transfer through tests/multicore_tool.py between the two
//! namespaces of a daemon pair (or any two namespaces). Include it next to `mod daemon_support;`.
#![allow(dead_code)] // each test binary uses a different part

use crate::daemon_support::{self, Netns, Pair};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/multicore_tool.py");
const PYTHON: &str = "/usr/bin/python3";

/// IPv6 off in `ns`: the tunnel carries only the test's traffic.
pub fn quiet(ns: &Netns) {
    ns.disable_ipv6();
}

/// A file of `len` pseudo-random bytes (xorshift from `seed`), named from `tag`, removed on drop.
pub struct Payload(std::path::PathBuf);

impl Payload {
    pub fn new(tag: &str, seed: u64, len: usize) -> Payload {
        let path = std::env::temp_dir().join(daemon_support::unique(tag));
        let mut f = std::fs::File::create(&path).unwrap();
        let mut x: u64 = seed;
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.extend_from_slice(&x.to_le_bytes());
        }
        buf.truncate(len);
        f.write_all(&buf).unwrap();
        Payload(path)
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The two namespaces of a transfer, by name: the source runs in the first, the sink in the
/// second. A daemon pair gives its `a` and `b`.
pub struct Ends<'a>(pub &'a str, pub &'a str);

impl<'a> From<&'a Pair> for Ends<'a> {
    fn from(p: &'a Pair) -> Ends<'a> {
        Ends(&p.a.name, &p.b.name)
    }
}

/// Sends `file` from the first of `ends` to a sink in the second listening on `dst`:`port`
/// (an IPv4 or IPv6 address),
/// with TCP MSS `mss` and writes of `chunk` bytes; returns the source's and the sink's JSON
/// reports (size, sha256).
pub fn transfer<'a>(
    ends: impl Into<Ends<'a>>,
    file: &Payload,
    dst: &str,
    port: u16,
    mss: u32,
    chunk: usize,
) -> (Value, Value) {
    let Ends(from, to) = ends.into();
    let in_ns = |ns: &str| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, "timeout", "60", PYTHON, TOOL]);
        c
    };
    let family: &[&str] = if dst.contains(':') { &["6"] } else { &[] };
    let mut sink = in_ns(to)
        .args(["sink", &port.to_string(), "40"])
        .args(family)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = [0u8; 6];
    assert!(
        sink.stderr.as_mut().unwrap().read_exact(&mut ready).is_ok() && &ready == b"ready\n",
        "the sink did not start"
    );
    let src = in_ns(from)
        .args(["source", dst, &port.to_string()])
        .arg(&file.0)
        .args([mss.to_string(), chunk.to_string()])
        .output()
        .unwrap();
    assert!(
        src.status.success(),
        "source failed: {}",
        String::from_utf8_lossy(&src.stderr)
    );
    let out = sink.wait_with_output().unwrap();
    let parse = |b: &[u8]| -> Value {
        serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(b)))
    };
    (parse(&src.stdout), parse(&out.stdout))
}
