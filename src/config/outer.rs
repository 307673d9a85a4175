//! The outer-header policy of a network, named like ip-link(8)'s vxlan options: `ttl`, `tos`,
//! `df`, `srcport`, `udp-csum`, `udp6-zero-csum-rx`, `remcsum-tx` and `remcsum-rx`. Defined once here: the `vtepd run` flags (flattened into
//! the command line), their parsers, the file keys of a `[[network]]` (same names, `udp_csum`
//! with an underscore) and what the encapsulators get ([`Outer::vxlan`], [`Outer::ipip`]).
//!
//! Every field is `None` when not given, so the defaults live in one place (the `resolve`
//! functions) and a VXLAN-only option given for IPIP can be refused ([`Outer::vxlan_only`]).

use crate::core::remote_csum::TxMode;
use encap::{Df, Dscp, IpipConfig, PortRange, Ttl, VxlanConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::{IpAddr, Ipv4Addr};

/// The outer TTL when `--ttl` is not given (Linux's default too).
pub const DEFAULT_TTL: u8 = encap::tunnel::DEFAULT_TTL;

/// Outer-header options of one network (`None`: not given, the default applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::Args, Deserialize)]
#[group(id = "outer", multiple = true)]
pub struct Outer {
    /// Outer TTL: 1..=255, or inherit (the inner packet's TTL or hop limit; 64 for a frame that
    /// is not IP or has TTL 0), like ip-link's `ttl` [default: 64].
    #[arg(long, value_name = "N|inherit", value_parser = parse_ttl)]
    #[serde(default, deserialize_with = "de_ttl")]
    pub ttl: Option<Ttl>,

    /// Outer TOS byte: a DSCP in the upper six bits (decimal or 0x hex, like 0x28 for DSCP 10;
    /// the two ECN bits must be 0), or inherit (the inner packet's DSCP), like ip-link's `tos`.
    /// The ECN field always follows the inner packet (RFC 6040: CE is sent as ECT(0))
    /// [default: inherit].
    #[arg(long, value_name = "N|inherit", value_parser = parse_tos)]
    #[serde(default, deserialize_with = "de_tos")]
    pub tos: Option<Dscp>,

    /// Outer DF bit (IPv4 underlay: IPv6 has none): set, unset, or inherit (the inner IPv4 DF;
    /// set for IPv6, unset for other frames), like ip-link's `df` [default: set for VXLAN (RFC 7348 §4.3: never fragmented;
    /// the underlay's ICMP errors then reach us), inherit for IPIP (RFC 2003 §3.1)].
    #[arg(long, value_name = "set|unset|inherit", value_parser = parse_df)]
    #[serde(default, deserialize_with = "de_df")]
    pub df: Option<Df>,

    /// VXLAN: range of UDP source ports, MIN-MAX (inclusive), each inner flow's hash mapped
    /// into it, like ip-link's `srcport MIN MAX` [default: 49152-65535].
    #[arg(long, value_name = "MIN-MAX", value_parser = parse_srcport)]
    #[serde(default, deserialize_with = "de_srcport")]
    pub srcport: Option<PortRange>,

    /// VXLAN: send a UDP checksum (on) or zero (off), like ip-link's `udpcsum`/`noudpcsum`
    /// (over IPv6: `udp6zerocsumtx` is off) [default: off over IPv4, on over IPv6 (RFC 8200);
    /// TCP super-frames sent with UDP GSO always carry one: the kernel refuses GSO without
    /// it].
    #[arg(long, value_name = "on|off", value_parser = parse_udp_csum)]
    #[serde(default, deserialize_with = "de_udp_csum")]
    pub udp_csum: Option<bool>,

    /// VXLAN over IPv6: accept datagrams with a zero UDP checksum (RFC 6935/6936), like
    /// ip-link's `udp6zerocsumrx`; off, the kernel drops them before vtepd sees them (each port's
    /// sockets: on when any network on the port asks; no effect over IPv4, where a zero
    /// checksum is always accepted) [default: off].
    #[arg(long, value_name = "on|off", value_parser = parse_udp6_zero_csum_rx)]
    #[serde(default, deserialize_with = "de_udp6_zero_csum_rx")]
    pub udp6_zero_csum_rx: Option<bool>,

    /// VXLAN: remote checksum offload on send (draft-herbert-vxlan-rco), like ip-link's
    /// `remcsumtx`: a TCP segment cut from a device super-frame leaves with its checksum left to
    /// the receiver (the VXLAN header says where it goes) instead of computed here. `on`:
    /// toward every peer, which must all take it (`--remcsum-rx`, the kernel's `remcsumrx`;
    /// others drop every such datagram). `auto` (with `--store`): toward the members that
    /// registered taking it, complete checksums toward the others. Needs the outer UDP
    /// checksum, which covers the inner bytes instead (toward every peer: it is the
    /// network's) [default: off; on or auto, `--udp-csum` defaults to on].
    #[arg(long, value_name = "on|off|auto", value_parser = parse_remcsum_tx)]
    #[serde(default, deserialize_with = "de_remcsum_tx")]
    pub remcsum_tx: Option<TxMode>,

    /// VXLAN: accept remote checksum offload (ip-link's `remcsumrx`): a datagram whose VXLAN
    /// header carries the option goes to the device with its inner checksum marked partial
    /// (the kernel completes it if the frame leaves the host), as Linux's vxlan device does;
    /// off, such datagrams are dropped (`remote_csum`), as the kernel drops them. With
    /// `--store` it is registered (`"remcsum_rx":true`), for peers with `--remcsum-tx auto`
    /// [default: off].
    #[arg(long, value_name = "on|off", value_parser = parse_remcsum_rx)]
    #[serde(default, deserialize_with = "de_remcsum_rx")]
    pub remcsum_rx: Option<bool>,
}

impl Outer {
    /// The first VXLAN-only option given, as its flag and its file key.
    pub fn vxlan_only(&self) -> Option<(&'static str, &'static str)> {
        if self.srcport.is_some() {
            Some(("--srcport", "srcport"))
        } else if self.udp_csum.is_some() {
            Some(("--udp-csum", "udp_csum"))
        } else if self.udp6_zero_csum_rx.is_some() {
            Some(("--udp6-zero-csum-rx", "udp6_zero_csum_rx"))
        } else if self.remcsum_tx.is_some() {
            Some(("--remcsum-tx", "remcsum_tx"))
        } else if self.remcsum_rx.is_some() {
            Some(("--remcsum-rx", "remcsum_rx"))
        } else {
            None
        }
    }

    /// The VXLAN encapsulation settings for packets from `local` to UDP port `port` (an IPv6
    /// `local` leaves the settings' IPv4 source unspecified: the outer IPv6 header is not
    /// written from them).
    pub fn vxlan(&self, local: IpAddr, port: u16) -> VxlanConfig {
        let v6 = local.is_ipv6();
        let local = match local {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        let mut v = VxlanConfig::new(local);
        v.dst_port = port;
        v.ttl = self.ttl.unwrap_or(Ttl::Fixed(DEFAULT_TTL));
        v.dscp = self.tos.unwrap_or(Dscp::Inherit);
        v.df = self.df.unwrap_or(Df::Set);
        v.src_ports = self.srcport.unwrap_or(PortRange::DEFAULT);
        // Off over IPv4 (as Linux's vxlan device), on over IPv6 (RFC 8200 §8.1; off is
        // RFC 6935's zero checksum, ip-link's udp6zerocsumtx). RCO leaves the inner bytes to
        // the outer UDP checksum.
        let rco = self.remote_csum_tx() != TxMode::Off;
        v.udp_checksum = self.udp_csum.unwrap_or(v6 || rco);
        v
    }

    /// Why these options cannot go together, if they cannot.
    pub fn conflict(&self) -> Option<&'static str> {
        let rco = self.remote_csum_tx() != TxMode::Off;
        (rco && self.udp_csum == Some(false)).then_some(
            "remcsum_tx needs the outer UDP checksum (udp_csum on): it stands in for the inner one",
        )
    }

    /// Toward which remotes TCP segments leave with remote checksum offload (`--remcsum-tx`).
    pub fn remote_csum_tx(&self) -> TxMode {
        self.remcsum_tx.unwrap_or_default()
    }

    /// Whether datagrams with remote checksum offload are accepted (`--remcsum-rx`).
    pub fn remote_csum_rx(&self) -> bool {
        self.remcsum_rx.unwrap_or(false)
    }

    /// The IPIP encapsulation settings for packets from `local`.
    pub fn ipip(&self, local: Ipv4Addr) -> IpipConfig {
        let mut c = IpipConfig::new(local);
        c.ttl = self.ttl.unwrap_or(Ttl::Fixed(DEFAULT_TTL));
        c.dscp = self.tos.unwrap_or(Dscp::Inherit);
        c.df = self.df.unwrap_or(Df::Inherit);
        c
    }
}

/// Written as the file keys, only those given, each in a form its parser reads back
/// (`config show`).
impl Serialize for Outer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self.ttl {
            Some(Ttl::Fixed(v)) => m.serialize_entry("ttl", &v)?,
            Some(Ttl::Inherit) => m.serialize_entry("ttl", "inherit")?,
            None => {}
        }
        match self.tos {
            Some(Dscp::Fixed(d)) => {
                m.serialize_entry("tos", &format!("{:#04x}", (d & 0x3f) << 2))?
            }
            Some(Dscp::Inherit) => m.serialize_entry("tos", "inherit")?,
            None => {}
        }
        if let Some(df) = self.df {
            let v = match df {
                Df::Set => "set",
                Df::Unset => "unset",
                Df::Inherit => "inherit",
            };
            m.serialize_entry("df", v)?;
        }
        if let Some(p) = self.srcport {
            m.serialize_entry("srcport", &format!("{}-{}", p.lo(), p.hi()))?;
        }
        if let Some(c) = self.udp_csum {
            m.serialize_entry("udp_csum", &c)?;
        }
        if let Some(c) = self.udp6_zero_csum_rx {
            m.serialize_entry("udp6_zero_csum_rx", &c)?;
        }
        match self.remcsum_tx {
            Some(TxMode::Auto) => m.serialize_entry("remcsum_tx", TxMode::Auto.name())?,
            Some(c) => m.serialize_entry("remcsum_tx", &(c == TxMode::On))?,
            None => {}
        }
        if let Some(c) = self.remcsum_rx {
            m.serialize_entry("remcsum_rx", &c)?;
        }
        m.end()
    }
}

