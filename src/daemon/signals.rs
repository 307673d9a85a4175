//! The signals `vtepd run` handles, and what each does. Every signal a service manager or an
//! operator commonly sends either stops the daemon cleanly (devices and control socket
//! removed, status 0) or is ignored with a log line; none ends it the default way (killed on
//! the spot, leaving its control socket file and devices behind).
//!
//! - SIGINT, SIGTERM: clean shutdown.
//! - SIGHUP: reload the configuration file, as `vtepd reload` does (the changes, or why
//!   nothing changed, are logged); a daemon started from flags logs that it has no file.
//! - SIGUSR1, SIGUSR2: ignored with a warning (no action is defined for them).
//! - SIGPIPE: ignored without a log line, by the Rust runtime (it sets SIGPIPE to `SIG_IGN`
//!   before `main`): a write to a closed socket fails with `EPIPE` and is handled where it
//!   happens (a client that went away, for example).

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};

/// The signals the runner installs handlers for.
pub const HANDLED: [i32; 5] = [SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2];

/// What a handled signal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Shut down cleanly; the signal's name.
    Stop(&'static str),
    /// Reload the configuration file.
    Reload,
    /// Log the line and carry on.
    Ignore(&'static str),
}

/// What signal `sig` does (an unknown number is ignored with a line naming it).
pub fn action(sig: i32) -> Action {
    match sig {
        SIGINT => Action::Stop("SIGINT"),
        SIGTERM => Action::Stop("SIGTERM"),
        SIGHUP => Action::Reload,
        SIGUSR1 => Action::Ignore("SIGUSR1 received: ignored (no action is defined for it)"),
        SIGUSR2 => Action::Ignore("SIGUSR2 received: ignored (no action is defined for it)"),
        _ => Action::Ignore("an unexpected signal was received: ignored"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_int_and_term_stop_and_hup_reloads() {
        let stops: Vec<i32> = HANDLED
            .into_iter()
            .filter(|s| matches!(action(*s), Action::Stop(_)))
            .collect();
        assert_eq!(stops, [SIGINT, SIGTERM]);
        assert_eq!(action(SIGHUP), Action::Reload);
        for s in [SIGUSR1, SIGUSR2] {
            let Action::Ignore(line) = action(s) else {
                panic!("{s} stops");
            };
            assert!(
                line.starts_with("SIG") && line.contains("ignored"),
                "{line}"
            );
        }
    }
}
