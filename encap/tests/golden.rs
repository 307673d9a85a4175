//! Golden vectors from independent implementations (the Linux kernel vxlan device captured with
//! tcpdump, and scapy; see tests/golden/README.md): our decoder must read every packet with the
//! fields tshark/scapy reported, and our encoder, given the same per-packet fields (source port,
//! IP ID, VNI), must reproduce every packet byte for byte.

use encap::tunnel::{ipip, vxlan};
use encap::{
    Dscp, EcnUpdate, Error, EthernetFrame, IpipConfig, IpipEncap, PortRange, Ttl, Vni, VxlanConfig,
    VxlanEncap, VxlanTx,
};
use std::collections::HashMap;
use std::net::Ipv4Addr;

#[derive(Debug, Default)]
struct Case {
    file: String,
    name: String,
    kind: String,
    roles: Vec<String>,
    config: HashMap<String, String>,
    packet: Vec<u8>,
    expect: HashMap<String, String>,
    after: Option<Vec<u8>>,
    error: Option<String>,
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn kv(s: &str) -> HashMap<String, String> {
    s.split_whitespace()
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn load() -> Vec<Case> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        for blk in text.split("\n\n") {
            let mut c = Case {
                file: file.clone(),
                ..Case::default()
            };
            for line in blk
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            {
                let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
                match key {
                    "case" => c.name = rest.to_string(),
                    "kind" => c.kind = rest.to_string(),
                    "roles" => c.roles = rest.split_whitespace().map(String::from).collect(),
                    "config" => c.config = kv(rest),
                    "packet" => c.packet = hex(rest),
                    "expect" => c.expect = kv(rest),
                    "after" => c.after = Some(hex(rest)),
                    "error" => c.error = Some(rest.to_string()),
                    other => panic!("{file}: unknown line kind {other:?}"),
                }
            }
            if !c.name.is_empty() {
                cases.push(c);
            }
        }
    }
    cases
}

