//! The store's key layout and its JSON values (pure; README.md, "Store", documents it).
//!
//! Under the fabric's prefix (`--store-prefix`, default `/vtepd`):
//!
//! - `PREFIX/members/VNI/UNDERLAY`: one daemon's registration in one network, written by that
//!   daemon under its lease (gone when the daemon leaves or its lease expires). IPIP has no
//!   VNI: its registrations use 0. `UNDERLAY` is an IPv4 or (VXLAN over an IPv6 underlay) an
//!   IPv6 address in its usual text (`PREFIX/members/42/2001:db8::1`: everything after the VNI
//!   is the address). The value is a [`Member`] in JSON:
//!   `{"version":1,"underlay":"192.0.2.1","vni":42,"port":4789}`, with `mac` (its MAC on the
//!   network, L3 VXLAN), `address` and `address6` (its own IPv4 and IPv6 overlay addresses, L3
//!   VXLAN), `prefixes` and `prefixes6` (the IPv4 and IPv6 overlay prefixes behind it, L3
//!   modes) when it has them. The IPv6 ones are fields of their own, so that a vtepd that
//!   knows only the IPv4 ones reads a dual-stack member's value as before (unknown fields are
//!   ignored; an IPv6 prefix in `prefixes` would make the whole value bad to it). In VXLAN,
//!   `"remcsum_rx":true` says it takes remote checksum offload (`remcsum_rx`; the others then
//!   send it TCP segments with the option under `remcsum_tx auto`); left out when it does not.
//!
//! - `PREFIX/macs/VNI/MAC`: a MAC seen on a daemon's local device in an announcing network
//!   (`announce = true`), written by that daemon under its lease, deleted when it ages out. The
//!   value is an [`Announcement`]: `{"version":1,"vni":42,"mac":"02:42:0a:2a:01:0a",
//!   "underlay":"192.0.2.1","ips":["10.42.1.10","fd00::1:10"]}`, `ips` being the IPv4 and
//!   IPv6 addresses seen behind the MAC (left out when there are none; a value without it reads
//!   as none).
//!
//! - `PREFIX/fdb/VNI/MAC` and `PREFIX/routes/CIDR` (like `PREFIX/routes/10.244.9.0/24`): static
//!   configuration an operator (or a tool) writes, installed by every daemon of the fabric as
//!   the store's static FDB entries and routes: `{"version":1,"remote":"192.0.2.9"}` and
//!   `{"version":1,"via":"192.0.2.9"}`. A route's CIDR may be IPv6 (`PREFIX/routes/fd00:9::/64`:
//!   everything after `routes/` is the CIDR), its next hop then of the family the mode needs
//!   ([`check_family`]); an FDB entry's remote is of the family of the reader's `--local`
//!   (as on the command line: [`UnusableRemote::check`]). They win over what members register
//!   or announce.
//!
//! Other keys under the prefix are not vtepd's and are left alone. A value that does not parse,
//! names another network or address than its key, or has a `version` this vtepd does not know
//! is a [`BadValue`]: skipped whole (never applied half-way), logged and counted.

use crate::config::Tunnel;
use crate::core::UnusableRemote;
use crate::core::route::{Route, check_family, check_prefix, parse_prefix};
use encap::{MacAddr, Vni};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The layout version this vtepd writes and reads (a value with another is skipped).
pub const VERSION: u32 = 1;

/// One daemon's registration in one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The layout version ([`VERSION`]).
    pub version: u32,
    /// Its underlay address (where tunnel packets for it go; IPv6 over an IPv6 underlay).
    pub underlay: IpAddr,
    /// The network's VNI (0 for IPIP).
    pub vni: u32,
    /// Its VXLAN UDP port (0 for IPIP).
    pub port: u16,
    /// Its MAC on the network (L3 VXLAN: the next hop's MAC the others resolve to).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "mac_text")]
    pub mac: Option<MacAddr>,
    /// Its own overlay address (L3 VXLAN: the next hop of its prefixes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// Its own IPv6 overlay address (L3 VXLAN: the next hop of its IPv6 prefixes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Addr>,
    /// The IPv4 overlay prefixes behind it (L3 modes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<Ipv4Net>,
    /// The IPv6 overlay prefixes behind it (L3 modes; a field of its own: see the module
    /// documentation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes6: Vec<Ipv6Net>,
    /// VXLAN: whether it takes remote checksum offload (`remcsum_rx`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remcsum_rx: bool,
}

