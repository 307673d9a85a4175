//! FDB lookup cost: papaya vs scc::HashIndex (same key and value layout as the core's FDB),
//! and the core's own `Fdb` (with IPv4 remotes, and with IPv6 ones), at 1k and 1M entries,
//! with and without a concurrent learner thread that refreshes entries (atomic store) and
//! churns new ones in and out (map writes).
//!
//! Run: `cargo bench --bench fdb`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::thread;
use vtepd::core::Remote;

use encap::{MacAddr, Vni};
use vtepd::core::EntryKind;
use vtepd::core::fdb::{Fdb, FdbEntry, FdbKey};

fn main() {
    divan::main();
}

const SIZES: [usize; 2] = [1_000, 1_000_000];
const VNI: u32 = 4242;

/// Deterministic pseudo-random numbers (splitmix64), so both maps see the same keys.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The `i`-th unicast MAC of the benchmark's key space.
fn mac(i: u64) -> MacAddr {
    let b = splitmix(i).to_be_bytes();
    MacAddr([b[2] & 0xfe, b[3], b[4], b[5], b[6], b[7]])
}

fn key(i: u64) -> FdbKey {
    FdbKey::new(Vni::new(VNI).unwrap(), mac(i))
}

const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

/// The value layout the core stores, cloneable for scc::HashIndex.
#[derive(Debug)]
struct Val {
    remote: AtomicU32,
    last_seen: AtomicU64,
}

impl Val {
    fn new() -> Val {
        Val {
            remote: AtomicU32::new(u32::from(REMOTE)),
            last_seen: AtomicU64::new(0),
        }
    }
    fn remote(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.remote.load(Relaxed))
    }
}

impl Clone for Val {
    fn clone(&self) -> Val {
        Val {
            remote: AtomicU32::new(self.remote.load(Relaxed)),
            last_seen: AtomicU64::new(self.last_seen.load(Relaxed)),
        }
    }
}

/// The operations a learner and a reader need, for both maps.
trait Map: Send + Sync + 'static {
    fn build(n: usize) -> Self;
    fn insert(&self, k: FdbKey);
    fn remove(&self, k: FdbKey);
    fn refresh(&self, k: FdbKey, now: u64);
    fn lookup(&self, k: FdbKey) -> Option<Remote>;
}

type Papaya = papaya::HashMap<FdbKey, Val, ahash::RandomState>;
type Scc = scc::HashIndex<FdbKey, Val, ahash::RandomState>;

impl Map for Papaya {
    fn build(n: usize) -> Self {
        let m = papaya::HashMap::builder()
            .capacity(n)
            .hasher(ahash::RandomState::new())
            .build();
        for i in 0..n as u64 {
            m.pin().insert(key(i), Val::new());
        }
        m
    }
    fn insert(&self, k: FdbKey) {
        let _ = self.pin().try_insert(k, Val::new());
    }
    fn remove(&self, k: FdbKey) {
        self.pin().remove(&k);
    }
    fn refresh(&self, k: FdbKey, now: u64) {
        if let Some(v) = self.pin().get(&k) {
            v.last_seen.store(now, Relaxed);
        }
    }
    #[inline]
    fn lookup(&self, k: FdbKey) -> Option<Remote> {
        self.pin().get(&k).map(|v| Remote::v4(v.remote()))
    }
}

impl Map for Scc {
    fn build(n: usize) -> Self {
        let m = scc::HashIndex::with_capacity_and_hasher(n, ahash::RandomState::new());
        for i in 0..n as u64 {
            let _ = m.insert_sync(key(i), Val::new());
        }
        m
    }
    fn insert(&self, k: FdbKey) {
        let _ = self.insert_sync(k, Val::new());
    }
    fn remove(&self, k: FdbKey) {
        self.remove_sync(&k);
    }
    fn refresh(&self, k: FdbKey, now: u64) {
        self.peek_with(&k, |_, v| v.last_seen.store(now, Relaxed));
    }
    #[inline]
    fn lookup(&self, k: FdbKey) -> Option<Remote> {
        let guard = scc::Guard::new();
        self.peek(&k, &guard).map(|v| Remote::v4(v.remote()))
    }
}

