//! Flooding and learning of vtepd counted on the wire (see tests/lab_util/wire.rs for the method): a
//! 3-host fabric with one pod behind each host's cni0.

mod lab_util;

use lab_util::wire::{BROADCAST, N, UNKNOWN, Wire, flood_learn_unlearn, host_ip, pod_mac};
use lab_util::{Lab, WAIT, lab_available, wait_for};
use std::time::Duration;

#[test]
fn flood_then_learn_then_del_floods_again() {
    if !lab_available("flood_then_learn_then_del_floods_again") {
        return;
    }
    let lab = Lab::new("wfl");
    flood_learn_unlearn(&lab, "vtepd vtepd vtepd");
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

    lab.send_frames("h1p1", UNKNOWN, N, None);
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
    lab.send_frames("h1p1", UNKNOWN, N, None);
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
    lab.send_frames("h1p1", UNKNOWN, N, None);
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
    lab.send_frames("h1p1", &m2, N, None);
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
    lab.send_frames("h1p1", &m2, N, None);
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
    lab.send_frames("h1p1", &m2, N, None);
    w.expect(
        "h1p1",
        &m2,
        [0, before[1] + N, before[2] + N],
        "frames flood again once the entry aged out",
    );
}

/// The daemon's counters agree with the wire: what h1 read from its TAP, flooded and sent, and what
/// h2 received and delivered, step by step. Each `expect` adds one flooded marker frame.
#[test]
fn counters_match_the_wire() {
    if !lab_available("counters_match_the_wire") {
        return;
    }
    let lab = Lab::new("wct");
    lab.fabric(3, 1, "vtepd vtepd vtepd", "");
    let mut w = Wire::new(&lab);
    let delta =
        |after: &lab_util::Stats, before: &lab_util::Stats, k: &str| after.get(k) - before.get(k);

    // N unknown-unicast frames + 1 marker, each flooded to both peers.
    let (h1, h2) = (lab.stats("h1"), lab.stats("h2"));
    lab.send_frames("h1p1", UNKNOWN, N, None);
    w.expect("h1p1", UNKNOWN, [0, N, N], "unknown unicast from h1");
    let (h1b, h2b) = (lab.stats("h1"), lab.stats("h2"));
    assert_eq!(delta(&h1b, &h1, "rx_device"), N + 1, "h1 rx_device");
    assert_eq!(
        delta(&h1b, &h1, "flood_copies"),
        2 * (N + 1),
        "h1 flood_copies"
    );
    assert_eq!(delta(&h1b, &h1, "tx_tunnel"), 2 * (N + 1), "h1 tx_tunnel");
    assert_eq!(delta(&h2b, &h2, "rx_tunnel"), N + 1, "h2 rx_tunnel");
    assert_eq!(delta(&h2b, &h2, "tx_device"), N + 1, "h2 tx_device");
    assert_eq!(h1b.drops(), h1.drops(), "h1 dropped something");

    // h1 learns h2's pod; then N known-unicast frames cost one datagram each, no flood copies.
    lab.send_frames("h2p1", BROADCAST, 1, None);
    w.expect("h2p1", BROADCAST, [1, 0, 1], "broadcast from h2");
    wait_for("h1 to learn h2's pod", WAIT, || {
        lab.fdb_entry("h1", &pod_mac(2))
    });
    let h1 = lab.stats("h1");
    lab.send_frames("h1p1", &pod_mac(2), N, None);
    w.expect("h1p1", &pod_mac(2), [0, N, 0], "known unicast to h2's pod");
    let h1b = lab.stats("h1");
    assert_eq!(delta(&h1b, &h1, "rx_device"), N + 1, "h1 rx_device");
    assert_eq!(
        delta(&h1b, &h1, "flood_copies"),
        2,
        "h1 flood_copies (the marker only)"
    );
    assert_eq!(delta(&h1b, &h1, "tx_tunnel"), N + 2, "h1 tx_tunnel");
}

/// Flood-list changes through the control socket take effect on the running data path at once.
#[test]
fn peer_changes_take_effect_on_the_wire() {
    if !lab_available("peer_changes_take_effect_on_the_wire") {
        return;
    }
    let lab = Lab::new("wpe");
    lab.fabric(3, 1, "vtepd vtepd vtepd", "");
    let mut w = Wire::new(&lab);
    let vni = lab.vni().to_string();

    // Markers to settle the wire once h3 is no longer a peer: one flooded (reaches h2 only now), one
    // steered to h3 by a static entry.
    let (flooded, to_h3) = ("02:ee:00:00:01:01", "02:ee:00:00:01:03");
    lab.client_ok("h1", &["fdb", "add", to_h3, &host_ip(3), "--vni", &vni]);
    lab.client_ok("h1", &["peers", "del", &host_ip(3), "--vni", &vni]);
    lab.send_frames("h1p1", UNKNOWN, N, None);
    lab.send_frames("h1p1", flooded, 1, None);
    lab.send_frames("h1p1", to_h3, 1, None);
    wait_for("the markers at h2 and h3", WAIT, || {
        (lab.count("h2", flooded) >= 1 && lab.count("h3", to_h3) >= 1).then_some(())
    });
    assert_eq!(
        w.counts(UNKNOWN),
        [0, N, 0],
        "unknown unicast after peers del 192.0.2.3"
    );
    assert_eq!(
        w.counts(flooded),
        [0, 1, 0],
        "flooded marker after peers del 192.0.2.3"
    );
    let peers = lab.client_ok("h1", &["peers", "show", "--json"]);
    assert!(
        !peers.contains("192.0.2.3"),
        "peers show still lists 192.0.2.3: {peers}"
    );

    lab.client_ok("h1", &["peers", "add", &host_ip(3), "--vni", &vni]);
    lab.send_frames("h1p1", UNKNOWN, N, None);
    w.expect(
        "h1p1",
        UNKNOWN,
        [0, 2 * N, N],
        "unknown unicast after peers add 192.0.2.3",
    );
}