/// A value under the prefix that was skipped, and why (one line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store key {key}: {why}")]
pub struct BadValue {
    /// The key.
    pub key: String,
    /// Why it was skipped.
    pub why: String,
}

/// A MAC announced by a daemon: seen on its device in network `vni`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The layout version ([`VERSION`]).
    pub version: u32,
    /// The network's VNI.
    pub vni: u32,
    /// The MAC.
    #[serde(with = "mac_text::one")]
    pub mac: MacAddr,
    /// The announcing daemon's underlay address (where frames to the MAC go).
    pub underlay: IpAddr,
    /// The IPv4 and IPv6 addresses seen behind the MAC (ARP/ND suppression bindings); absent
    /// in values written before there were any, read as none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
}

impl Announcement {
    /// The value written for this announcement.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The announcement stored under `key` (`vni`, `mac` from [`classify`]) as `value`.
    pub fn parse(
        key: &str,
        vni: Vni,
        mac: MacAddr,
        value: &[u8],
    ) -> Result<Announcement, BadValue> {
        let bad = |why: String| BadValue {
            key: key.to_owned(),
            why,
        };
        check_version(value).map_err(bad)?;
        let a: Announcement = serde_json::from_slice(value).map_err(|e| bad(e.to_string()))?;
        if a.vni != vni.get() || a.mac != mac {
            return Err(bad(format!(
                "the value names VNI {} and {}, not the key's",
                a.vni, a.mac
            )));
        }
        if !a.mac.is_unicast() {
            return Err(bad("mac is not a unicast MAC address".into()));
        }
        if let Some(why) = UnusableRemote::of(a.underlay) {
            return Err(bad(why.to_string()));
        }
        if let Some(ip) = a
            .ips
            .iter()
            .find(|ip| !crate::core::neigh::usable_neigh(**ip))
        {
            return Err(bad(format!("{ip} cannot be bound to a MAC")));
        }
        Ok(a)
    }
}

/// An operator's static entry in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Static {
    /// An FDB entry: (network, MAC) -> remote VTEP.
    Fdb(Vni, MacAddr, IpAddr),
    /// A route: prefix -> next hop.
    Route(IpNet, IpAddr),
}

impl Static {
    /// The static entry under `key` (its `kind` from [`classify`]) holding `value`, as a daemon
    /// of mode `tunnel` whose `--local` is `local` reads it (a route's next hop must be of the
    /// family the mode needs, an FDB remote of the family of `local`); `None` for a key that
    /// is not one.
    pub fn parse(
        key: &str,
        kind: KeyKind,
        value: &[u8],
        tunnel: Tunnel,
        local: IpAddr,
    ) -> Option<Result<Static, BadValue>> {
        #[derive(Deserialize)]
        struct Value {
            remote: Option<IpAddr>,
            via: Option<IpAddr>,
        }
        let bad = |why: String| BadValue {
            key: key.to_owned(),
            why,
        };
        let parsed = || -> Result<Static, BadValue> {
            check_version(value).map_err(bad)?;
            let v: Value = serde_json::from_slice(value).map_err(|e| bad(e.to_string()))?;
            let (s, ip) = match (kind, v.remote, v.via) {
                (KeyKind::Fdb(vni, mac), Some(r), _) if mac.is_unicast() => {
                    // Our own address is the one host the entry is not for: left out there.
                    match UnusableRemote::check(local, r) {
                        Ok(()) | Err(UnusableRemote::Own(_)) => {}
                        Err(e) => return Err(bad(e.to_string())),
                    }
                    (Static::Fdb(vni, mac, r), r)
                }
                (KeyKind::Fdb(..), Some(_), _) => {
                    return Err(bad("not a unicast MAC address".into()));
                }
                (KeyKind::Route(prefix), _, Some(via)) => {
                    // L2 installs no routes: only the rule of every mode is checked there.
                    if tunnel != Tunnel::L2Vxlan || matches!(prefix, IpNet::V4(_)) {
                        check_family(Route { prefix, via }, tunnel == Tunnel::L3Vxlan)
                            .map_err(|e| bad(e.to_string()))?;
                    }
                    (Static::Route(prefix, via), via)
                }
                (KeyKind::Fdb(..), None, _) => return Err(bad("no remote".into())),
                _ => return Err(bad("no via".into())),
            };
            match UnusableRemote::of(ip) {
                Some(why) => Err(bad(why.to_string())),
                None => Ok(s),
            }
        };
        matches!(kind, KeyKind::Fdb(..) | KeyKind::Route(_)).then(parsed)
    }
}

