//! Flooding and learning counted on the wire, in the style of the Linux kernel's vxlan selftests: a
//! 3-host fabric (one pod behind each host's cni0), tcpdump on each host's underlay link, and exact
//! counts of the VXLAN datagrams carrying frames to a given inner destination MAC.
//!
//! Frames are raw Ethernet frames of a local-experimental ethertype sent from a pod (lab/send_frames.py),
//! so nothing answers them and the wire carries exactly what a test sent. Before comparing counts a test
//! sends a "marker" frame (to an unknown MAC, so flooded) from the same pod and waits until every peer
//! has it: whatever the frames under test were going to cause has then reached the wire.

mod lab_util;

use lab_util::{Lab, WAIT, lab_available, wait_for};
use std::time::{Duration, Instant};

/// Frames per step.
const N: u64 = 5;
/// A MAC no pod has: unknown unicast.
const UNKNOWN: &str = "02:99:99:00:00:01";
const BROADCAST: &str = "ff:ff:ff:ff:ff:ff";

fn pod_mac(host: u32) -> String {
    format!("02:42:0a:2a:{host:02x}:01")
}

fn host_ip(host: u32) -> String {
    format!("192.0.2.{host}")
}

/// The wire of a 3-host fabric: captures on every host's underlay link.
struct Wire<'a> {
    lab: &'a Lab,
    markers: u32,
}

