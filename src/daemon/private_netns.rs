//! Test support: a test body run in a private network namespace (on a thread of its own, so
//! the test process stays where it was), and `ip` commands there.

/// Runs `body` on a new thread moved into a new, empty network namespace, and waits for it
/// (its panic fails the test). Skipped, saying so, where a namespace cannot be made (not root).
pub fn run(body: impl FnOnce() + Send + 'static) {
    let t = std::thread::spawn(|| {
        if crate::sys::unshare_network_namespace().is_err() {
            eprintln!("skipped: cannot create a network namespace (not root?)");
            return;
        }
        body();
    });
    if let Err(panic) = t.join() {
        std::panic::resume_unwind(panic);
    }
}

/// `ip ARGS...` in the calling thread's namespace, which must succeed.
pub fn ip(args: &[&str]) {
    let ok = std::process::Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {args:?}");
}
