//! Per-worker counters published for the control plane, and the daemon's clock.
//!
//! Each worker owns a plain [`Counters`] on its hot path and copies it into its own cache-padded
//! slot of atomics after every batch (relaxed stores: the reader only needs a recent value, not
//! a consistent cut). The control plane sums the slots without ever blocking a worker.
//!
//! Traffic per network and per peer ([`Traffic`], one per worker) is counted straight into
//! atomic cells that only the worker's own thread writes (a relaxed load and store, no
//! read-modify-write: as cheap as a plain add), so nothing is copied after a batch; the control
//! plane reads and sums them the same way. No lock and no allocation on the packet path:
//! the per-network cells are allocated in chunks off the packet path
//! ([`StatsBoard::ensure_networks`], for the networks there are, and again before networks
//! are added at run time), the per-peer rows are a fixed table of [`PEER_ROWS`] per worker.

use crate::core::{Counters, DropReason, NetId, NetTraffic, PeerTraffic, Remote, Timestamp};
use crossbeam_utils::CachePadded;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Values in one slot: [`Counters::to_array`].
const SLOT_LEN: usize = Counters::LEN;

#[derive(Debug)]
struct Slot([AtomicU64; SLOT_LEN]);

/// The published counters of every worker.
#[derive(Debug)]
pub struct StatsBoard {
    slots: Box<[CachePadded<Slot>]>,
    /// Each worker's traffic cells.
    traffic: Box<[Arc<Traffic>]>,
}

impl StatsBoard {
    /// A board for `workers` workers, all zero.
    pub fn new(workers: usize) -> StatsBoard {
        let slots = (0..workers)
            .map(|_| CachePadded::new(Slot(std::array::from_fn(|_| AtomicU64::new(0)))))
            .collect();
        let traffic = (0..workers).map(|_| Arc::new(Traffic::new())).collect();
        StatsBoard { slots, traffic }
    }

    /// Worker `w`'s traffic cells (detached ones, counted but never read, if `w` is out of
    /// range).
    pub fn traffic(&self, w: usize) -> Arc<Traffic> {
        self.traffic
            .get(w)
            .map_or_else(Traffic::detached, Arc::clone)
    }

    /// Makes room for networks `0..n` in every worker's cells (allocates off the packet path;
    /// a network beyond the room is counted in the totals only). Call it before a new network
    /// gets traffic; growing never moves or resets the cells of the networks there are.
    pub fn ensure_networks(&self, n: usize) {
        for t in self.traffic.iter() {
            t.ensure_networks(n);
        }
    }

    /// Networks `0..n`: their traffic and drops by reason, summed over the workers.
    pub fn networks(&self, n: usize) -> Vec<(NetTraffic, [u64; DropReason::COUNT])> {
        let mut sums = vec![[0u64; NET_LEN]; n];
        for t in self.traffic.iter() {
            for (i, sum) in sums.iter_mut().enumerate() {
                if let Some(cell) = t.net_cell(i) {
                    for (s, c) in sum.iter_mut().zip(cell.iter()) {
                        *s += c.load(Ordering::Relaxed);
                    }
                }
            }
        }
        sums.into_iter()
            .map(|a| {
                let (traffic, drops) = a.split_at(NetTraffic::LEN);
                (
                    NetTraffic::from_array(traffic.try_into().unwrap_or(&[0; NetTraffic::LEN])),
                    drops.try_into().unwrap_or([0; DropReason::COUNT]),
                )
            })
            .collect()
    }

    /// Every (network, remote) row of every worker, summed over the workers and ordered by
    /// network then remote; and the traffic of remotes that found no row (the overflow).
    pub fn peers(&self) -> (Vec<(NetId, IpAddr, PeerTraffic)>, PeerTraffic) {
        let mut rows: BTreeMap<(u16, IpAddr), PeerTraffic> = BTreeMap::new();
        let mut overflow = PeerTraffic::default();
        for t in self.traffic.iter() {
            t.each_peer(|net, remote, p| rows.entry((net.0, remote)).or_default().add(&p));
            overflow.add(&load_peer(&t.overflow));
        }
        let rows = rows
            .into_iter()
            .map(|((net, remote), p)| (NetId(net), remote, p))
            .collect();
        (rows, overflow)
    }
}

