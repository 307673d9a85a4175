//! Counting on the wire, in the style of the Linux kernel's vxlan selftests: tcpdump on each host's
//! underlay link of a 3-host fabric, and exact counts of the VXLAN datagrams carrying frames to a given
//! inner destination MAC.
//!
//! Frames are raw Ethernet frames of a local-experimental ethertype sent from a pod
//! (lab/send_frames.py), so nothing answers them and the wire carries exactly what a test sent. Before
//! comparing counts, [`Wire::expect`] sends a "marker" frame (to an unknown MAC, so flooded) from the
//! same pod and waits until every peer has it: whatever the frames under test were going to cause has
//! then reached the wire.

use super::{Lab, WAIT, wait_for};
use std::time::{Duration, Instant};

/// Frames per step.
pub const N: u64 = 5;
/// A MAC no pod has: unknown unicast.
pub const UNKNOWN: &str = "02:99:99:00:00:01";
/// The broadcast MAC.
pub const BROADCAST: &str = "ff:ff:ff:ff:ff:ff";

/// MAC of pod 1 behind host `host` (lab_pod_mac).
pub fn pod_mac(host: u32) -> String {
    format!("02:42:0a:2a:{host:02x}:01")
}

/// Underlay address of host `host`.
pub fn host_ip(host: u32) -> String {
    format!("192.0.2.{host}")
}

/// The wire of a 3-host fabric: captures on every host's underlay link.
pub struct Wire<'a> {
    lab: &'a Lab,
    markers: u32,
}

impl<'a> Wire<'a> {
    const HOSTS: [&'static str; 3] = ["h1", "h2", "h3"];

    /// Starts a capture on every host.
    pub fn new(lab: &'a Lab) -> Wire<'a> {
        for h in Self::HOSTS {
            lab.capture(h);
        }
        Wire { lab, markers: 0 }
    }

    /// Datagrams to `mac` received so far by h1, h2, h3.
    pub fn counts(&self, mac: &str) -> Vec<u64> {
        Self::HOSTS.iter().map(|h| self.lab.count(h, mac)).collect()
    }

    /// Sends a flooded marker from `pod` and waits until every host but the pod's own has it.
    pub fn settle(&mut self, pod: &str) {
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
    pub fn expect(&mut self, pod: &str, mac: &str, want: [u64; 3], what: &str) {
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
pub fn flood_learn_unlearn(lab: &Lab, impls: &str) {
    lab.fabric(3, 1, impls, "");
    let mut w = Wire::new(lab);
    let m2 = pod_mac(2);

    lab.send_frames("h1p1", UNKNOWN, N, None);
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

    lab.send_frames("h1p1", &m2, N, None);
    w.expect("h1p1", &m2, [0, N, 0], "known unicast from h1 to h2's pod");

    lab.sh(&["fdb-del", "h1", &m2]);
    assert!(
        !lab.learned("h1").contains(&learned),
        "h1 still has {m2} after fdb del"
    );
    lab.send_frames("h1p1", &m2, N, None);
    w.expect(
        "h1p1",
        &m2,
        [0, 2 * N, N],
        "unicast after fdb del floods again",
    );
}