/// The key of `mac`'s announcement in network `vni`.
pub fn mac_key(prefix: &str, vni: Vni, mac: MacAddr) -> String {
    format!("{prefix}/macs/{}/{mac}", vni.get())
}

/// The version check every value passes first, so that a newer layout is named as such rather
/// than as garbage.
fn check_version(value: &[u8]) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Versioned {
        version: Option<u32>,
    }
    let v: Versioned = serde_json::from_slice(value)
        .map_err(|e| format!("not a JSON object with a version: {e}"))?;
    match v.version {
        Some(VERSION) => Ok(()),
        Some(other) => Err(format!("version {other} is not known here (1 is)")),
        None => Err("no version field".into()),
    }
}

/// What a key under the prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A member's registration: its network and underlay address.
    Member(Vni, IpAddr),
    /// A MAC announcement: its network and MAC.
    Mac(Vni, MacAddr),
    /// An operator's static FDB entry: its network and MAC.
    Fdb(Vni, MacAddr),
    /// An operator's route: its prefix (IPv4 or IPv6).
    Route(IpNet),
    /// Not one of vtepd's keys (left alone).
    Other,
}

/// The key of `underlay`'s registration in network `vni`.
pub fn member_key(prefix: &str, vni: Vni, underlay: IpAddr) -> String {
    format!("{prefix}/members/{}/{underlay}", vni.get())
}

/// The prefix every key of the fabric starts with (watched and listed).
pub fn fabric_prefix(prefix: &str) -> String {
    format!("{prefix}/")
}

/// What `key` is; a key under `members/` or `macs/` that does not name a VNI and an address
/// (or a MAC) is bad.
pub fn classify(prefix: &str, key: &str) -> Result<KeyKind, BadValue> {
    let Some(rest) = key.strip_prefix(&fabric_prefix(prefix)) else {
        return Ok(KeyKind::Other);
    };
    let bad = |why: String| BadValue {
        key: key.to_owned(),
        why,
    };
    let (kind, rest) = match rest.split_once('/') {
        Some(("members", rest)) => ("members", rest),
        Some(("macs", rest)) => ("macs", rest),
        Some(("fdb", rest)) => ("fdb", rest),
        // The rest is the CIDR, slash and all (`routes/10.244.9.0/24`, `routes/fd00:9::/64`).
        Some(("routes", cidr)) => return parse_prefix(cidr).map(KeyKind::Route).map_err(bad),
        _ => return Ok(KeyKind::Other),
    };
    let Some((vni, last)) = rest.split_once('/') else {
        return Err(bad(format!("not {kind}/VNI/...")));
    };
    let vni = vni
        .parse::<u32>()
        .ok()
        .and_then(|v| Vni::new(v).ok())
        .ok_or_else(|| bad(format!("'{vni}' is not a VNI")))?;
    if kind != "members" {
        let mac = last
            .parse::<MacAddr>()
            .map_err(|_| bad(format!("'{last}' is not a MAC address")))?;
        return Ok(if kind == "macs" {
            KeyKind::Mac(vni, mac)
        } else {
            KeyKind::Fdb(vni, mac)
        });
    }
    let ip = last
        .parse::<IpAddr>()
        .map_err(|_| bad(format!("'{last}' is not an IP address")))?;
    Ok(KeyKind::Member(vni, ip))
}

