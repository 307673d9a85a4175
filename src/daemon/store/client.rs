//! The store client's thread, `vtepd-store`: a current-thread tokio runtime running the etcd
//! client (`etcd-client` is async; nothing else in vtepd is, and nothing else waits for it).
//!
//! One session: connect, grant a lease of `--store-ttl`, write this host's registrations under
//! it, read every registration (a full resync), apply what they mean, then watch from the
//! revision read and apply each change, keeping the lease alive meanwhile. A watch that fell
//! behind a compaction reads everything again. A session ends with an error when the store
//! cannot be reached (state `unreachable`, one log line; forwarding goes on with what was
//! installed; retried with backoff, then a full resync), or when the lease was lost (expired
//! while we could not reach the store: registered again at once). At shutdown the lease is
//! revoked, so the others drop this host at once rather than after the TTL.

use super::Installer;
use super::keys::{self, Announcement, BadValue, KeyKind, Member, Static};
use super::reconcile::{self, Me};
use super::status::{StoreState, StoreStatus};
use crate::config::store::StoreSettings;
use encap::{MacAddr, Vni};
use etcd_client::{Client, ConnectOptions, GetOptions, PutOptions, WatchOptions};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// How often the thread looks at the daemon's stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// The first wait before connecting again; doubled each failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest wait between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long one request (or a connection attempt) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the lease revocation at shutdown may take.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a session ended.
enum End {
    /// The daemon is stopping.
    Stop,
    /// The lease expired: register again at once.
    LeaseLost,
    /// The store could not be reached, or answered with an error.
    Failed(String),
}

impl From<etcd_client::Error> for End {
    fn from(e: etcd_client::Error) -> End {
        End::Failed(e.to_string())
    }
}

/// A value of the fabric's keys.
enum Entry {
    Member(Member),
    Mac(Announcement),
    Static(Static),
}

/// The store client (see the module documentation).
#[derive(Debug)]
pub struct StoreClient {
    settings: StoreSettings,
    me: Me,
    /// This host's registrations: (key, JSON value).
    registrations: Vec<(String, String)>,
    installer: Installer,
    status: Arc<StoreStatus>,
    stop: Arc<AtomicBool>,
    /// Every valid registration the store holds, by key.
    members: BTreeMap<String, Member>,
    /// Every valid MAC announcement the store holds, by key.
    macs: BTreeMap<String, Announcement>,
    /// Every valid operator's static entry the store holds, by key.
    statics: BTreeMap<String, Static>,
    /// Whether a network of ours announces its MACs.
    announce: bool,
    /// The MACs we announced in this session, with the addresses announced behind each.
    published: BTreeMap<(Vni, MacAddr), Vec<IpAddr>>,
    /// The registrations left out at the last change (each new one is logged and counted once).
    skips: Vec<reconcile::Skip>,
    /// The configuration's generation `me` and `registrations` were made from (a reload that
    /// changed it moves it on).
    generation: u64,
}

/// Registrations as (key, JSON value).
fn kvs(prefix: &str, registrations: &[Member]) -> Vec<(String, String)> {
    registrations
        .iter()
        .filter_map(|m| {
            let vni = encap::Vni::new(m.vni).ok()?;
            Some((keys::member_key(prefix, vni, m.underlay), m.to_json()))
        })
        .collect()
}

impl StoreClient {
    /// A client of the store `settings` for the daemon `installer` applies to (its
    /// configuration says what it registers), reporting into `status`, ending when `stop` is
    /// set.
    pub fn new(
        settings: StoreSettings,
        installer: Installer,
        status: Arc<StoreStatus>,
        stop: Arc<AtomicBool>,
    ) -> StoreClient {
        let generation = installer.config_generation();
        let (me, registrations, announce) = installer.registrations();
        let registrations = kvs(&settings.prefix, &registrations);
        StoreClient {
            settings,
            me,
            registrations,
            installer,
            status,
            stop,
            members: BTreeMap::new(),
            macs: BTreeMap::new(),
            statics: BTreeMap::new(),
            announce,
            published: BTreeMap::new(),
            skips: Vec::new(),
            generation,
        }
    }

