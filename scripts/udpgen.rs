//! udpgen: the small UDP load generator and sink of `lab/bench.sh` (the 64-byte forwarding rate).
//!
//! ```text
//! udpgen send DST_IP:PORT [--size BYTES] [--secs S] [--threads N]
//!     N threads (default 1), each with its own connected socket (so its own source port: one
//!     flow per thread), send BYTES-byte UDP payloads (default 18: a 46-byte IPv4 packet, the
//!     64-byte minimum Ethernet frame with its FCS) back to back for S seconds (default 5).
//!     Prints one line: `sent PACKETS pps RATE errors ERRORS secs ELAPSED`.
//! udpgen sink BIND_IP:PORT [--secs S]
//!     Holds a bound UDP socket without reading it for S seconds (default 600), so the packets
//!     the benchmark sends find a socket (dropped cheaply once its buffer is full) instead of
//!     making the receiver answer each with an ICMP port unreachable.
//! ```
//! Exit status: 0 on success, 2 for bad usage, 1 when a socket cannot be made.
//!
//! It is built by `lab/bench.sh` with plain `rustc -O` (std only, no unsafe), so the benchmark
//! needs nothing beyond the toolchain that builds vtepd. Written by hand rather than using
//! iperf3's UDP mode because iperf3 -u paces and timestamps every datagram and runs one flow per
//! process; here a thread is one flow and does nothing but `send`.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Sends between two looks at the clock.
const CLOCK_EVERY: u64 = 256;
/// Largest UDP payload over IPv4.
const MAX_SIZE: usize = 65_507;

/// What the command line asked for.
enum Cmd {
    Send {
        dst: SocketAddr,
        size: usize,
        secs: f64,
        threads: usize,
    },
    Sink {
        bind: SocketAddr,
        secs: f64,
    },
}

fn usage(msg: &str) -> String {
    format!(
        "udpgen: {msg}\nusage: udpgen send DST_IP:PORT [--size BYTES] [--secs S] [--threads N]\n       \
         udpgen sink BIND_IP:PORT [--secs S]"
    )
}

fn parse(args: &[String]) -> Result<Cmd, String> {
    let (cmd, rest) = args.split_first().ok_or_else(|| usage("missing command"))?;
    let (addr, opts) = rest
        .split_first()
        .ok_or_else(|| usage("missing address"))?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| usage(&format!("bad address {addr}: {e}")))?;
    let mut size = 18usize;
    let mut secs: f64 = if cmd == "sink" { 600.0 } else { 5.0 };
    let mut threads = 1usize;
    let mut it = opts.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| usage(&format!("{flag} needs a value")))?;
        let bad = |e: &dyn std::fmt::Display| usage(&format!("bad {flag} {value}: {e}"));
        match flag.as_str() {
            "--size" => size = value.parse().map_err(|e| bad(&e))?,
            "--secs" => secs = value.parse().map_err(|e| bad(&e))?,
            "--threads" => threads = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(usage(&format!("unknown option {flag}"))),
        }
    }
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err(usage("--secs must be in (0, 3600]"));
    }
    match cmd.as_str() {
        "send" => {
            if !(1..=MAX_SIZE).contains(&size) {
                return Err(usage(&format!("--size must be in 1..={MAX_SIZE}")));
            }
            if !(1..=64).contains(&threads) {
                return Err(usage("--threads must be in 1..=64"));
            }
            Ok(Cmd::Send {
                dst: addr,
                size,
                secs,
                threads,
            })
        }
        "sink" => Ok(Cmd::Sink { bind: addr, secs }),
        other => Err(usage(&format!("unknown command {other}"))),
    }
}

/// What one sending thread did.
#[derive(Default)]
struct Sent {
    packets: u64,
    errors: u64,
}

/// One flow: sends until `stop`. Send errors (a full device queue: ENOBUFS; an ICMP error from an
/// earlier datagram: ECONNREFUSED) are counted and sending goes on.
fn send_flow(sock: UdpSocket, size: usize, deadline: Instant, stop: &AtomicBool) -> Sent {
    let payload = vec![0x5a_u8; size];
    let mut sent = Sent::default();
    let mut n: u64 = 0;
    loop {
        n += 1;
        if n.is_multiple_of(CLOCK_EVERY) && (Instant::now() >= deadline || stop.load(Ordering::Relaxed)) {
            return sent;
        }
        match sock.send(&payload) {
            Ok(_) => sent.packets += 1,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => sent.errors += 1,
        }
    }
}

fn run_send(dst: SocketAddr, size: usize, secs: f64, threads: usize) -> Result<(), String> {
    let bind: SocketAddr = if dst.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    let mut socks = Vec::with_capacity(threads);
    for _ in 0..threads {
        let s = UdpSocket::bind(bind).map_err(|e| format!("udpgen: cannot bind: {e}"))?;
        s.connect(dst)
            .map_err(|e| format!("udpgen: cannot connect to {dst}: {e}"))?;
        socks.push(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = socks
        .into_iter()
        .map(|s| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || send_flow(s, size, deadline, &stop))
        })
        .collect();
    let mut total = Sent::default();
    for h in handles {
        match h.join() {
            Ok(s) => {
                total.packets += s.packets;
                total.errors += s.errors;
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                return Err("udpgen: a sending thread panicked".into());
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "sent {} pps {:.0} errors {} secs {:.3}",
        total.packets,
        total.packets as f64 / elapsed,
        total.errors,
        elapsed
    );
    Ok(())
}

fn run_sink(bind: SocketAddr, secs: f64) -> Result<(), String> {
    let _sock = UdpSocket::bind(bind).map_err(|e| format!("udpgen: cannot bind {bind}: {e}"))?;
    thread::sleep(Duration::from_secs_f64(secs));
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match parse(&args) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        Cmd::Send {
            dst,
            size,
            secs,
            threads,
        } => run_send(dst, size, secs, threads),
        Cmd::Sink { bind, secs } => run_sink(bind, secs),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::from(1)
        }
    }
}