impl Member {
    /// The value written for this registration.
    pub fn to_json(&self) -> String {
        // A struct of plain fields always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The registration stored under `key` (`vni`, `underlay` from [`classify`]) as `value`.
    pub fn parse(key: &str, vni: Vni, underlay: IpAddr, value: &[u8]) -> Result<Member, BadValue> {
        let bad = |why: String| BadValue {
            key: key.to_owned(),
            why,
        };
        check_version(value).map_err(bad)?;
        let m: Member = serde_json::from_slice(value).map_err(|e| bad(e.to_string()))?;
        if m.vni != vni.get() || m.underlay != underlay {
            return Err(bad(format!(
                "the value names VNI {} and {}, not the key's",
                m.vni, m.underlay
            )));
        }
        if let Some(why) = UnusableRemote::of(m.underlay) {
            return Err(bad(why.to_string()));
        }
        if m.mac.is_some_and(|mac| !mac.is_unicast()) {
            return Err(bad("mac is not a unicast MAC address".into()));
        }
        if let Some(a) = m.address6.filter(|a| !crate::core::neigh::usable_ip6(*a)) {
            return Err(bad(format!("address6 {a} cannot be a next hop")));
        }
        let prefixes = m.prefixes.iter().map(|p| IpNet::from(*p));
        for p in prefixes.chain(m.prefixes6.iter().map(|p| IpNet::from(*p))) {
            check_prefix(&p.to_string(), p).map_err(|e| bad(e.to_string()))?;
        }
        // A VXLAN member's prefixes go via its overlay address: IPv6 ones via its IPv6 one.
        if m.port != 0 && !m.prefixes6.is_empty() && m.address6.is_none() {
            return Err(bad(
                "its IPv6 prefixes (prefixes6) need its IPv6 address (address6), their next hop"
                    .into(),
            ));
        }
        Ok(m)
    }
}

/// A MAC as its usual text in the JSON value.
mod mac_text {
    use encap::MacAddr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_str(&m.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MacAddr>, D::Error> {
        let t = Option::<String>::deserialize(d)?;
        t.map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }

    /// A MAC that must be there.
    pub mod one {
        use encap::MacAddr;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&m.to_string())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
            String::deserialize(d)?
                .parse()
                .map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vni(v: u32) -> Vni {
        Vni::new(v).unwrap()
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn keys_name_the_network_and_the_host() {
        let k = member_key("/vtepd/t", vni(42), A);
        assert_eq!(k, "/vtepd/t/members/42/192.0.2.1");
        assert_eq!(classify("/vtepd/t", &k), Ok(KeyKind::Member(vni(42), A)));
        assert_eq!(classify("/vtepd/t", "/vtepd/t/other/x"), Ok(KeyKind::Other));
        let mac = MacAddr([2, 0x42, 0, 0, 0, 1]);
        let mk = mac_key("/vtepd/t", vni(42), mac);
        assert_eq!(mk, "/vtepd/t/macs/42/02:42:00:00:00:01");
        assert_eq!(classify("/vtepd/t", &mk), Ok(KeyKind::Mac(vni(42), mac)));
        assert!(classify("/vtepd/t", "/vtepd/t/macs/42/nomac").is_err());
        let r = classify("/vtepd/t", "/vtepd/t/routes/10.244.9.0/24");
        assert_eq!(r, Ok(KeyKind::Route("10.244.9.0/24".parse().unwrap())));
        let r6 = classify("/vtepd/t", "/vtepd/t/routes/fd00:9::/64");
        assert_eq!(r6, Ok(KeyKind::Route("fd00:9::/64".parse().unwrap())));
        for bad in [
            "10.244.9.1/24",
            "fd00:9::1/64",
            "fd00:9::",
            "::/0",
            "fd00:9::/64/x",
        ] {
            let key = format!("/vtepd/t/routes/{bad}");
            assert!(classify("/vtepd/t", &key).is_err(), "{key}");
        }
        let f = classify("/vtepd/t", "/vtepd/t/fdb/42/02:42:00:00:00:01");
        assert_eq!(f, Ok(KeyKind::Fdb(vni(42), mac)));
        assert_eq!(
            classify("/vtepd/t", "/vtepd/tt/members/1/192.0.2.1"),
            Ok(KeyKind::Other)
        );
        for bad in [
            "/vtepd/t/members/42",
            "/vtepd/t/members/x/192.0.2.1",
            "/vtepd/t/members/16777216/192.0.2.1",
            "/vtepd/t/members/42/host",
        ] {
            assert!(classify("/vtepd/t", bad).is_err(), "{bad}");
        }
    }

    /// The documented value reads (written here by hand, as an operator or another tool would
    /// write it), and what we write reads back.
    #[test]
    fn values_read_the_documented_layout() {
        let key = member_key("/p", vni(1), A);
        let text = br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":4789,
            "mac":"02:00:00:00:00:01","address":"10.244.1.0","prefixes":["10.244.1.0/24"],
            "added_later":true}"#;
        let m = Member::parse(&key, vni(1), A, text).unwrap();
        assert_eq!(m.port, 4789);
        assert_eq!(m.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(m.address, Some(Ipv4Addr::new(10, 244, 1, 0)));
        assert_eq!(m.prefixes, ["10.244.1.0/24".parse::<Ipv4Net>().unwrap()]);
        assert_eq!(
            Member::parse(&key, vni(1), A, m.to_json().as_bytes()),
            Ok(m)
        );
        let plain = Member::parse(
            &key,
            vni(1),
            A,
            br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":4789}"#,
        )
        .unwrap();
        assert_eq!(
            plain.to_json(),
            r#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":4789}"#
        );
    }

    /// An announcement as the README documents it reads, and what we write reads back; one
    /// naming another MAC than its key's, or a multicast MAC, is refused.
    #[test]
    fn announcements_read_the_documented_layout() {
        let mac = MacAddr([2, 0x42, 0x0a, 0x2a, 1, 0x0a]);
        let key = mac_key("/p", vni(42), mac);
        let text = br#"{"version":1,"vni":42,"mac":"02:42:0a:2a:01:0a","underlay":"192.0.2.1"}"#;
        let a = Announcement::parse(&key, vni(42), mac, text).unwrap();
        assert_eq!((a.underlay, a.mac), (A, mac));
        assert!(a.ips.is_empty(), "a value without bindings reads as none");
        assert_eq!(
            Announcement::parse(&key, vni(42), mac, a.to_json().as_bytes()),
            Ok(a)
        );
        let with = br#"{"version":1,"vni":42,"mac":"02:42:0a:2a:01:0a","underlay":"192.0.2.1",
            "ips":["10.42.1.10","fd00::1:10"]}"#;
        let b = Announcement::parse(&key, vni(42), mac, with).unwrap();
        assert_eq!(
            b.ips,
            [
                IpAddr::V4(Ipv4Addr::new(10, 42, 1, 10)),
                "fd00::1:10".parse::<IpAddr>().unwrap()
            ]
        );
        assert_eq!(
            b.to_json(),
            r#"{"version":1,"vni":42,"mac":"02:42:0a:2a:01:0a","underlay":"192.0.2.1","ips":["10.42.1.10","fd00::1:10"]}"#
        );
        for bad in ["255.255.255.255", "ff02::1", "::"] {
            let text = format!(
                r#"{{"version":1,"vni":42,"mac":"02:42:0a:2a:01:0a","underlay":"192.0.2.1",
                "ips":["{bad}"]}}"#
            );
            let e = Announcement::parse(&key, vni(42), mac, text.as_bytes()).unwrap_err();
            assert!(e.why.contains("cannot be bound"), "{e}");
        }
        let other = br#"{"version":1,"vni":42,"mac":"02:42:0a:2a:01:0b","underlay":"192.0.2.1"}"#;
        assert!(
            Announcement::parse(&key, vni(42), mac, other)
                .unwrap_err()
                .why
                .contains("not the key's")
        );
        let mc = MacAddr([1, 0, 0x5e, 0, 0, 1]);
        let bad = br#"{"version":1,"vni":42,"mac":"01:00:5e:00:00:01","underlay":"192.0.2.1"}"#;
        let e = Announcement::parse(&mac_key("/p", vni(42), mc), vni(42), mc, bad).unwrap_err();
        assert!(e.why.contains("unicast"), "{e}");
        let v2 = br#"{"version":2}"#;
        assert!(
            Announcement::parse(&key, vni(42), mac, v2)
                .unwrap_err()
                .why
                .contains("version 2")
        );
    }