impl Map for Fdb {
    fn build(n: usize) -> Self {
        let f = Fdb::with_capacity(n);
        for i in 0..n as u64 {
            let _ = f.insert_new(
                key(i),
                FdbEntry::new(EntryKind::Learned, REMOTE.into(), 0),
                |_| (),
            );
        }
        f
    }
    fn insert(&self, k: FdbKey) {
        let _ = self.insert_new(
            k,
            FdbEntry::new(EntryKind::Learned, REMOTE.into(), 0),
            |_| (),
        );
    }
    fn remove(&self, k: FdbKey) {
        self.remove_if(k, |_| true);
    }
    fn refresh(&self, k: FdbKey, now: u64) {
        self.with_entry(k, |e| e.touch(now));
    }
    #[inline]
    fn lookup(&self, k: FdbKey) -> Option<Remote> {
        Fdb::lookup(self, k, 1, u64::MAX)
    }
}

/// A learner thread: refreshes existing entries and keeps a window of 1024 new MACs moving
/// through the map (one insert and one remove per step), until stopped.
struct Learner {
    stop: Arc<AtomicBool>,
    steps: Arc<AtomicU64>,
    started: (u64, std::time::Instant),
    handle: Option<thread::JoinHandle<()>>,
}

impl Learner {
    /// Starts the learner and waits (up to 5 s) until it is actually running.
    fn start<M: Map>(map: Arc<M>, n: usize) -> Learner {
        let stop = Arc::new(AtomicBool::new(false));
        let steps = Arc::new(AtomicU64::new(0));
        let (s, progress) = (stop.clone(), steps.clone());
        let handle = thread::spawn(move || {
            let base = 1u64 << 40; // keys the readers never look up
            let mut step = 0u64;
            while !s.load(Relaxed) {
                map.refresh(key(step % n as u64), step);
                map.insert(key(base + step));
                if step >= 1024 {
                    map.remove(key(base + step - 1024));
                }
                step += 1;
                progress.store(step, Relaxed);
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while steps.load(Relaxed) < 10_000 && std::time::Instant::now() < deadline {
            thread::yield_now();
        }
        let started = (steps.load(Relaxed), std::time::Instant::now());
        Learner {
            stop,
            steps,
            started,
            handle: Some(handle),
        }
    }
}

impl Drop for Learner {
    fn drop(&mut self) {
        let (n0, t0) = self.started;
        let made = self.steps.load(Relaxed) - n0;
        let secs = t0.elapsed().as_secs_f64();
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        eprintln!(
            "  (learner during measurement: {made} steps in {:.0} ms = {:.2} M writes/s)",
            secs * 1e3,
            2.0 * made as f64 / secs / 1e6
        );
    }
}

/// Looks up present keys in a pseudo-random order.
fn bench_lookup<M: Map>(bencher: divan::Bencher, n: usize, learner: bool) {
    let map = Arc::new(M::build(n));
    let probes: Vec<FdbKey> = (0..4096u64)
        .map(|i| key(splitmix(i ^ 0x5555) % n as u64))
        .collect();
    let _learner = learner.then(|| Learner::start(map.clone(), n));
    let mut i = 0usize;
    bencher.bench_local(|| {
        i = (i + 1) & 4095;
        let r = map.lookup(black_box(probes[i]));
        debug_assert!(r.is_some());
        // By reference: a 16-byte `Option<Remote>` passed by value is stored as two 8-byte
        // halves and read back as one 16-byte load, which the CPU cannot forward from the two
        // stores (a stall of its own: a quarter of an IPv4 lookup at 1k entries).
        black_box(&r);
    });
}

/// The core's FDB with IPv6 remotes (an entry's remote behind a sequence lock).
struct Fdb6(Fdb);

/// The IPv6 remote of [`Fdb6`]'s entries.
const REMOTE6: Remote = Remote::v6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));

impl Map for Fdb6 {
    fn build(n: usize) -> Self {
        let f = Fdb::with_capacity(n);
        for i in 0..n as u64 {
            let _ = f.insert_new(
                key(i),
                FdbEntry::new(EntryKind::Learned, REMOTE6, 0),
                |_| (),
            );
        }
        Fdb6(f)
    }
    fn insert(&self, k: FdbKey) {
        let _ = self
            .0
            .insert_new(k, FdbEntry::new(EntryKind::Learned, REMOTE6, 0), |_| ());
    }
    fn remove(&self, k: FdbKey) {
        self.0.remove_if(k, |_| true);
    }
    fn refresh(&self, k: FdbKey, now: u64) {
        self.0.with_entry(k, |e| e.touch(now));
    }
    fn lookup(&self, k: FdbKey) -> Option<Remote> {
        self.0.lookup(k, 1, u64::MAX)
    }
}

#[divan::bench_group(sample_count = 500, sample_size = 10000)]
mod lookup {
    use super::*;