fn num(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

impl Case {
    fn e(&self, k: &str) -> u64 {
        num(&self.expect[k])
    }
    fn ip(&self, k: &str) -> Ipv4Addr {
        self.expect[k].parse().unwrap()
    }
    fn ttl(&self) -> Ttl {
        match self.config["ttl"].as_str() {
            "inherit" => Ttl::Inherit,
            v => Ttl::Fixed(v.parse().unwrap()),
        }
    }
    fn dscp(&self) -> Dscp {
        match self.config["dscp"].as_str() {
            "inherit" => Dscp::Inherit,
            v => Dscp::Fixed(v.parse().unwrap()),
        }
    }
    fn port(&self) -> u16 {
        self.config["dst_port"].parse().unwrap()
    }
    fn has(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
    fn id(&self) -> String {
        format!("{} / {}", self.file, self.name)
    }
}

fn reason(e: Error) -> String {
    match e {
        Error::Invalid { reason, .. } => format!("{reason:?}"),
        other => format!("{other:?}"),
    }
}

fn check_vxlan_decode(c: &Case) {
    let rx = match vxlan::decapsulate(&c.packet, c.port()) {
        Ok(rx) => rx,
        Err(e) => {
            assert_eq!(Some(reason(e)), c.error, "{}: unexpected error {e}", c.id());
            // The `&mut` path must refuse it the same way and leave the bytes alone.
            let mut copy = c.packet.clone();
            assert_eq!(vxlan::decapsulate_mut(&mut copy, c.port()), Err(e));
            assert_eq!(copy, c.packet);
            return;
        }
    };
    assert_eq!(
        c.error,
        None,
        "{}: decoded a packet that must be refused",
        c.id()
    );
    let id = c.id();
    assert_eq!(rx.src, c.ip("src"), "{id}");
    assert_eq!(rx.dst, c.ip("dst"), "{id}");
    assert_eq!(u64::from(rx.tos), c.e("tos"), "{id}");
    assert_eq!(u64::from(rx.ttl), c.e("ttl"), "{id}");
    assert_eq!(u64::from(rx.ip_id), c.e("id"), "{id}");
    assert_eq!(u64::from(rx.dont_frag), c.e("df"), "{id}");
    assert_eq!(u64::from(rx.src_port), c.e("sport"), "{id}");
    assert_eq!(u64::from(rx.dst_port), c.e("dport"), "{id}");
    assert_eq!(u64::from(rx.udp_checksum), c.e("udpcsum"), "{id}");
    assert_eq!(u64::from(rx.vni.get()), c.e("vni"), "{id}");
    let inner = EthernetFrame::new_checked(&c.packet[rx.inner.clone()]).unwrap();
    assert_eq!(inner.src().to_string(), c.expect["inner_src"], "{id}");
    assert_eq!(inner.dst().to_string(), c.expect["inner_dst"], "{id}");
    assert_eq!(rx.inner.end, c.packet.len(), "{id}");

    let mut copy = c.packet.clone();
    let rx_mut = vxlan::decapsulate_mut(&mut copy, c.port()).unwrap();
    assert_eq!(rx_mut, rx, "{id}");
    let want = c
        .after
        .clone()
        .unwrap_or_else(|| c.packet[rx.inner.clone()].to_vec());
    assert_eq!(
        copy[rx.inner.clone()],
        want[..],
        "{id}: inner frame after decapsulation"
    );
    let changed = want[..] != c.packet[rx.inner.clone()];
    assert_eq!(
        matches!(rx.ecn, EcnUpdate::Set(_)),
        changed,
        "{id}: {:?}",
        rx.ecn
    );
}

fn check_vxlan_encode(c: &Case) {
    let (src, dst) = (c.ip("src"), c.ip("dst"));
    let cfg = VxlanConfig {
        local: src,
        dst_port: c.port(),
        src_ports: PortRange::DEFAULT,
        ttl: c.ttl(),
        dscp: c.dscp(),
        // Every kernel capture was made with `df set`.
        df: encap::Df::Set,
        udp_checksum: c.config["udp_checksum"] == "1",
    };
    let enc = VxlanEncap::new(&cfg, dst).unwrap();
    // Independent of our decoder: these packets have a 20-byte outer IPv4 header.
    assert_eq!(c.packet[0], 0x45, "{}", c.id());
    let inner = &c.packet[vxlan::OVERHEAD..];
    let headroom = 64;
    let mut buf = vec![0xee; headroom + inner.len() + 16];
    buf[headroom..headroom + inner.len()].copy_from_slice(inner);
    let tx = VxlanTx {
        vni: Vni::new(c.e("vni") as u32).unwrap(),
        ip_id: c.e("id") as u16,
        src_port: Some(c.e("sport") as u16),
    };
    let r = enc
        .encapsulate(&mut buf, headroom, inner.len(), &tx)
        .unwrap();
    assert_eq!(r, headroom - vxlan::OVERHEAD..headroom + inner.len());
    assert_eq!(
        hexs(&buf[r]),
        hexs(&c.packet),
        "{}: encoder output differs",
        c.id()
    );
    assert!(
        buf[..headroom - vxlan::OVERHEAD].iter().all(|&b| b == 0xee),
        "wrote before the headroom"
    );
    assert!(
        buf[headroom + inner.len()..].iter().all(|&b| b == 0xee),
        "wrote past the frame"
    );
}

fn check_ipip_decode(c: &Case) {
    let rx = match ipip::decapsulate(&c.packet) {
        Ok(rx) => rx,
        Err(e) => {
            assert_eq!(Some(reason(e)), c.error, "{}: unexpected error {e}", c.id());
            let mut copy = c.packet.clone();
            assert_eq!(ipip::decapsulate_mut(&mut copy), Err(e));
            assert_eq!(copy, c.packet);
            return;
        }
    };
    assert_eq!(
        c.error,
        None,
        "{}: decoded a packet that must be refused",
        c.id()
    );
    let id = c.id();
    assert_eq!(rx.src, c.ip("src"), "{id}");
    assert_eq!(rx.dst, c.ip("dst"), "{id}");
    assert_eq!(u64::from(rx.tos), c.e("tos"), "{id}");
    assert_eq!(u64::from(rx.ttl), c.e("ttl"), "{id}");
    assert_eq!(u64::from(rx.ip_id), c.e("id"), "{id}");
    assert_eq!(u64::from(rx.dont_frag), c.e("df"), "{id}");
    assert_eq!(rx.inner, ipip::OVERHEAD..c.packet.len(), "{id}");
    let mut copy = c.packet.clone();
    let rx_mut = ipip::decapsulate_mut(&mut copy).unwrap();
    assert_eq!(rx_mut, rx, "{id}");
    let want = c
        .after
        .clone()
        .unwrap_or_else(|| c.packet[rx.inner.clone()].to_vec());
    assert_eq!(
        hexs(&copy[rx.inner.clone()]),
        hexs(&want),
        "{id}: inner packet after decapsulation"
    );
}

fn check_ipip_encode(c: &Case) {
    let cfg = IpipConfig {
        local: c.ip("src"),
        ttl: c.ttl(),
        dscp: c.dscp(),
        df: encap::Df::Inherit,
    };
    let enc = IpipEncap::new(&cfg, c.ip("dst")).unwrap();
    assert_eq!(c.packet[0], 0x45, "{}", c.id());
    let inner = &c.packet[ipip::OVERHEAD..];
    let headroom = 40;
    let mut buf = vec![0xee; headroom + inner.len() + 8];
    buf[headroom..headroom + inner.len()].copy_from_slice(inner);
    let r = enc
        .encapsulate(&mut buf, headroom, inner.len(), c.e("id") as u16)
        .unwrap();
    assert_eq!(
        hexs(&buf[r]),
        hexs(&c.packet),
        "{}: encoder output differs",
        c.id()
    );
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn golden_vectors() {
    let cases = load();
    let count = |f: &dyn Fn(&Case) -> bool| cases.iter().filter(|c| f(c)).count();
    // Guard against an empty or half-read corpus.
    assert!(count(&|c| c.file.starts_with("kernel_") && c.has("encode")) >= 40);
    assert!(count(&|c| c.kind == "ipip" && c.has("encode")) >= 5);
    assert!(count(&|c| c.kind == "ipip" && c.error.is_some()) == 2);
    assert!(count(&|c| c.name.starts_with("ipip6_") && c.has("encode")) >= 3);
    assert!(count(&|c| c.kind == "vxlan" && c.error.is_some()) >= 4);
    for c in &cases {
        match c.kind.as_str() {
            "vxlan" => {
                if c.has("decode") {
                    check_vxlan_decode(c);
                }
                if c.has("encode") {
                    check_vxlan_encode(c);
                }
            }
            "ipip" => {
                if c.has("decode") {
                    check_ipip_decode(c);
                }
                if c.has("encode") {
                    check_ipip_encode(c);
                }
            }
            k => panic!("{}: unknown kind {k}", c.id()),
        }
    }
}