    /// Operator keys: the documented values read; a value without its field, or with an
    /// unusable address, is refused.
    #[test]
    fn static_entries_read_the_documented_layout() {
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let p: Ipv4Net = "10.244.9.0/24".parse().unwrap();
        let (fk, rk) = (KeyKind::Fdb(vni(42), mac), KeyKind::Route(p.into()));
        let r = br#"{"version":1,"remote":"192.0.2.9"}"#;
        let v = br#"{"version":1,"via":"192.0.2.9"}"#;
        let ip9 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        let l3 = Tunnel::L3Ipip;
        assert_eq!(
            Static::parse("k", fk, r, l3, A),
            Some(Ok(Static::Fdb(vni(42), mac, ip9)))
        );
        assert_eq!(
            Static::parse("k", rk, v, l3, A),
            Some(Ok(Static::Route(p.into(), ip9)))
        );
        assert!(
            Static::parse("k", fk, v, l3, A)
                .unwrap()
                .unwrap_err()
                .why
                .contains("no remote")
        );
        assert!(
            Static::parse("k", rk, r, l3, A)
                .unwrap()
                .unwrap_err()
                .why
                .contains("no via")
        );
        let lo = br#"{"version":1,"via":"127.0.0.1"}"#;
        assert!(Static::parse("k", rk, lo, l3, A).unwrap().is_err());
        assert_eq!(Static::parse("k", KeyKind::Other, r, l3, A), None);
    }