impl<'a> Wire<'a> {
    const HOSTS: [&'static str; 3] = ["h1", "h2", "h3"];

    fn new(lab: &'a Lab) -> Wire<'a> {
        for h in Self::HOSTS {
            lab.capture(h);
        }
        Wire { lab, markers: 0 }
    }

    fn counts(&self, mac: &str) -> Vec<u64> {
        Self::HOSTS.iter().map(|h| self.lab.count(h, mac)).collect()
    }

    /// Sends a flooded marker from `pod` and waits until every host but the pod's own has it.
    fn settle(&mut self, pod: &str) {
        self.markers += 1;
        let marker = format!("02:ee:00:00:00:{:02x}", self.markers);
        self.lab.send_frames(pod, &marker, 1, None);
        let sender = &pod[..2];
        let want: Vec<u64> = Self::HOSTS
            .iter()
            .map(|h| u64::from(*h != sender))
            .collect();
        wait_for(
            &format!("marker {marker} from {pod} at every peer"),
            WAIT,
            || (self.counts(&marker) == want).then_some(()),
        );
    }

    /// Asserts that h1, h2, h3 received exactly `want` datagrams for `mac` after frames sent from `pod`.
    fn expect(&mut self, pod: &str, mac: &str, want: [u64; 3], what: &str) {
        // Wait (bounded) for the expected datagrams; if they never come, the assertion below shows
        // what did.
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline
            && !self.counts(mac).iter().zip(want).all(|(got, w)| *got >= w)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.settle(pod);
        assert_eq!(
            self.counts(mac),
            want,
            "{what}: datagrams to {mac} received by h1, h2, h3"
        );
    }
}

/// The kernel selftests' basic sequence: unknown unicast floods to every peer exactly once per frame
/// and never comes back; once h1 learned where a MAC lives, frames to it reach only that host; after
/// the entry is deleted, they flood again.
fn flood_learn_unlearn(lab: &Lab, impls: &str) {
    lab.fabric(3, 1, impls, "");
    let mut w = Wire::new(lab);
    let m2 = pod_mac(2);

    lab.send_frames("h1p1", UNKNOWN, N as u32, None);
    w.expect("h1p1", UNKNOWN, [0, N, N], "unknown unicast from h1");
    assert!(
        !lab.learned("h1").iter().any(|(m, _)| m == UNKNOWN),
        "h1 learned a MAC it only sent to"
    );

    // h2's pod speaks once (a broadcast): h1 and h3 learn where it lives.
    lab.send_frames("h2p1", BROADCAST, 1, None);
    w.expect("h2p1", BROADCAST, [1, 0, 1], "broadcast from h2");
    let learned = (m2.clone(), host_ip(2));
    for h in ["h1", "h3"] {
        wait_for(&format!("{h} to learn {m2} -> 192.0.2.2"), WAIT, || {
            lab.learned(h).contains(&learned).then_some(())
        });
    }

    lab.send_frames("h1p1", &m2, N as u32, None);
    w.expect("h1p1", &m2, [0, N, 0], "known unicast from h1 to h2's pod");

    lab.sh(&["fdb-del", "h1", &m2]);
    assert!(
        !lab.learned("h1").contains(&learned),
        "h1 still has {m2} after fdb del"
    );
    lab.send_frames("h1p1", &m2, N as u32, None);
    w.expect(
        "h1p1",
        &m2,
        [0, 2 * N, N],
        "unicast after fdb del floods again",
    );
}

#[test]
fn flood_then_learn_then_del_floods_again() {
    if !lab_available("flood_then_learn_then_del_floods_again") {
        return;
    }
    let lab = Lab::new("wfl");
    flood_learn_unlearn(&lab, "vtepd vtepd vtepd");
}

/// The same sequence with the Linux kernel vxlan device on every host: proves the harness's
/// expectations against the reference implementation.
#[test]
fn kernel_vxlan_reference_flood_learn_unlearn() {
    if !lab_available("kernel_vxlan_reference_flood_learn_unlearn") {
        return;
    }
    let lab = Lab::new("wkr");
    flood_learn_unlearn(&lab, "kernel kernel kernel");
}

#[test]
fn static_entry_steers_traffic_and_resists_learning() {
    if !lab_available("static_entry_steers_traffic_and_resists_learning") {
        return;
    }
    let lab = Lab::new("wst");
    lab.fabric(3, 1, "vtepd vtepd vtepd", "");
    let mut w = Wire::new(&lab);
    let vni = lab.vni().to_string();

    lab.client_ok("h1", &["fdb", "add", UNKNOWN, &host_ip(3), "--vni", &vni]);
    let e = lab
        .fdb_entry("h1", UNKNOWN)
        .expect("static entry listed by fdb show --json");
    assert_eq!(
        (e.kind.as_str(), e.remote.as_str(), e.vni),
        ("static", "192.0.2.3", lab.vni())
    );

    lab.send_frames("h1p1", UNKNOWN, N as u32, None);
    w.expect("h1p1", UNKNOWN, [0, 0, N], "static entry steers to h3");

    // h2's pod claims the MAC as its source: learning must not move a static entry.
    lab.send_frames("h2p1", BROADCAST, 1, Some(UNKNOWN));
    w.expect(
        "h2p1",
        BROADCAST,
        [1, 0, 1],
        "broadcast from h2 with the static MAC as source",
    );
    let e = lab
        .fdb_entry("h1", UNKNOWN)
        .expect("static entry still there");
    assert_eq!(
        (e.kind.as_str(), e.remote.as_str()),
        ("static", "192.0.2.3"),
        "learning moved a static entry"
    );
    lab.send_frames("h1p1", UNKNOWN, N as u32, None);
    w.expect(
        "h1p1",
        UNKNOWN,
        [0, 0, 2 * N],
        "static entry still steers to h3",
    );

    lab.client_ok("h1", &["fdb", "del", UNKNOWN, "--vni", &vni]);
    assert_eq!(
        lab.fdb_entry("h1", UNKNOWN),
        None,
        "fdb del left the static entry"
    );
    lab.send_frames("h1p1", UNKNOWN, N as u32, None);
    w.expect(
        "h1p1",
        UNKNOWN,
        [0, N, 3 * N],
        "unknown again after deleting the static entry",
    );
}

#[test]
fn no_learning_learns_nothing_and_keeps_flooding() {
    if !lab_available("no_learning_learns_nothing_and_keeps_flooding") {
        return;
    }
    let lab = Lab::new("wnl");
    lab.fabric(3, 1, "vtepd vtepd vtepd", "--no-learning");
    // Flooding alone carries the overlay.
    lab.sh(&["wait-ping", "h1p1", "10.42.2.10", "8"]);
    let mut w = Wire::new(&lab);

    lab.send_frames("h2p1", BROADCAST, 1, None);
    w.expect("h2p1", BROADCAST, [1, 0, 1], "broadcast from h2");
    for h in ["h1", "h2", "h3"] {
        assert_eq!(lab.fdb(h), vec![], "{h} learned with --no-learning");
    }
    let m2 = pod_mac(2);
    lab.send_frames("h1p1", &m2, N as u32, None);
    w.expect("h1p1", &m2, [0, N, N], "frames to h2's pod still flood");
}

#[test]
fn ageing_removes_learned_entries() {
    if !lab_available("ageing_removes_learned_entries") {
        return;
    }
    let lab = Lab::new("wag");
    lab.fabric(3, 1, "vtepd vtepd vtepd", "--ageing 2");
    let mut w = Wire::new(&lab);
    let m2 = pod_mac(2);

    lab.send_frames("h2p1", BROADCAST, 1, None);
    w.expect("h2p1", BROADCAST, [1, 0, 1], "broadcast from h2");
    let e = wait_for("h1 to learn h2's pod", WAIT, || lab.fdb_entry("h1", &m2));
    assert_eq!(
        (e.kind.as_str(), e.remote.as_str()),
        ("learned", "192.0.2.2")
    );
    lab.send_frames("h1p1", &m2, N as u32, None);
    w.expect(
        "h1p1",
        &m2,
        [0, N, 0],
        "known unicast while the entry is fresh",
    );

    // Being a destination does not refresh an entry: keep sending to it while it ages out.
    let mut sent = 0u64;
    wait_for(
        "h1's entry for h2's pod to age out (--ageing 2)",
        Duration::from_secs(12),
        || {
            lab.send_frames("h1p1", &m2, 1, None);
            sent += 1;
            std::thread::sleep(Duration::from_millis(100));
            lab.fdb_entry("h1", &m2).is_none().then_some(())
        },
    );
    w.settle("h1p1");
    let before = w.counts(&m2);
    assert_eq!(before[1], N + sent, "every frame to h2's pod reached h2");
    lab.send_frames("h1p1", &m2, N as u32, None);
    w.expect(
        "h1p1",
        &m2,
        [0, before[1] + N, before[2] + N],
        "frames flood again once the entry aged out",
    );
}
