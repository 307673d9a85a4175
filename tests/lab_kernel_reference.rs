//! The wire-counting harness against the reference: the flood/learn/unlearn sequence of
//! tests/lab_wire.rs with the Linux kernel vxlan device on every host. If this fails, the lab is
//! broken, not vtepd.

mod lab_util;

use lab_util::wire::flood_learn_unlearn;
use lab_util::{Lab, lab_available};

#[test]
fn kernel_vxlan_reference_flood_learn_unlearn() {
    if !lab_available("kernel_vxlan_reference_flood_learn_unlearn") {
        return;
    }
    let lab = Lab::new("wkr");
    flood_learn_unlearn(&lab, "kernel kernel kernel");
}