    /// An IPv6 route key: its next hop of the family the reader's mode needs (IPIP: a node's
    /// IPv4 underlay address; L3 VXLAN: an IPv6 overlay address), else a bad value; an IPv4
    /// prefix's next hop is IPv4 in every mode.
    #[test]
    fn ipv6_route_keys_take_the_modes_next_hop_family() {
        let p6 = KeyKind::Route("fd00:9::/64".parse().unwrap());
        let p4 = KeyKind::Route("10.244.9.0/24".parse().unwrap());
        let via4: &[u8] = br#"{"version":1,"via":"192.0.2.9"}"#;
        let via6: &[u8] = br#"{"version":1,"via":"fd00::9"}"#;
        let parse = |kind, v: &[u8], t| Static::parse("k", kind, v, t, A).unwrap();
        let route =
            |s: &str, via: &str| Ok(Static::Route(s.parse().unwrap(), via.parse().unwrap()));
        assert_eq!(
            parse(p6, via4, Tunnel::L3Ipip),
            route("fd00:9::/64", "192.0.2.9")
        );
        assert_eq!(
            parse(p6, via6, Tunnel::L3Vxlan),
            route("fd00:9::/64", "fd00::9")
        );
        for (kind, v, t, why) in [
            (p6, via6, Tunnel::L3Ipip, "IPv4 underlay"),
            (p6, via4, Tunnel::L3Vxlan, "needs an IPv6 next hop"),
            (p4, via6, Tunnel::L3Vxlan, "needs an IPv4 next hop"),
            (p4, via6, Tunnel::L2Vxlan, "needs an IPv4 next hop"),
        ] {
            let e = parse(kind, v, t).unwrap_err();
            assert!(e.why.contains(why), "{t:?}: {e}");
        }
        let mc = br#"{"version":1,"via":"ff02::1"}"#;
        assert!(parse(p6, mc, Tunnel::L3Vxlan).is_err());
    }