/// Networks per chunk of per-network cells.
const NET_CHUNK: usize = 64;
/// Chunks a worker can have: every [`NetId`].
const NET_CHUNKS: usize = (u16::MAX as usize + 1) / NET_CHUNK;
/// Values per network: its [`NetTraffic`], then its drops by reason.
const NET_LEN: usize = NetTraffic::LEN + DropReason::COUNT;
/// (network, remote) rows each worker keeps. Remotes are configuration, FDB remotes or (with
/// `--allow-any-peer`) whoever sends: the table never grows, and the traffic of a remote that
/// finds no row is counted in the overflow (`peers_overflow` in `stats --json`).
pub const PEER_ROWS: usize = 1024;
/// Slots a lookup looks at before it gives up on a row (the table is open addressing).
const PEER_PROBES: usize = 16;

// Indexes of the cells, in the order `NetTraffic` and `PeerTraffic` declare their fields
// (checked by a test); each packet count is followed by its bytes.
const RX_TUNNEL: usize = 0;
const RX_TUNNEL_BYTES: usize = 1;
const TX_TUNNEL: usize = 2;
const TX_TUNNEL_BYTES: usize = 3;
const RX_DEVICE: usize = 4;
const TX_DEVICE: usize = 6;

type NetCell = [AtomicU64; NET_LEN];
type PeerCell = [AtomicU64; PeerTraffic::LEN];