    #[divan::bench(args = SIZES)]
    fn papaya(b: divan::Bencher, n: usize) {
        bench_lookup::<Papaya>(b, n, false);
    }
    #[divan::bench(args = SIZES)]
    fn papaya_with_learner(b: divan::Bencher, n: usize) {
        bench_lookup::<Papaya>(b, n, true);
    }
    #[divan::bench(args = SIZES)]
    fn scc_hash_index(b: divan::Bencher, n: usize) {
        bench_lookup::<Scc>(b, n, false);
    }
    #[divan::bench(args = SIZES)]
    fn scc_hash_index_with_learner(b: divan::Bencher, n: usize) {
        bench_lookup::<Scc>(b, n, true);
    }
    #[divan::bench(args = SIZES)]
    fn core_fdb(b: divan::Bencher, n: usize) {
        bench_lookup::<Fdb>(b, n, false);
    }
    #[divan::bench(args = SIZES)]
    fn core_fdb_with_learner(b: divan::Bencher, n: usize) {
        bench_lookup::<Fdb>(b, n, true);
    }
    #[divan::bench(args = SIZES)]
    fn core_fdb_ipv6(b: divan::Bencher, n: usize) {
        bench_lookup::<Fdb6>(b, n, false);
    }
}

/// Cost of learning a new MAC in a map of `n` entries: one insert, plus one remove to keep the
/// size steady (what a learner with churn does).
fn bench_insert_remove<M: Map>(bencher: divan::Bencher, n: usize) {
    let map = M::build(n);
    let base = 1u64 << 41;
    let mut step = 0u64;
    bencher.bench_local(|| {
        map.insert(key(base + step));
        if step >= 1024 {
            map.remove(key(base + step - 1024));
        }
        step += 1;
    });
}

/// Cost of refreshing an existing entry's last-seen time (lookup + atomic store).
fn bench_refresh<M: Map>(bencher: divan::Bencher, n: usize) {
    let map = M::build(n);
    let mut step = 0u64;
    bencher.bench_local(|| {
        step += 1;
        map.refresh(key(splitmix(step) % n as u64), step);
    });
}

#[divan::bench_group(sample_count = 100, sample_size = 1000)]
mod learn {
    use super::*;

    #[divan::bench(args = SIZES)]
    fn papaya_insert_remove(b: divan::Bencher, n: usize) {
        bench_insert_remove::<Papaya>(b, n);
    }
    #[divan::bench(args = SIZES)]
    fn scc_hash_index_insert_remove(b: divan::Bencher, n: usize) {
        bench_insert_remove::<Scc>(b, n);
    }
    #[divan::bench(args = SIZES)]
    fn papaya_refresh(b: divan::Bencher, n: usize) {
        bench_refresh::<Papaya>(b, n);
    }
    #[divan::bench(args = SIZES)]
    fn scc_hash_index_refresh(b: divan::Bencher, n: usize) {
        bench_refresh::<Scc>(b, n);
    }
}