/// Parses `--ttl`: `inherit` or 1..=255.
pub fn parse_ttl(s: &str) -> Result<Ttl, String> {
    match s.trim() {
        "inherit" => Ok(Ttl::Inherit),
        t => match t.parse::<u64>() {
            Ok(v @ 1..=255) => Ok(Ttl::Fixed(v as u8)),
            Ok(v) => Err(format!("TTL {v} is not in 1..=255 (or inherit)")),
            Err(_) => Err(format!("'{s}' is not a TTL (1..=255 or inherit)")),
        },
    }
}

/// Parses `--tos`: `inherit`, or a TOS byte (decimal or `0x` hex) whose ECN bits are 0.
pub fn parse_tos(s: &str) -> Result<Dscp, String> {
    let t = s.trim();
    if t == "inherit" {
        return Ok(Dscp::Inherit);
    }
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    }
    .map_err(|_| format!("'{s}' is not a TOS (a number like 0x28, or inherit)"))?;
    let v = u8::try_from(v).map_err(|_| format!("TOS {v} is not in 0..=255 (or inherit)"))?;
    if v & 0x03 != 0 {
        return Err(format!(
            "TOS {v:#04x} sets ECN bits: the ECN field follows the inner packet (RFC 6040); \
             give a multiple of 4 like {:#04x}",
            v & 0xfc
        ));
    }
    Ok(Dscp::Fixed(v >> 2))
}

