//! Refusing a TUN/TAP device another process holds. The kernel lets any number of files
//! attach to a multi-queue device and spreads its traffic over them, so a second vtepd (or
//! vtepd next to another program) on the same device would silently take a share of the
//! first one's frames. The kernel's count of a multi-queue device's attached queues
//! (`IFLA_TUN_NUM_QUEUES` plus the disabled ones, [`link::tun_queues`]) says whether anyone
//! holds it; a held single-queue device the kernel refuses itself (`EBUSY`), which the device
//! openers turn into the same message ([`held`]). The holders are named, where `/proc` shows
//! them, from their descriptors' `iff:` line (`/proc/PID/fdinfo`).

use super::link;
use crate::error::Failure;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Refuses device `dev` (usage error, one line naming it and, where found, its holders) if
/// more than `ours` queues are attached to it: `ours` is 0 before vtepd attaches and the
/// number of queues it opened after (which catches another process attaching meanwhile). A
/// device that is not a TUN/TAP device passes (opening it says why it cannot be used).
pub fn refuse_if_held(dev: &str, ours: usize) -> Result<(), Failure> {
    let attached = link::tun_queues(dev)
        .map_err(|e| Failure::Runtime(format!("cannot read the queues of {dev}: {e}")))?;
    let Some(attached) = attached else {
        return Ok(());
    };
    match usize::try_from(attached)
        .unwrap_or(usize::MAX)
        .saturating_sub(ours)
    {
        0 => Ok(()),
        others => Err(held(dev, &format!("{others} queue(s) of it"))),
    }
}

/// The refusal of device `dev`, of which another process holds `what` (a multi-queue
/// device's queues, or a single-queue device, which the kernel refuses with `EBUSY`).
pub fn held(dev: &str, what: &str) -> Failure {
    let by = match holders(dev).as_slice() {
        [] => String::new(),
        h => format!(" (by {})", h.join(", ")),
    };
    Failure::Usage(format!(
        "device {dev} is in use: another process holds {what}{by}; stop that process or \
         choose another device"
    ))
}

/// `pid N (comm)` of every other process in our network namespace with a TUN/TAP file
/// attached to `dev` (as far as `/proc` lets us see).
fn holders(dev: &str) -> Vec<String> {
    let netns = |pid: &str| {
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    let Some(ours) = netns("thread-self") else {
        return Vec::new();
    };
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me || netns(&pid) != Some(ours) {
            continue;
        }
        if holds(&p.path(), dev) {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            found.push(format!("pid {pid} ({})", comm.trim()));
        }
    }
    found
}

/// Whether process directory `proc` has a `/dev/net/tun` file attached to `dev`.
fn holds(proc: &Path, dev: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(proc.join("fd")) else {
        return false;
    };
    let want = format!("iff:\t{dev}");
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|t| t == Path::new("/dev/net/tun"))
            && std::fs::read_to_string(proc.join("fdinfo").join(fd.file_name()))
                .is_ok_and(|info| info.lines().any(|l| l == want))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::private_netns::{self, ip};

    /// In a private network namespace: a persistent multi-queue TAP nobody holds passes; held
    /// by a queue of ours it is refused for a newcomer (naming this process is skipped: it is
    /// us) and passes for the holder itself; a veth is no TUN/TAP device and passes.
    #[test]
    fn held_devices_are_refused() {
        private_netns::run(|| {
            ip(&[
                "tuntap",
                "add",
                "dev",
                "vt-use0",
                "mode",
                "tap",
                "multi_queue",
            ]);
            assert_eq!(refuse_if_held("vt-use0", 0), Ok(()));
            let tap = tun_rs::DeviceBuilder::new()
                .name("vt-use0".to_owned())
                .layer(tun_rs::Layer::L2)
                .multi_queue(true)
                .inherit_enable_state()
                .build_sync()
                .unwrap();
            let e = refuse_if_held("vt-use0", 0).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(
                e.message()
                    .starts_with("device vt-use0 is in use: another process holds 1 queue(s)"),
                "{e}"
            );
            assert_eq!(refuse_if_held("vt-use0", 1), Ok(()));
            drop(tap);
            assert_eq!(refuse_if_held("vt-use0", 0), Ok(()));
            ip(&[
                "link", "add", "vt-v0", "type", "veth", "peer", "name", "vt-v1",
            ]);
            assert_eq!(refuse_if_held("vt-v0", 0), Ok(()));
            assert!(refuse_if_held("vt-none", 0).is_err());
        });
    }
}
