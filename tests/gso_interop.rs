//! UDP GSO send path against the kernel's vxlan device: a pod behind vtepd sends 4 MiB over TCP
//! (TSO super-frames, which vtepd sends with one UDP GSO `sendmsg` each) to a pod behind a
//! kernel vxlan host, and back the other way. The bytes must arrive intact (sha256), the kernel
//! must count no UDP checksum errors, and every datagram vtepd sent must follow the wire rules
//! (DF, flags 0x08, VNI; source port 49152-65535), with full-size datagrams among them.

mod lab_util;

use lab_util::{Lab, lab_available};
use std::process::{Command, Stdio};

const PYTHON: &str = "/usr/bin/python3";
const BYTES: usize = 4 << 20;

const RECEIVER: &str = "
import hashlib, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 5601))
s.listen(1)
s.settimeout(40)
c, _ = s.accept()
c.settimeout(40)
h, n = hashlib.sha256(), 0
while True:
    d = c.recv(1 << 16)
    if not d:
        break
    h.update(d)
    n += len(d)
print(n, h.hexdigest())
";

const SENDER: &str = "
import hashlib, os, socket, sys, time
data = os.urandom(int(sys.argv[2]))
for _ in range(200):
    try:
        c = socket.create_connection((sys.argv[1], 5601), timeout=5)
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit('cannot connect')
c.sendall(data)
c.shutdown(socket.SHUT_WR)
c.recv(1)
print(len(data), hashlib.sha256(data).hexdigest())
";

fn ns(lab: &Lab, node: &str) -> String {
    format!("{}-{node}", lab.prefix())
}

/// Sends `BYTES` from pod `from` to the pod at `to_ip` in namespace `to`; returns what each side
/// printed (length and sha256).
fn transfer(lab: &Lab, from: &str, to: &str, to_ip: &str) -> (String, String) {
    let rx = Command::new("timeout")
        .args([
            "60",
            "ip",
            "netns",
            "exec",
            &ns(lab, to),
            PYTHON,
            "-c",
            RECEIVER,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the receiver");
    let tx = Command::new("timeout")
        .args([
            "60",
            "ip",
            "netns",
            "exec",
            &ns(lab, from),
            PYTHON,
            "-c",
            SENDER,
        ])
        .args([to_ip, &BYTES.to_string()])
        .output()
        .expect("cannot run the sender");
    let rx = rx.wait_with_output().expect("receiver");
    assert!(
        tx.status.success() && rx.status.success(),
        "transfer {from} -> {to} failed: {}{}{}",
        String::from_utf8_lossy(&tx.stderr),
        String::from_utf8_lossy(&rx.stderr),
        String::from_utf8_lossy(&rx.stdout)
    );
    (
        String::from_utf8_lossy(&tx.stdout).trim().to_string(),
        String::from_utf8_lossy(&rx.stdout).trim().to_string(),
    )
}

#[test]
fn tcp_through_gso_reaches_the_kernel_vxlan_peer_intact() {
    if !lab_available("tcp_through_gso_reaches_the_kernel_vxlan_peer_intact") {
        return;
    }
    let lab = Lab::new("tgso");
    lab.fabric(2, 1, "vtepd kernel", "");
    lab.capture("h2");
    let csum_before: u64 = lab.sh(&["udp_csum_errors", "h2"]).trim().parse().unwrap();
    let (sent, got) = transfer(&lab, "h1p1", "h2p1", "10.42.2.10");
    assert_eq!(sent, got, "vtepd -> kernel: bytes changed on the way");
    assert!(sent.starts_with(&BYTES.to_string()), "{sent}");
    let (sent, got) = transfer(&lab, "h2p1", "h1p1", "10.42.1.10");
    assert_eq!(sent, got, "kernel -> vtepd: bytes changed on the way");
    let csum_after: u64 = lab.sh(&["udp_csum_errors", "h2"]).trim().parse().unwrap();
    assert_eq!(csum_before, csum_after, "the kernel saw bad UDP checksums");
    // DF, flags and VNI on every datagram h1's vtepd sent (lab_check_vxlan_wire fails otherwise).
    lab.sh(&["check_vxlan_wire", "h2", "h1"]);
    let from = "udp dst port 4789 and ip src 192.0.2.1";
    let count = |filter: &str| -> u64 {
        lab.sh(&["count_pcap", "h2", filter])
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(count(&format!("{from} and udp[0:2] < 49152")), 0);
    // 4 MiB in datagrams of at most 1450 + 50 bytes: at least 2900 of them, most full-size.
    let full = count(&format!("{from} and greater 1500"));
    assert!(full > 2500, "only {full} full-size datagrams from vtepd");
}
