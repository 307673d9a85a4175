//! Telling a service manager (systemd, `Type=notify`) how the daemon is doing, through the
//! `sd-notify` crate: `READY=1` once the control socket, the devices and the workers are up,
//! `RELOADING=1` then `READY=1` around a reload (SIGHUP), `STOPPING=1` when shutdown begins. Without `NOTIFY_SOCKET` in the environment (not started
//! by systemd) nothing is sent. A notice that cannot be sent is logged, never fatal: the
//! daemon works the same; systemd then times the start out, as it would for a daemon that
//! never said it was ready.

use sd_notify::NotifyState;

/// Says the daemon is ready; `status` is the one-line summary `systemctl status` shows.
pub fn ready(status: &str) {
    send(
        "READY=1",
        &[NotifyState::Ready, NotifyState::Status(status)],
    );
}

/// Says the daemon is reloading its configuration (`READY=1` follows when it is done), with
/// the monotonic time systemd asks to come with it.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send("RELOADING=1", &states);
}

/// Says the daemon is shutting down (`why`: the signal or failure that ended it).
pub fn stopping(why: &str) {
    send(
        "STOPPING=1",
        &[NotifyState::Stopping, NotifyState::Status(why)],
    );
}

fn send(what: &str, states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot tell the service manager {what}: {e}");
    }
}
