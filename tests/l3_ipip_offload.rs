//! Byte-exact TCP transfers through the L3 IPIP tunnel, whose TUN device has offloads on: the
//! sender's kernel hands vtepd TSO super-packets (split into segments, each encapsulated) and the
//! receiving vtepd coalesces decapsulated segments into GSO writes. A file with a known sha256
//! crosses with segment sizes around the tunnel MTU boundary (MSS 1440 fills the 1480-byte
//! tunnel MTU exactly; 1439, 1200, 536 and the default too) and odd write sizes; the receiver's
//! hash must equal the sender's. Needs root and /usr/bin/python3.

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
        let path = std::env::temp_dir().join(daemon_support::unique("ipl"));
        let mut f = std::fs::File::create(&path).unwrap();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
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
            .args(["60", PYTHON, TOOL, "source", "10.43.2.1", &port.to_string()])
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

fn ipip(ns: &Netns, me: u8, other: u8) -> Daemon {
    Daemon::start(
        ns,
        &[
            "--mode",
            "l3",
            "--encap",
            "ipip",
            "--dev",
            "tun0",
            "--local",
            &format!("192.0.2.{me}"),
            "--address",
            &format!("10.43.{me}.1/24"),
            "--route",
            &format!("10.43.{other}.0/24=192.0.2.{other}"),
        ],
    )
}

fn counter(d: &Daemon, key: &str) -> u64 {
    let s = d.stats();
    s[key]
        .as_u64()
        .or_else(|| s["totals"][key].as_u64())
        .unwrap_or_else(|| panic!("no {key} in {s}"))
}

#[test]
fn ipip_tcp_streams_arrive_byte_identical_with_tun_offloads() {
    let p = Pair::new();
    quiet(&p.a);
    quiet(&p.b);
    let a = ipip(&p.a, 1, 2);
    let b = ipip(&p.b, 2, 1);
    assert!(
        p.a.ping_within("10.43.2.1", Duration::from_secs(10)),
        "{}\n{}",
        a.log_text(),
        b.log_text()
    );
    let file = Payload::new(8 << 20);
    let cases: &[(u32, usize)] = &[
        (0, 65_536),
        (1440, 65_536),
        (1439, 1439),
        (1200, 4093),
        (536, 100_003),
    ];
    for (i, &(mss, chunk)) in cases.iter().enumerate() {
        let (sent, got) = transfer(&p, &file, 7300 + i as u16, mss, chunk);
        assert_eq!(sent["bytes"], 8 << 20, "MSS {mss}: {sent}");
        assert_eq!(
            got, sent,
            "MSS {mss}, writes of {chunk}: the stream changed in the tunnel"
        );
    }
    // The sender's device handed over super-packets: more packets left for the tunnel than
    // the device counted (each super-packet is one rx on the TUN device, many tx_tunnel).
    let tun_rx: u64 =
        p.a.cmd("cat")
            .arg("/sys/class/net/tun0/statistics/tx_packets")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
    let tx_tunnel = counter(&a, "tx_tunnel");
    assert!(
        tx_tunnel > tun_rx,
        "no super-packet was split: the device sent {tun_rx}, the tunnel got {tx_tunnel}"
    );
}