    /// Over an IPv6 underlay: the key holds the address in its usual text and reads back
    /// (everything after the VNI is the address), the values carry it as a string like an IPv4
    /// one; a key naming another address than its value is refused as before.
    #[test]
    fn ipv6_underlay_keys_and_values_read_back() {
        let six: IpAddr = "2001:db8::1".parse().unwrap();
        let key = member_key("/vtepd/t", vni(42), six);
        assert_eq!(key, "/vtepd/t/members/42/2001:db8::1");
        assert_eq!(
            classify("/vtepd/t", &key),
            Ok(KeyKind::Member(vni(42), six))
        );
        let text = br#"{"version":1,"underlay":"2001:db8::1","vni":42,"port":4789}"#;
        let m = Member::parse(&key, vni(42), six, text).unwrap();
        assert_eq!(m.underlay, six);
        assert_eq!(m.to_json().as_bytes(), text);
        let e = Member::parse(&key, vni(42), A, text).unwrap_err();
        assert!(e.why.contains("not the key's"), "{e}");
        let mapped = br#"{"version":1,"underlay":"::ffff:192.0.2.1","vni":42,"port":4789}"#;
        let m6: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let e = Member::parse(&key, vni(42), m6, mapped).unwrap_err();
        assert!(e.why.contains("IPv4-mapped"), "{e}");
        let mac = MacAddr([2, 0x42, 0x0a, 0x2a, 1, 0x0a]);
        let a = br#"{"version":1,"vni":42,"mac":"02:42:0a:2a:01:0a","underlay":"2001:db8::1"}"#;
        let ann = Announcement::parse(&mac_key("/p", vni(42), mac), vni(42), mac, a).unwrap();
        assert_eq!(ann.underlay, six);
        assert_eq!(ann.to_json().as_bytes(), a);
    }

    /// A static FDB entry's remote is of the family of the reader's `--local`, as on the
    /// command line: an IPv6 one over an IPv6 underlay; the other family is a bad value; the
    /// reader's own address is left to the reader (the one host the entry is not for).
    #[test]
    fn static_fdb_remotes_take_the_family_of_local() {
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let fk = KeyKind::Fdb(vni(42), mac);
        let l6: IpAddr = "2001:db8::1".parse().unwrap();
        let r6 = br#"{"version":1,"remote":"2001:db8::9"}"#;
        let r4 = br#"{"version":1,"remote":"192.0.2.9"}"#;
        let own6 = br#"{"version":1,"remote":"2001:db8::1"}"#;
        let parse = |v: &[u8], local| Static::parse("k", fk, v, Tunnel::L2Vxlan, local).unwrap();
        let fdb = |r: &str| Ok(Static::Fdb(vni(42), mac, r.parse().unwrap()));
        assert_eq!(parse(r6, l6), fdb("2001:db8::9"));
        assert_eq!(parse(own6, l6), fdb("2001:db8::1"));
        assert_eq!(parse(r4, A), fdb("192.0.2.9"));
        for (v, local, why) in [
            (
                &r4[..],
                l6,
                "192.0.2.9 is an IPv4 address but --local 2001:db8::1 is IPv6",
            ),
            (
                &r6[..],
                A,
                "2001:db8::9 is an IPv6 address but --local 192.0.2.1 is IPv4",
            ),
        ] {
            let e = parse(v, local).unwrap_err();
            assert!(e.why.contains(why), "{e}");
        }
        let mc = br#"{"version":1,"remote":"ff02::1"}"#;
        assert!(parse(mc, l6).unwrap_err().why.contains("multicast"));
    }