/// Parses `--df`: `set`, `unset` or `inherit`.
pub fn parse_df(s: &str) -> Result<Df, String> {
    match s.trim() {
        "set" => Ok(Df::Set),
        "unset" => Ok(Df::Unset),
        "inherit" => Ok(Df::Inherit),
        d => Err(format!("df '{d}': expected set, unset or inherit")),
    }
}

/// Parses `--srcport MIN-MAX`: two ports (1..=65535), MIN <= MAX.
pub fn parse_srcport(s: &str) -> Result<PortRange, String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not a port range MIN-MAX (like 49152-65535)"))?;
    let lo = super::parse_port(lo).map_err(|e| format!("source port range '{s}': {e}"))?;
    let hi = super::parse_port(hi).map_err(|e| format!("source port range '{s}': {e}"))?;
    PortRange::new(lo, hi).map_err(|_| format!("source port range '{s}': {lo} is more than {hi}"))
}

/// Parses `--udp-csum`: `on` or `off`.
pub fn parse_udp_csum(s: &str) -> Result<bool, String> {
    on_off("udp-csum", s)
}

/// Parses `--udp6-zero-csum-rx`: `on` or `off`.
pub fn parse_udp6_zero_csum_rx(s: &str) -> Result<bool, String> {
    on_off("udp6-zero-csum-rx", s)
}

