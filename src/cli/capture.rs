//! `vtepd capture`: arms a capture session in the daemon, polls it every 100 ms and writes
//! each packet to a pcapng file (or stdout) as it arrives, until --count packets or
//! --max-bytes came, Ctrl-C, a closed pipe, or the daemon ends the session. The daemon hands
//! the packets over the control socket; this client writes the file.

use super::pcapng::PcapNg;
use super::{ControlArg, Failure};
use crate::config::parse_vni;
use crate::control::client::{call, call_typed};
use crate::control::protocol::{CapturePolled, CaptureStart, Request, TraceStarted};
use crate::core::capture::{MAX_SNAPLEN, Sides, Spec};
use crate::core::trace::Filter;
use clap::{Args, ValueEnum};
use encap::Vni;
use std::io::{BufWriter, ErrorKind, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the client asks for packets.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// `vtepd capture` flags.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Where to write the pcapng file; `-` for stdout (a pipe into `tshark -r -` or
    /// `wireshark -k -i -`).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: PathBuf,
    /// Which side: the device's frames or packets (overlay), the outer packets as sent and
    /// received (underlay), or both.
    #[arg(long, value_enum, default_value_t = SideArg::Both)]
    pub side: SideArg,
    /// How many packets to capture.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub count: u64,
    /// How many bytes to capture (of the packets as kept); the capture ends there.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_bytes: u64,
    /// Bytes kept of each packet.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_SNAPLEN,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SNAPLEN)))]
    pub snaplen: u32,
    /// Only this network.
    #[arg(long, value_name = "N", value_parser = parse_vni)]
    pub vni: Option<Vni>,
    /// Only packets that vtepd dropped.
    #[arg(long)]
    pub drops: bool,
    /// Filter terms joined by commas, as `vtepd trace` takes them: mac=MAC, ip=IP,
    /// outer-ip=IP, vni=N, proto=PROTO, drops.
    #[arg(long, value_name = "EXPR", value_parser = super::trace::parse_filter)]
    pub filter: Option<Filter>,
    #[command(flatten)]
    pub ctl: ControlArg,
}

/// Which side to capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SideArg {
    /// The device's Ethernet frames (L2) or IP packets (L3).
    Overlay,
    /// The outer IPv4 or IPv6 packets (VXLAN over UDP, or IPIP).
    Underlay,
    /// Both.
    Both,
}

impl CaptureArgs {
    fn request(&self) -> Result<CaptureStart, Failure> {
        let flags = Filter {
            vni: self.vni.map(Vni::get),
            drops: self.drops,
            ..Filter::default()
        };
        let filter = self
            .filter
            .unwrap_or_default()
            .and(flags)
            .map_err(Failure::Usage)?;
        Ok(CaptureStart {
            filter,
            count: self.count,
            bytes: self.max_bytes,
            spec: Spec {
                sides: match self.side {
                    SideArg::Overlay => Sides::Overlay,
                    SideArg::Underlay => Sides::Underlay,
                    SideArg::Both => Sides::Both,
                },
                snaplen: self.snaplen,
            },
        })
    }
}

/// `vtepd capture ...`
pub fn run(a: &CaptureArgs) -> Result<(), Failure> {
    let req = a.request()?;
    let out: Box<dyn Write> = if a.write.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let f = std::fs::File::create(&a.write)
            .map_err(|e| Failure::Usage(format!("cannot write {}: {e}", a.write.display())))?;
        Box::new(f)
    };
    let path = &a.ctl.control;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| Failure::Runtime(format!("cannot handle signals: {e}")))?;
    }
    let session = call_typed::<TraceStarted>(path, &Request::CaptureStart(req))?.session;
    let write_err = |e: std::io::Error| Failure::Runtime(format!("cannot write the capture: {e}"));
    let mut file = PcapNg::new(BufWriter::new(out), a.snaplen).map_err(write_err)?;
    let (mut captured, mut lost) = (0u64, 0u64);
    let result = loop {
        std::thread::sleep(POLL_EVERY);
        let interrupted = stop.load(Ordering::Relaxed);
        let polled: CapturePolled = match call_typed(path, &Request::CapturePoll { session }) {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        let written = polled
            .records
            .iter()
            .try_for_each(|c| file.packet(c).map(|()| captured += 1))
            .and_then(|()| file.flush());
        lost = polled.overflow;
        match written {
            Ok(()) => {}
            // The reader went away (`tshark` quit): the capture ends, the file as written.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => break Ok(()),
            Err(e) => break Err(write_err(e)),
        }
        if polled.done || interrupted {
            break Ok(());
        }
    };
    // The session ends anyway within 5 s without polls; stopping it frees the workers now.
    let _ = call(path, &Request::CaptureStop { session });
    eprintln!("vtepd: {captured} packets captured, {lost} lost to a full queue");
    result
}