    /// Runs until the stop flag is set (Ok), or the runtime cannot be made.
    pub fn run(mut self) -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("store: cannot start the client's runtime: {e}"))?;
        rt.block_on(self.sessions());
        Ok(())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Sessions one after the other, with backoff after a failure, until the daemon stops.
    async fn sessions(&mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut lease = None;
        loop {
            let resyncs = self.status.counters.resyncs.load(Ordering::Relaxed);
            let end = self.session(&mut lease).await;
            if self.status.counters.resyncs.load(Ordering::Relaxed) != resyncs {
                // The session got as far as reading the store: start the backoff over.
                backoff = BACKOFF_MIN;
            }
            match end {
                End::Stop => break,
                End::LeaseLost => {
                    StoreStatus::count(&self.status.counters.lease_lost);
                    warn!("store: our lease expired; registering again");
                    lease = None;
                    continue;
                }
                End::Failed(why) => {
                    if self.status.set_state(StoreState::Unreachable) != StoreState::Unreachable {
                        StoreStatus::count(&self.status.counters.unreachable);
                        warn!(
                            "store unreachable: {why}; forwarding goes on with the last state \
                             installed, retrying"
                        );
                    } else {
                        debug!("store: still unreachable: {why}");
                    }
                }
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until {
                if self.stopping() {
                    return;
                }
                tokio::time::sleep(STOP_CHECK.min(until - Instant::now())).await;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        if let Some(id) = lease {
            self.revoke(id).await;
        }
    }

    /// Revokes lease `id` (a clean leave), within [`REVOKE_TIMEOUT`].
    async fn revoke(&self, id: i64) {
        let leave = async {
            let mut c = self.connect().await?;
            c.lease_revoke(id).await
        };
        match tokio::time::timeout(REVOKE_TIMEOUT, leave).await {
            Ok(Ok(_)) => info!("store: left the fabric (lease revoked)"),
            Ok(Err(e)) => warn!("store: could not revoke our lease ({e}); it expires by itself"),
            Err(_) => warn!("store: revoking our lease timed out; it expires by itself"),
        }
    }

    async fn connect(&self) -> Result<Client, etcd_client::Error> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(2), REQUEST_TIMEOUT)
            .with_keep_alive_while_idle(true);
        Client::connect(&self.settings.endpoints, Some(opts)).await
    }

    /// One session (see the module documentation); `lease` is ours when it ends (revoked at
    /// shutdown).
    async fn session(&mut self, lease: &mut Option<i64>) -> End {
        if self.status.state() != StoreState::Unreachable {
            self.status.set_state(StoreState::Connecting);
        }
        let mut client = match self.connect().await {
            Ok(c) => c,
            Err(e) => return e.into(),
        };
        StoreStatus::count(&self.status.counters.connects);
        let ttl = i64::try_from(self.settings.ttl.as_secs()).unwrap_or(i64::MAX);
        let id = match client.lease_grant(ttl, None).await {
            Ok(r) => r.id(),
            Err(e) => return e.into(),
        };
        let old = lease.replace(id);
        // Announced again under this lease at the first tick.
        self.published.clear();
        for (k, v) in &self.registrations {
            let put = PutOptions::new().with_lease(id);
            if let Err(e) = client.put(k.as_str(), v.as_str(), Some(put)).await {
                return e.into();
            }
        }
        // The registrations are under the new lease now: the old one (from before the store
        // was unreachable) holds nothing, and need not wait for its TTL.
        if let Some(old) = old.filter(|o| *o != id) {
            let _ = client.lease_revoke(old).await;
        }
        let (mut keeper, mut alive) = match client.lease_keep_alive(id).await {
            Ok(k) => k,
            Err(e) => return e.into(),
        };
        let every = (self.settings.ttl / 3).max(Duration::from_millis(500));
        let mut tick = tokio::time::interval(every.min(STOP_CHECK * 10));
        let mut last_alive = Instant::now();
        loop {
            // A full read, then the watch from the revision read.
            let rev = match self.resync(&mut client).await {
                Ok(rev) => rev,
                Err(e) => return e.into(),
            };
            if self.status.set_state(StoreState::Connected) != StoreState::Connected {
                info!(
                    "store connected ({}): {} registration(s) under {}",
                    self.settings.endpoints.join(","),
                    self.members.len(),
                    self.settings.prefix
                );
            }
            let opts = WatchOptions::new()
                .with_prefix()
                .with_start_revision(rev + 1);
            let mut watch = match client
                .watch(keys::fabric_prefix(&self.settings.prefix), Some(opts))
                .await
            {
                Ok(w) => w,
                Err(e) => return e.into(),
            };
            let mut last_ka_sent = Instant::now() - every;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if self.stopping() {
                            return End::Stop;
                        }
                        if last_ka_sent.elapsed() >= every {
                            if let Err(e) = keeper.keep_alive().await {
                                return e.into();
                            }
                            last_ka_sent = Instant::now();
                        }
                        if last_alive.elapsed() > self.settings.ttl {
                            return End::Failed("no keep-alive answer within the lease TTL".into());
                        }
                        if let Err(e) = self.reregister(&mut client, id).await {
                            return e.into();
                        }
                        if self.announce
                            && let Err(e) = self.publish(&mut client, id).await
                        {
                            return e.into();
                        }
                    }
                    msg = alive.message() => match msg {
                        Ok(Some(r)) if r.ttl() > 0 => last_alive = Instant::now(),
                        Ok(Some(_)) => return End::LeaseLost,
                        Ok(None) => return End::Failed("the keep-alive stream ended".into()),
                        Err(e) => return e.into(),
                    },
                    msg = watch.message() => match msg {
                        Ok(Some(r)) if r.canceled() => {
                            if r.compact_revision() > 0 {
                                StoreStatus::count(&self.status.counters.compactions);
                                info!(
                                    "store: the watch fell behind a compaction (revision {}); \
                                     reading everything again",
                                    r.compact_revision()
                                );
                                break;
                            }
                            return End::Failed(format!("watch cancelled: {}", r.cancel_reason()));
                        }
                        Ok(Some(r)) => self.on_events(r.events()),
                        Ok(None) => return End::Failed("the watch stream ended".into()),
                        Err(e) => return e.into(),
                    },
                }
            }
        }
    }

    /// Reads every registration, replaces what we knew with it and applies it; returns the
    /// store's revision of the read.
    async fn resync(&mut self, client: &mut Client) -> Result<i64, etcd_client::Error> {
        let resp = client
            .get(
                keys::fabric_prefix(&self.settings.prefix),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        StoreStatus::count(&self.status.counters.resyncs);
        let rev = resp.header().map_or(0, |h| h.revision());
        let mut members = BTreeMap::new();
        let mut macs = BTreeMap::new();
        let mut statics = BTreeMap::new();
        for kv in resp.kvs() {
            match self.read(kv.key(), Some(kv.value())) {
                Some((key, Entry::Member(m))) => {
                    members.insert(key, m);
                }
                Some((key, Entry::Mac(a))) => {
                    macs.insert(key, a);
                }
                Some((key, Entry::Static(s))) => {
                    statics.insert(key, s);
                }
                None => {}
            }
        }
        self.macs = macs;
        self.statics = statics;
        for (key, m) in &members {
            if self.members.get(key) != Some(m) {
                info!(vni = m.vni, "store: member {} is there", m.underlay);
            }
        }
        for (key, m) in &self.members {
            if !members.contains_key(key) {
                info!(vni = m.vni, "store: member {} is gone", m.underlay);
            }
        }
        self.members = members;
        self.install();
        Ok(rev)
    }

    /// Takes a watch response's changes into the members, then applies them all at once.
    fn on_events(&mut self, events: &[etcd_client::Event]) {
        for ev in events {
            let Some(kv) = ev.kv() else { continue };
            StoreStatus::count(&self.status.counters.events);
            // A deleted key (or an expired lease's) comes with version 0; checked here rather
            // than with `Event::event_type`, which panics on an event type it does not know.
            let value = (kv.version() != 0).then(|| kv.value());
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            match self.read(kv.key(), value) {
                Some((key, Entry::Member(m))) => {
                    if self.members.get(&key) != Some(&m) {
                        info!(
                            vni = m.vni,
                            "store: member {} joined or changed", m.underlay
                        );
                    }
                    self.members.insert(key, m);
                }
                Some((key, Entry::Mac(a))) => {
                    self.macs.insert(key, a);
                }
                Some((key, Entry::Static(s))) => {
                    info!("store: static entry {key}");
                    self.statics.insert(key, s);
                }
                None => {
                    self.statics.remove(&key);
                    if let Some(m) = self.members.remove(&key) {
                        info!(vni = m.vni, "store: member {} left", m.underlay);
                    }
                    self.macs.remove(&key);
                }
            }
        }
        self.install();
    }

    /// The registration under `key` holding `value` (`None`: deleted), or `None` if it is
    /// not one (another key, or a bad value: logged and counted).
    fn read(&self, key: &[u8], value: Option<&[u8]>) -> Option<(String, Entry)> {
        let bad = |e: BadValue| {
            StoreStatus::count(&self.status.counters.bad_values);
            warn!("{e}: skipped");
        };
        let Ok(key) = std::str::from_utf8(key) else {
            bad(BadValue {
                key: String::from_utf8_lossy(key).into_owned(),
                why: "not UTF-8".into(),
            });
            return None;
        };
        let value = value?;
        match keys::classify(&self.settings.prefix, key) {
            Ok(KeyKind::Member(vni, ip)) => match Member::parse(key, vni, ip, value) {
                Ok(m) => Some((key.to_owned(), Entry::Member(m))),
                Err(e) => {
                    bad(e);
                    None
                }
            },
            Ok(KeyKind::Mac(vni, mac)) => match Announcement::parse(key, vni, mac, value) {
                Ok(a) => Some((key.to_owned(), Entry::Mac(a))),
                Err(e) => {
                    bad(e);
                    None
                }
            },
            Ok(kind @ (KeyKind::Fdb(..) | KeyKind::Route(_))) => {
                match Static::parse(key, kind, value, self.me.tunnel, self.me.underlay)? {
                    Ok(s) => Some((key.to_owned(), Entry::Static(s))),
                    Err(e) => {
                        bad(e);
                        None
                    }
                }
            }
            Ok(KeyKind::Other) => None,
            Err(e) => {
                bad(e);
                None
            }
        }
    }

    /// After a reload that changed the configuration: registers the networks it added (under
    /// lease `id`), withdraws those it removed, and applies what the store means for the
    /// networks now.
    async fn reregister(&mut self, client: &mut Client, id: i64) -> Result<(), etcd_client::Error> {
        let generation = self.installer.config_generation();
        if generation == self.generation {
            return Ok(());
        }
        let (me, registrations, announce) = self.installer.registrations();
        let new = kvs(&self.settings.prefix, &registrations);
        for (k, v) in new.iter().filter(|kv| !self.registrations.contains(kv)) {
            let put = PutOptions::new().with_lease(id);
            client.put(k.as_str(), v.as_str(), Some(put)).await?;
            info!("store: registered {k} (the configuration was reloaded)");
        }
        for (k, _) in &self.registrations {
            if !new.iter().any(|(n, _)| n == k) {
                client.delete(k.as_str(), None).await?;
                info!("store: withdrew {k} (the configuration was reloaded)");
            }
        }
        (self.me, self.registrations, self.announce) = (me, new, announce);
        self.generation = generation;
        self.install();
        Ok(())
    }

    /// Announces the MACs seen on our devices (with the addresses behind them) that are not yet
    /// or have other addresses now, and withdraws those that aged out, under lease `id`.
    async fn publish(&mut self, client: &mut Client, id: i64) -> Result<(), etcd_client::Error> {
        let now: BTreeMap<(Vni, MacAddr), Vec<IpAddr>> = self
            .installer
            .local_macs()
            .into_iter()
            .map(|m| ((m.vni, m.mac), m.ips))
            .collect();
        let prefix = &self.settings.prefix;
        for ((vni, mac), ips) in &now {
            if self.published.get(&(*vni, *mac)) == Some(ips) {
                continue;
            }
            let a = Announcement {
                version: keys::VERSION,
                vni: vni.get(),
                mac: *mac,
                underlay: self.me.underlay,
                ips: ips.clone(),
            };
            let put = PutOptions::new().with_lease(id);
            client
                .put(keys::mac_key(prefix, *vni, *mac), a.to_json(), Some(put))
                .await?;
            debug!(%vni, %mac, ?ips, "store: MAC announced");
        }
        for (vni, mac) in self.published.keys().filter(|k| !now.contains_key(k)) {
            client
                .delete(keys::mac_key(prefix, *vni, *mac), None)
                .await?;
            debug!(%vni, %mac, "store: MAC withdrawn");
        }
        self.published = now;
        Ok(())
    }

    /// Applies what the members ask of this daemon.
    fn install(&mut self) {
        self.status.set_members(self.members.len());
        let (want, skips) = reconcile::desired(
            &self.me,
            self.members.values(),
            self.macs.values(),
            self.statics.values(),
        );
        for s in skips.iter().filter(|s| !self.skips.contains(s)) {
            StoreStatus::count(&self.status.counters.skipped);
            warn!(
                vni = s.vni,
                "store: member {} left out: {}", s.underlay, s.why
            );
        }
        self.skips = skips;
        let failed = self.installer.apply(&want);
        for _ in 0..failed {
            StoreStatus::count(&self.status.counters.apply_failed);
        }
    }
}