/// Adds `v` to a cell only one thread writes: a relaxed load and store, no locked
/// read-modify-write (readers see the old or the new value, never a torn one).
#[inline]
fn bump(c: &AtomicU64, v: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

fn load_peer(c: &PeerCell) -> PeerTraffic {
    PeerTraffic::from_array(&std::array::from_fn(|i| c[i].load(Ordering::Relaxed)))
}

/// Set in the key of an IPv6 remote's row.
const PEER_V6: u64 = 1 << 49;

/// The key of network `net`'s rows: never 0 (0 marks a free slot); an IPv4 remote's row key is
/// this and its address, as compact as before IPv6.
#[inline]
fn net_key(net: NetId) -> u64 {
    1 << 48 | u64::from(net.0) << 32
}

/// Where a row's lookup starts. A multiplicative (Fibonacci) hash written here rather than a
/// hasher crate's: the key is one u64 and the table's size a power of two.
fn peer_home(key: u64) -> usize {
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize % PEER_ROWS
}

/// One worker's traffic per network and per (network, remote): cells only the worker's thread
/// writes (through `&self`: the control plane reads them at the same time), summed by
/// [`StatsBoard`] when read.
pub struct Traffic {
    /// Per-network cells in chunks of [`NET_CHUNK`], allocated by
    /// [`Traffic::ensure_networks`] (never on the packet path).
    nets: Box<[OnceLock<Box<[NetCell]>>]>,
    /// Row keys ([`net_key`] and the IPv4 address, or a fold of the IPv6 one; 0: free), published with release ordering once the row's
    /// cells (zero) are there.
    keys: Box<[AtomicU64]>,
    /// The IPv6 address of a row whose key has [`PEER_V6`] (high and low halves), written
    /// before the key is published.
    v6: Box<[[AtomicU64; 2]]>,
    peers: Box<[PeerCell]>,
    /// Rows taken.
    rows: AtomicUsize,
    /// Traffic of remotes that found no row.
    overflow: PeerCell,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic")
            .field("rows", &self.rows.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic::new()
    }
}

impl Traffic {
    /// Cells for no network yet and an empty peer table.
    pub fn new() -> Traffic {
        Traffic {
            nets: (0..NET_CHUNKS).map(|_| OnceLock::new()).collect(),
            keys: (0..PEER_ROWS).map(|_| AtomicU64::new(0)).collect(),
            v6: (0..PEER_ROWS)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
            peers: (0..PEER_ROWS)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            rows: AtomicUsize::new(0),
            overflow: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The cells of whatever is not attached to a worker's (a dataplane built without an event
    /// loop, in tests): one set for the whole process, counted into and never read, so an
    /// unattached device port costs no memory of its own (a daemon has one per network and
    /// worker).
    pub fn detached() -> Arc<Traffic> {
        static DETACHED: std::sync::LazyLock<Arc<Traffic>> =
            std::sync::LazyLock::new(|| Arc::new(Traffic::new()));
        Arc::clone(&DETACHED)
    }

    /// Cells for networks `0..n` (allocates the chunks missing).
    pub fn ensure_networks(&self, n: usize) {
        for chunk in self.nets.iter().take(n.div_ceil(NET_CHUNK)) {
            chunk.get_or_init(|| {
                (0..NET_CHUNK)
                    .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                    .collect()
            });
        }
    }

    #[inline]
    fn net_cell(&self, i: usize) -> Option<&NetCell> {
        self.nets.get(i / NET_CHUNK)?.get()?.get(i % NET_CHUNK)
    }

    #[inline]
    fn net(&self, net: NetId, at: usize, pkts: u64, bytes: u64) {
        if let Some(c) = self.net_cell(usize::from(net.0)) {
            bump(&c[at], pkts);
            bump(&c[at + 1], bytes);
        }
    }

    /// The row of `remote` in network `net`: found, or taken now if the table has room near
    /// its home; else the overflow. An IPv4 remote's row is found by its key alone, in line;
    /// an IPv6 one's key holds a fold of the address, the row the whole address beside it.
    #[inline]
    fn peer(&self, net: NetId, remote: Remote) -> &PeerCell {
        match remote.as_v4() {
            Some(a) => self.row(net_key(net) | u64::from(a.to_bits()), 0),
            None => self.peer6(net, remote),
        }
    }

    /// [`Traffic::peer`] of an IPv6 remote, out of line so that the IPv4 path stays small.
    #[inline(never)]
    fn peer6(&self, net: NetId, remote: Remote) -> &PeerCell {
        let bits = remote.as_v6().map_or(0, u128::from);
        let fold = (bits as u64) ^ (bits >> 64) as u64;
        self.row(
            net_key(net) | PEER_V6 | (fold ^ fold >> 32) & 0xffff_ffff,
            bits,
        )
    }

    /// The row with key `key` (and, with [`PEER_V6`] in the key, IPv6 address `v6`).
    #[inline(always)]
    fn row(&self, key: u64, v6: u128) -> &PeerCell {
        let home = peer_home(key);
        for k in 0..PEER_PROBES {
            let s = (home + k) % PEER_ROWS;
            match self.keys[s].load(Ordering::Relaxed) {
                k if k == key && (key & PEER_V6 == 0 || self.row_v6(s) == v6) => {
                    return &self.peers[s];
                }
                0 => {
                    // Only this worker's thread writes: no other writer can take the slot.
                    if key & PEER_V6 != 0 {
                        self.v6[s][0].store((v6 >> 64) as u64, Ordering::Relaxed);
                        self.v6[s][1].store(v6 as u64, Ordering::Relaxed);
                    }
                    self.keys[s].store(key, Ordering::Release);
                    bump_usize(&self.rows);
                    return &self.peers[s];
                }
                _ => {}
            }
        }
        &self.overflow
    }

    /// A packet of `bytes` inner bytes from `remote` accepted into network `net` (`pkts`: the
    /// segments a merged one stands for).
    #[inline]
    pub fn tunnel_rx(&self, net: NetId, remote: Remote, pkts: u64, bytes: u64) {
        self.net(net, RX_TUNNEL, pkts, bytes);
        let p = self.peer(net, remote);
        bump(&p[RX_TUNNEL], pkts);
        bump(&p[RX_TUNNEL_BYTES], bytes);
    }

    /// `pkts` packets of network `net` sent to `remote`, `bytes` inner bytes in all.
    #[inline]
    pub fn tunnel_tx(&self, net: NetId, remote: Remote, pkts: u64, bytes: u64) {
        self.net(net, TX_TUNNEL, pkts, bytes);
        let p = self.peer(net, remote);
        bump(&p[TX_TUNNEL], pkts);
        bump(&p[TX_TUNNEL_BYTES], bytes);
    }

    /// `pkts` packets (`bytes` in all) read from network `net`'s device.
    #[inline]
    pub fn device_rx(&self, net: NetId, pkts: u64, bytes: u64) {
        self.net(net, RX_DEVICE, pkts, bytes);
    }

    /// `pkts` packets (`bytes` in all) written to network `net`'s device.
    #[inline]
    pub fn device_tx(&self, net: NetId, pkts: u64, bytes: u64) {
        self.net(net, TX_DEVICE, pkts, bytes);
    }

    /// A drop in network `net` (also counted in the worker's [`Counters`]).
    #[inline]
    pub fn dropped(&self, net: NetId, r: DropReason) {
        self.dropped_n(net, r, 1);
    }

    /// `n` drops in network `net`.
    #[inline]
    pub fn dropped_n(&self, net: NetId, r: DropReason, n: u64) {
        if let Some(c) = self.net_cell(usize::from(net.0)) {
            bump(&c[NetTraffic::LEN + r as usize], n);
        }
    }

    /// The drops counted between `before` and `now` (two readings of a worker's
    /// [`Counters::drops`]), in network `net`: for paths where the core counts a drop inside a
    /// decision that does not name its reason (rare ones: a packet too big for its path).
    pub fn dropped_since(
        &self,
        net: NetId,
        before: &[u64; DropReason::COUNT],
        now: &[u64; DropReason::COUNT],
    ) {
        for (r, (a, b)) in DropReason::ALL.iter().zip(before.iter().zip(now.iter())) {
            if b > a {
                self.dropped_n(net, *r, b - a);
            }
        }
    }

    /// The IPv6 address of row `s` (read after its key).
    fn row_v6(&self, s: usize) -> u128 {
        let [hi, lo] = &self.v6[s];
        u128::from(hi.load(Ordering::Relaxed)) << 64 | u128::from(lo.load(Ordering::Relaxed))
    }

    /// Rows taken in the peer table.
    pub fn peer_rows(&self) -> usize {
        self.rows.load(Ordering::Relaxed)
    }

    /// Calls `f` with every row taken.
    fn each_peer(&self, mut f: impl FnMut(NetId, IpAddr, PeerTraffic)) {
        for (s, (k, cell)) in self.keys.iter().zip(self.peers.iter()).enumerate() {
            let key = k.load(Ordering::Acquire);
            if key != 0 {
                let net = NetId((key >> 32) as u16);
                let remote = if key & PEER_V6 == 0 {
                    IpAddr::V4(Ipv4Addr::from(key as u32))
                } else {
                    IpAddr::V6(Ipv6Addr::from(self.row_v6(s)))
                };
                f(net, remote, load_peer(cell));
            }
        }
    }
}

/// Tunnel packets accepted from one remote into one network, in a row: counted into the
/// cells once per run instead of once per packet (the segments of a UDP GRO batch from one
/// VTEP are one run), which spares the peer-table lookup of every packet. Flushed at the end
/// of every receive batch, before the worker publishes anything.
#[derive(Debug, Default)]
pub struct RxRun {
    at: Option<(NetId, Remote)>,
    pkts: u64,
    bytes: u64,
}

impl RxRun {
    /// `pkts` packets of `bytes` inner bytes from `remote` accepted into `net`.
    #[inline]
    pub fn add(&mut self, t: &Traffic, net: NetId, remote: Remote, pkts: u64, bytes: u64) {
        if self.at != Some((net, remote)) {
            self.flush(t);
            self.at = Some((net, remote));
        }
        self.pkts += pkts;
        self.bytes += bytes;
    }

    /// Counts the run so far into `t`.
    pub fn flush(&mut self, t: &Traffic) {
        if let Some((net, remote)) = self.at.take() {
            t.tunnel_rx(net, remote, self.pkts, self.bytes);
            (self.pkts, self.bytes) = (0, 0);
        }
    }
}

#[inline]
fn bump_usize(c: &AtomicUsize) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl StatsBoard {
    /// Publishes worker `w`'s counters (ignored if `w` is out of range).
    pub fn publish(&self, w: usize, c: &Counters) {
        if let Some(slot) = self.slots.get(w) {
            for (dst, v) in slot.0.iter().zip(c.to_array()) {
                dst.store(v, Ordering::Relaxed);
            }
        }
    }

    /// Each worker's counters, in worker order.
    pub fn per_worker(&self) -> Vec<Counters> {
        self.slots
            .iter()
            .map(|slot| {
                Counters::from_array(&std::array::from_fn(|i| slot.0[i].load(Ordering::Relaxed)))
            })
            .collect()
    }

    /// The sum over all workers.
    pub fn sum(&self) -> Counters {
        let mut total = Counters::default();
        for slot in self.slots.iter() {
            let a: [u64; SLOT_LEN] = std::array::from_fn(|i| slot.0[i].load(Ordering::Relaxed));
            total.add(&Counters::from_array(&a));
        }
        total
    }
}

/// Monotonic time since the daemon started, as the core's [`Timestamp`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }
    /// The current timestamp.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.start.elapsed())
    }
    /// Time since the epoch.
    pub fn uptime(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters whose every value (drops included) is distinct and depends on `k`.
    fn sample(k: u64) -> Counters {
        Counters::from_array(&std::array::from_fn(|i| k * 100 + i as u64))
    }

    const A: Remote = Remote::v4(Ipv4Addr::new(192, 0, 2, 2));
    const B: Remote = Remote::v4(Ipv4Addr::new(192, 0, 2, 3));

    #[test]
    fn a_run_counts_what_each_packet_would_have() {
        let (runs, each) = (Traffic::new(), Traffic::new());
        for t in [&runs, &each] {
            t.ensure_networks(2);
        }
        let mut run = RxRun::default();
        let packets = [
            (0, A, 100),
            (0, A, 50),
            (1, A, 7),
            (0, B, 9),
            (0, B, 1),
            (0, A, 3),
        ];
        for (net, remote, bytes) in packets {
            run.add(&runs, NetId(net), remote, 1, bytes);
            each.tunnel_rx(NetId(net), remote, 1, bytes);
        }
        run.flush(&runs);
        run.flush(&runs); // nothing left: counts nothing
        let nets = |t: &Traffic| -> Vec<u64> {
            (0..2)
                .flat_map(|i| t.net_cell(i).unwrap()[..NetTraffic::LEN].iter())
                .map(|c| c.load(Ordering::Relaxed))
                .collect()
        };
        assert_eq!(nets(&runs), nets(&each));
        assert_eq!(nets(&runs)[RX_TUNNEL_BYTES], 163, "100 + 50 + 9 + 1 + 3");
        let rows = |t: &Traffic| {
            let mut v = Vec::new();
            t.each_peer(|n, r, p| v.push((n, r, p)));
            v.sort_by_key(|(n, r, _)| (*n, *r));
            v
        };
        assert_eq!(rows(&runs), rows(&each));
        assert_eq!(rows(&runs).len(), 3);
    }

    #[test]
    fn cell_indexes_follow_the_declared_names() {
        let n = NetTraffic::NAMES;
        assert_eq!(n[RX_TUNNEL], "rx_tunnel");
        assert_eq!(n[RX_TUNNEL_BYTES], "rx_tunnel_bytes");
        assert_eq!(n[TX_TUNNEL], "tx_tunnel");
        assert_eq!(n[TX_TUNNEL_BYTES], "tx_tunnel_bytes");
        assert_eq!(n[RX_DEVICE], "rx_device");
        assert_eq!(n[RX_DEVICE + 1], "rx_device_bytes");
        assert_eq!(n[TX_DEVICE], "tx_device");
        assert_eq!(n[TX_DEVICE + 1], "tx_device_bytes");
        assert_eq!(PeerTraffic::NAMES, &n[..PeerTraffic::LEN]);
    }

    #[test]
    fn traffic_is_summed_per_network_and_peer_over_workers() {
        let b = StatsBoard::new(2);
        b.ensure_networks(2);
        let (w0, w1) = (b.traffic(0), b.traffic(1));
        w0.tunnel_rx(NetId(0), A, 1, 100);
        w1.tunnel_rx(NetId(0), A, 2, 300);
        w1.tunnel_tx(NetId(1), A, 3, 30);
        w0.tunnel_tx(NetId(1), B, 1, 10);
        w0.device_rx(NetId(1), 4, 40);
        w1.device_tx(NetId(0), 5, 50);
        w0.dropped(NetId(1), DropReason::NoPeers);
        w1.dropped_n(NetId(1), DropReason::NoPeers, 2);
        let nets = b.networks(2);
        assert_eq!(
            nets[0].0,
            NetTraffic {
                rx_tunnel: 3,
                rx_tunnel_bytes: 400,
                tx_device: 5,
                tx_device_bytes: 50,
                ..Default::default()
            }
        );
        assert_eq!(
            nets[1].0,
            NetTraffic {
                tx_tunnel: 4,
                tx_tunnel_bytes: 40,
                rx_device: 4,
                rx_device_bytes: 40,
                ..Default::default()
            }
        );
        assert_eq!(nets[1].1[DropReason::NoPeers as usize], 3);
        let (mut before, mut now) = ([0; DropReason::COUNT], [0; DropReason::COUNT]);
        before[DropReason::TooBig as usize] = 5;
        now[DropReason::TooBig as usize] = 7;
        w0.dropped_since(NetId(0), &before, &now);
        assert_eq!(b.networks(1)[0].1[DropReason::TooBig as usize], 2);
        assert_eq!(nets[0].1.iter().sum::<u64>(), 0);
        let (rows, overflow) = b.peers();
        let rx = |rx_tunnel, rx_tunnel_bytes| PeerTraffic {
            rx_tunnel,
            rx_tunnel_bytes,
            ..Default::default()
        };
        let tx = |tx_tunnel, tx_tunnel_bytes| PeerTraffic {
            tx_tunnel,
            tx_tunnel_bytes,
            ..Default::default()
        };
        assert_eq!(
            rows,
            vec![
                (NetId(0), A.ip(), rx(3, 400)),
                (NetId(1), A.ip(), tx(3, 30)),
                (NetId(1), B.ip(), tx(1, 10)),
            ]
        );
        assert!(overflow.is_zero());
    }

    #[test]
    fn networks_beyond_the_cells_are_not_counted_until_grown() {
        let b = StatsBoard::new(1);
        b.ensure_networks(1);
        let t = b.traffic(0);
        // Network 100 has no cells yet: nothing counted there, nothing panics.
        t.device_rx(NetId(100), 1, 10);
        t.dropped(NetId(100), DropReason::NoPeers);
        t.device_rx(NetId(0), 1, 10);
        assert_eq!(b.networks(101)[100].0, NetTraffic::default());
        // Growing keeps what the existing networks counted, and the new one counts.
        b.ensure_networks(101);
        t.device_rx(NetId(100), 2, 20);
        let nets = b.networks(101);
        assert_eq!((nets[0].0.rx_device, nets[0].0.rx_device_bytes), (1, 10));
        assert_eq!(
            (nets[100].0.rx_device, nets[100].0.rx_device_bytes),
            (2, 20)
        );
        // The largest NetId has room too.
        b.ensure_networks(usize::from(u16::MAX) + 1);
        t.device_tx(NetId(u16::MAX), 1, 1);
        let last = b.networks(usize::from(u16::MAX) + 1).pop().unwrap();
        assert_eq!(last.0.tx_device, 1);
    }

    /// IPv6 remotes whose keys fold to the same bits keep rows of their own, as does an IPv4
    /// remote whose address is that fold.
    #[test]
    fn ipv6_rows_are_told_apart_by_their_whole_address() {
        let b = StatsBoard::new(1);
        b.ensure_networks(1);
        let t = b.traffic(0);
        let a: Ipv6Addr = "2001:db8::1:2".parse().unwrap();
        // The same change in both halves leaves the fold of the halves as it is.
        let x = 0x0000_0005_0000_0000_u128;
        let c = Ipv6Addr::from(u128::from(a) ^ (x << 64 | x));
        let bits = u128::from(a);
        let fold = (bits as u64) ^ (bits >> 64) as u64;
        let v4 = Ipv4Addr::from(((fold ^ fold >> 32) & 0xffff_ffff) as u32);
        for (remote, n) in [(Remote::v6(a), 1), (Remote::v6(c), 2), (Remote::v4(v4), 3)] {
            for _ in 0..n {
                t.tunnel_rx(NetId(0), remote, 1, 10);
            }
        }
        let mut got: Vec<(IpAddr, u64)> =
            b.peers().0.iter().map(|r| (r.1, r.2.rx_tunnel)).collect();
        got.sort();
        let mut want = vec![(IpAddr::V6(a), 1), (IpAddr::V6(c), 2), (IpAddr::V4(v4), 3)];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn peer_rows_are_bounded_and_the_rest_overflows() {
        let b = StatsBoard::new(1);
        b.ensure_networks(1);
        let t = b.traffic(0);
        // A flood of distinct sources, four times the rows there are.
        let n = 4 * PEER_ROWS as u32;
        for i in 0..n {
            let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i);
            t.tunnel_rx(NetId(0), src.into(), 1, 10);
        }
        let (rows, overflow) = b.peers();
        assert!(rows.len() <= PEER_ROWS, "{} rows", rows.len());
        assert_eq!(rows.len(), t.peer_rows());
        assert!(rows.len() > PEER_ROWS / 2, "only {} rows taken", rows.len());
        // Nothing is lost: rows and overflow add up to what was counted.
        let in_rows: u64 = rows.iter().map(|r| r.2.rx_tunnel).sum();
        assert_eq!(in_rows + overflow.rx_tunnel, u64::from(n));
        assert_eq!(overflow.rx_tunnel_bytes, overflow.rx_tunnel * 10);
        // The network's own figures count everything.
        assert_eq!(b.networks(1)[0].0.rx_tunnel, u64::from(n));
        // A remote that has a row keeps counting there.
        let (net, known, before) = rows[0];
        t.tunnel_tx(net, known.into(), 1, 5);
        let (after, _) = b.peers();
        assert_eq!(after.len(), rows.len());
        assert_eq!(after[0].2.tx_tunnel, before.tx_tunnel + 1);
    }

    #[test]
    fn board_sums_workers() {
        let b = StatsBoard::new(2);
        b.publish(0, &sample(1));
        b.publish(1, &sample(10));
        b.publish(5, &sample(1000)); // out of range: ignored
        let mut want = sample(1);
        want.add(&sample(10));
        assert_eq!(b.sum(), want);
        assert_eq!(b.per_worker(), vec![sample(1), sample(10)]);
        // A later publish replaces, not adds.
        b.publish(1, &Counters::default());
        assert_eq!(b.sum(), sample(1));
    }
}