    /// A dual-stack member: `address6` and `prefixes6` read and write back; a vtepd that knows
    /// only the IPv4 fields (the layout before them, below) still reads our value, IPv4
    /// prefixes and all, which an IPv6 prefix in `prefixes` would have made bad to it.
    #[test]
    fn dual_stack_members_stay_readable_to_ipv4_only_readers() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Before {
            version: u32,
            underlay: Ipv4Addr,
            vni: u32,
            port: u16,
            mac: Option<String>,
            address: Option<Ipv4Addr>,
            #[serde(default)]
            prefixes: Vec<Ipv4Net>,
        }
        let key = member_key("/p", vni(1), A);
        let text = br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":4789,
            "mac":"02:00:00:00:00:01","address":"10.244.1.0","address6":"fd00:244:1::",
            "prefixes":["10.244.1.0/24"],"prefixes6":["fd00:244:1::/64"]}"#;
        let m = Member::parse(&key, vni(1), A, text).unwrap();
        assert_eq!(m.address6, Some("fd00:244:1::".parse().unwrap()));
        assert_eq!(m.prefixes6, ["fd00:244:1::/64".parse::<Ipv6Net>().unwrap()]);
        let json = m.to_json();
        assert_eq!(Member::parse(&key, vni(1), A, json.as_bytes()), Ok(m));
        let old: Before = serde_json::from_str(&json).unwrap();
        assert_eq!(old.prefixes, ["10.244.1.0/24".parse::<Ipv4Net>().unwrap()]);
        let mixed = json.replace(r#""10.244.1.0/24""#, r#""10.244.1.0/24","fd00:244:1::/64""#);
        assert!(serde_json::from_str::<Before>(&mixed).is_err());
    }

    /// `remcsum_rx`: written only when true, read back; a value without it reads as false.
    #[test]
    fn members_say_whether_they_take_remote_checksum_offload() {
        let key = member_key("/p", vni(1), A);
        let plain = br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":4789}"#;
        let mut m = Member::parse(&key, vni(1), A, plain).unwrap();
        assert!(!m.remcsum_rx);
        assert!(!m.to_json().contains("remcsum"), "{}", m.to_json());
        m.remcsum_rx = true;
        let json = m.to_json();
        assert!(json.contains(r#""remcsum_rx":true"#), "{json}");
        assert_eq!(Member::parse(&key, vni(1), A, json.as_bytes()), Ok(m));
        let bad = br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":4789,"remcsum_rx":1}"#;
        assert!(Member::parse(&key, vni(1), A, bad).is_err());
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let key = member_key("/p", vni(1), A);
        for (value, why) in [
            (&b"not json"[..], "not a JSON object"),
            (b"{}", "no version"),
            (br#"{"version":2,"underlay":"192.0.2.1"}"#, "version 2"),
            (br#"{"version":1,"underlay":"192.0.2.1","vni":1}"#, "missing field `port`"),
            (br#"{"version":1,"underlay":"192.0.2.9","vni":1,"port":4789}"#, "not the key's"),
            (br#"{"version":1,"underlay":"192.0.2.1","vni":7,"port":4789}"#, "not the key's"),
            (br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":4789,"mac":"01:00:5e:00:00:01"}"#, "unicast"),
            (br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":4789,"mac":"zz"}"#, "MAC address"),
            (br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":70000}"#, "expected u16"),
            (br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":4789,"address6":"ff02::1"}"#, "cannot be a next hop"),
            (br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":4789,"address6":"10.0.0.1"}"#, "invalid IPv6"),
            (br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":4789,"prefixes6":["fd00:1::/64"]}"#, "need its IPv6 address"),
            (br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":4789,"prefixes":["fd00:1::/64"]}"#, "invalid IP address"),
            (br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":0,"prefixes6":["fd00:1::1/64"]}"#, "host bits"),
            (br#"{"version":1,"underlay":"192.0.2.1","vni":1,"port":0,"prefixes":["0.0.0.0/0"]}"#, "default route"),
        ] {
            let e = Member::parse(&key, vni(1), A, value).unwrap_err();
            assert!(e.to_string().contains(why), "{}: {e}", String::from_utf8_lossy(value));
            assert!(!e.to_string().contains('\n'));
        }
        let lo = member_key("/p", vni(1), Ipv4Addr::LOCALHOST.into());
        let e = Member::parse(
            &lo,
            vni(1),
            Ipv4Addr::LOCALHOST.into(),
            br#"{"version":1,"underlay":"127.0.0.1","vni":1,"port":4789}"#,
        )
        .unwrap_err();
        assert!(e.why.contains("loopback"), "{e}");
        // IPIP: IPv6 prefixes go to the node's underlay address, no address6 needed.
        let ipip =
            br#"{"version":1,"underlay":"192.0.2.1","vni":0,"port":0,"prefixes6":["fd00:1::/64"]}"#;
        assert!(Member::parse(&member_key("/p", Vni::ZERO, A), Vni::ZERO, A, ipip).is_ok());
    }
}
