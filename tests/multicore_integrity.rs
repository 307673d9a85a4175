//! Byte-exact TCP transfers through the L2 tunnel (`--threads 2`): a file with a known sha256
//! crosses with segment sizes around the tunnel MTU boundary (MSS 1398 fills a 1450-byte TAP
//! MTU exactly; 1397, 1200, 536 and the default too) and odd write sizes; the receiver's hash
//! must equal the sender's. Needs root and /usr/bin/python3.

mod daemon_support;

use daemon_support::{Daemon, Netns, Pair, must};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

const TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/multicore_tool.py");
const PYTHON: &str = "/usr/bin/python3";

fn quiet(ns: &Netns) {
    for key in ["all", "default"] {
        must(
            ns.cmd("sysctl")
                .args(["-qw", &format!("net.ipv6.conf.{key}.disable_ipv6=1")]),
        );
    }
}

/// A file of pseudo-random bytes (xorshift), removed on drop.
struct Payload(std::path::PathBuf);

impl Payload {
    fn new(len: usize) -> Payload {
        let path = std::env::temp_dir().join(daemon_support::unique("pl"));
        let mut f = std::fs::File::create(&path).unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
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

fn transfer(p: &Pair, file: &Payload, port: u16, mss: u32, chunk: usize) -> (Value, Value) {
    let mut sink =
        p.b.cmd("timeout")
            .args(["60", PYTHON, TOOL, "sink", &port.to_string(), "40"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let mut ready = [0u8; 6];
    assert!(
        sink.stderr.as_mut().unwrap().read_exact(&mut ready).is_ok() && &ready == b"ready\n",
        "the sink did not start"
    );
    let src =
        p.a.cmd("timeout")
            .args(["60", PYTHON, TOOL, "source", "10.9.0.2", &port.to_string()])
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

#[test]
fn tcp_streams_arrive_byte_identical_around_the_mtu_boundary() {
    let p = Pair::new();
    quiet(&p.a);
    quiet(&p.b);
    let a = Daemon::start(
        &p.a,
        &[
            "--dev",
            "vx0",
            "--local",
            "192.0.2.1",
            "--vni",
            "42",
            "--address",
            "10.9.0.1/24",
            "--peer",
            "192.0.2.2",
            "--threads",
            "2",
        ],
    );
    let _b = Daemon::start(
        &p.b,
        &[
            "--dev",
            "vx0",
            "--local",
            "192.0.2.2",
            "--vni",
            "42",
            "--address",
            "10.9.0.2/24",
            "--peer",
            "192.0.2.1",
            "--threads",
            "2",
        ],
    );
    assert!(
        p.a.ping_within("10.9.0.2", Duration::from_secs(10)),
        "{}",
        a.log_text()
    );
    let file = Payload::new(8 << 20);
    let cases: &[(u32, usize)] = &[
        (0, 65_536),
        (1398, 65_536),
        (1397, 1397),
        (1200, 4093),
        (536, 100_003),
    ];
    for (i, &(mss, chunk)) in cases.iter().enumerate() {
        let (sent, got) = transfer(&p, &file, 7200 + i as u16, mss, chunk);
        assert_eq!(sent["bytes"], 8 << 20, "MSS {mss}: {sent}");
        assert_eq!(
            got, sent,
            "MSS {mss}, writes of {chunk}: the stream changed in the tunnel"
        );
    }
}
