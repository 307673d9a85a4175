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
