//! What the leading worker does for the shared core once a tick: ages out FDB entries and
//! neighbour bindings, and logs each MAC that MAC-move dampening froze (once per freeze).

use crate::core::{Core, Timestamp};
use tracing::{debug, warn};

/// Ages out what expired by `now` and reports the freezes since the last tick.
pub fn tick(core: &Core, now: Timestamp) {
    let aged = core.expire(now);
    if aged > 0 {
        debug!(entries = aged, "FDB entries aged out");
    }
    core.take_frozen(|f| {
        warn!(
            vni = f.vni.get(),
            mac = %f.mac,
            remote = %f.remote,
            moving_to = %f.moving_to,
            "MAC moves too often between remotes: frozen on its current remote (see `fdb show`)"
        );
    });
}