/// Parses `--remcsum-tx`: `on`, `off` or `auto`.
pub fn parse_remcsum_tx(s: &str) -> Result<TxMode, String> {
    match s.trim() {
        "auto" => Ok(TxMode::Auto),
        t => match on_off("remcsum-tx", t) {
            Ok(on) => Ok(if on { TxMode::On } else { TxMode::Off }),
            Err(e) => Err(format!("{e} (or auto)")),
        },
    }
}

/// Parses `--remcsum-rx`: `on` or `off`.
pub fn parse_remcsum_rx(s: &str) -> Result<bool, String> {
    on_off("remcsum-rx", s)
}

/// `on` or `off` for option `name`.
fn on_off(name: &str, s: &str) -> Result<bool, String> {
    match s.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        c => Err(format!("{name} '{c}': expected on or off")),
    }
}

/// A file value of any scalar kind (`ttl = 64`, `ttl = "inherit"`, `udp_csum = true`), handed
/// to the flag's parser as the text the flag would have had.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Bool(bool),
    Str(String),
}

fn de_with<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, D::Error> {
    let text = match Scalar::deserialize(d)? {
        Scalar::Int(i) => i.to_string(),
        Scalar::Bool(b) => if b { "on" } else { "off" }.to_owned(),
        Scalar::Str(s) => s,
    };
    parse(&text).map(Some).map_err(serde::de::Error::custom)
}

fn de_ttl<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ttl>, D::Error> {
    de_with(d, parse_ttl)
}
fn de_tos<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Dscp>, D::Error> {
    de_with(d, parse_tos)
}
fn de_df<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Df>, D::Error> {
    de_with(d, parse_df)
}
fn de_srcport<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PortRange>, D::Error> {
    de_with(d, parse_srcport)
}
fn de_udp_csum<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    de_with(d, parse_udp_csum)
}
fn de_udp6_zero_csum_rx<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    de_with(d, parse_udp6_zero_csum_rx)
}
fn de_remcsum_tx<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TxMode>, D::Error> {
    de_with(d, parse_remcsum_tx)
}
fn de_remcsum_rx<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    de_with(d, parse_remcsum_rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_values() {
        assert_eq!(parse_ttl("inherit"), Ok(Ttl::Inherit));
        assert_eq!(parse_ttl("1"), Ok(Ttl::Fixed(1)));
        assert_eq!(parse_ttl(" 255 "), Ok(Ttl::Fixed(255)));
        for (bad, why) in [
            ("0", "not in 1..=255"),
            ("256", "not in 1..=255"),
            ("-1", "not a TTL"),
            ("auto", "not a TTL"),
            ("", "not a TTL"),
            ("99999999999999999999", "not a TTL"),
        ] {
            let e = parse_ttl(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn tos_values() {
        assert_eq!(parse_tos("inherit"), Ok(Dscp::Inherit));
        assert_eq!(parse_tos("0x28"), Ok(Dscp::Fixed(10)));
        assert_eq!(parse_tos("0XB8"), Ok(Dscp::Fixed(46)));
        assert_eq!(parse_tos("40"), Ok(Dscp::Fixed(10)));
        assert_eq!(parse_tos("0"), Ok(Dscp::Fixed(0)));
        assert_eq!(parse_tos("252"), Ok(Dscp::Fixed(63)));
        for (bad, why) in [
            ("0x29", "sets ECN bits"),
            ("1", "give a multiple of 4 like 0x00"),
            ("256", "not in 0..=255"),
            ("0x100", "not in 0..=255"),
            ("0x", "not a TOS"),
            ("ef", "not a TOS"),
            ("-4", "not a TOS"),
        ] {
            let e = parse_tos(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn df_srcport_and_checksum_values() {
        assert_eq!(parse_df("set"), Ok(Df::Set));
        assert_eq!(parse_df("unset"), Ok(Df::Unset));
        assert_eq!(parse_df("inherit"), Ok(Df::Inherit));
        assert!(
            parse_df("on")
                .unwrap_err()
                .contains("expected set, unset or inherit")
        );
        let r = parse_srcport("5000-5010").unwrap();
        assert_eq!((r.lo(), r.hi()), (5000, 5010));
        let one = parse_srcport("6000-6000").unwrap();
        assert_eq!((one.lo(), one.hi()), (6000, 6000));
        for (bad, why) in [
            ("5010-5000", "5010 is more than 5000"),
            ("0-10", "port 0 is not in 1..=65535"),
            ("1-65536", "port 65536"),
            ("5000", "MIN-MAX"),
            ("a-b", "not a port number"),
            ("5000-", "not a port number"),
        ] {
            let e = parse_srcport(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert_eq!(parse_udp_csum("on"), Ok(true));
        assert_eq!(parse_udp_csum("off"), Ok(false));
        assert!(parse_udp_csum("yes").is_err());
    }

    /// Remote checksum offload: off by default; on send it needs the outer UDP checksum,
    /// which it then turns on unless told otherwise (a conflict).
    #[test]
    fn remote_checksum_offload_and_the_udp_checksum() {
        let local = Ipv4Addr::new(192, 0, 2, 1).into();
        let v = Outer::default().vxlan(local, 4789);
        assert!(!v.udp_checksum);
        assert_eq!(Outer::default().remote_csum_tx(), TxMode::Off);
        assert!(!Outer::default().remote_csum_rx());
        for mode in [TxMode::On, TxMode::Auto] {
            let tx = Outer {
                remcsum_tx: Some(mode),
                ..Outer::default()
            };
            assert!(tx.vxlan(local, 4789).udp_checksum, "{mode:?}");
            assert_eq!(tx.remote_csum_tx(), mode);
            assert_eq!(tx.conflict(), None);
            let off = Outer {
                udp_csum: Some(false),
                ..tx
            };
            assert!(
                off.conflict()
                    .unwrap()
                    .contains("needs the outer UDP checksum")
            );
        }
        let tx = Outer {
            remcsum_tx: Some(TxMode::On),
            ..Outer::default()
        };
        assert_eq!(tx.vxlan_only(), Some(("--remcsum-tx", "remcsum_tx")));
        let rx = Outer {
            remcsum_rx: Some(true),
            ..Outer::default()
        };
        assert!(rx.remote_csum_rx());
        assert_eq!(rx.vxlan_only(), Some(("--remcsum-rx", "remcsum_rx")));
        assert_eq!(parse_remcsum_rx("on"), Ok(true));
        assert_eq!(parse_remcsum_tx("auto"), Ok(TxMode::Auto));
        assert_eq!(parse_remcsum_tx("off"), Ok(TxMode::Off));
        let e = parse_remcsum_tx("yes").unwrap_err();
        assert!(
            e.contains("remcsum-tx 'yes'") && e.contains("or auto"),
            "{e}"
        );
    }

    #[test]
    fn defaults_and_resolution() {
        let local = Ipv4Addr::new(192, 0, 2, 1);
        let v = Outer::default().vxlan(local.into(), 8472);
        assert_eq!(v.dst_port, 8472);
        assert_eq!(v.ttl, Ttl::Fixed(64));
        assert_eq!(v.dscp, Dscp::Inherit);
        assert_eq!(v.df, Df::Set);
        assert_eq!(v.src_ports, PortRange::DEFAULT);
        assert!(!v.udp_checksum);
        let i = Outer::default().ipip(local);
        assert_eq!(
            (i.ttl, i.dscp, i.df),
            (Ttl::Fixed(64), Dscp::Inherit, Df::Inherit)
        );
        let o = Outer {
            ttl: Some(Ttl::Inherit),
            tos: Some(Dscp::Fixed(10)),
            df: Some(Df::Unset),
            srcport: PortRange::new(5000, 5010).ok(),
            udp_csum: Some(true),
            udp6_zero_csum_rx: Some(true),
            remcsum_tx: None,
            remcsum_rx: None,
        };
        let v = o.vxlan(local.into(), 4789);
        assert_eq!(
            (v.ttl, v.dscp, v.df),
            (Ttl::Inherit, Dscp::Fixed(10), Df::Unset)
        );
        assert_eq!(v.src_ports, PortRange::new(5000, 5010).unwrap());
        assert!(v.udp_checksum);
        assert_eq!(o.ipip(local).df, Df::Unset);
        assert_eq!(o.vxlan_only(), Some(("--srcport", "srcport")));
        assert_eq!(
            Outer {
                udp_csum: Some(false),
                ..Outer::default()
            }
            .vxlan_only(),
            Some(("--udp-csum", "udp_csum"))
        );
        assert_eq!(
            Outer {
                udp6_zero_csum_rx: Some(true),
                ..Outer::default()
            }
            .vxlan_only(),
            Some(("--udp6-zero-csum-rx", "udp6_zero_csum_rx"))
        );
        assert_eq!(Outer::default().vxlan_only(), None);
    }
}
