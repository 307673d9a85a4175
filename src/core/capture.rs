//! Packet capture (`vtepd capture`): what a capture asks for ([`Spec`]) and one captured
//! packet ([`Captured`]). Pure data, like [`super::trace`]'s records: the workers make them,
//! the control socket carries them, the client writes them to a pcapng file.

use super::DropReason;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes kept of a packet by default (and at most): the largest IPv4 packet.
pub const MAX_SNAPLEN: u32 = 65_535;

/// Which side of the tunnel a capture records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sides {
    /// The device's frames or packets.
    Overlay,
    /// The outer packets.
    Underlay,
    /// Both.
    #[default]
    Both,
}

impl Sides {
    /// Whether packets of side `s` are recorded.
    pub fn has(self, s: Side) -> bool {
        matches!(
            (self, s),
            (Sides::Both, _) | (Sides::Overlay, Side::Overlay) | (Sides::Underlay, Side::Underlay)
        )
    }
}

/// What a capture session records besides its filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// The sides.
    #[serde(default)]
    pub sides: Sides,
    /// Bytes kept of each packet (1 to [`MAX_SNAPLEN`]).
    pub snaplen: u32,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            sides: Sides::Both,
            snaplen: MAX_SNAPLEN,
        }
    }
}

/// One side of the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The device: Ethernet frames (L2 VXLAN) or IPv4 packets (the L3 modes).
    Overlay,
    /// The underlay: whole outer IPv4 packets.
    Underlay,
}

/// Whether a packet came in or went out (on its side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// Read from the device, or received from the underlay.
    In,
    /// Written to the device, or sent into the underlay.
    Out,
}

/// What the bytes of a captured packet start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// An Ethernet header.
    Ethernet,
    /// An IP header, IPv4 or IPv6: the outer header of the underlay, or a TUN device's packet
    /// (IPv4, or IPv6 on an IPIP device with an IPv6 address). Written as pcap's raw IP, whose
    /// readers tell the versions apart by the first nibble.
    #[serde(alias = "ipv4")]
    Ip,
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// The worker that saw it.
    pub worker: u16,
    /// When, in nanoseconds since the Unix epoch.
    pub at_ns: u64,
    /// Its side.
    pub side: Side,
    /// Its direction.
    pub dir: Dir,
    /// What its bytes start with.
    pub link: Link,
    /// Its length (more than `data` holds when cut at the snap length).
    pub len: u32,
    /// Dropped by vtepd, and why.
    #[serde(default, with = "reason_opt", skip_serializing_if = "Option::is_none")]
    pub drop: Option<DropReason>,
    /// What a reader should know about the bytes (a TSO super-frame, an outer header made up
    /// from what the socket reported, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The bytes (base64 in JSON), at most the snap length.
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

impl Captured {
    /// The comment a pcapng reader shows: direction, drop reason and note.
    pub fn comment(&self) -> String {
        let dir = match self.dir {
            Dir::In => "in",
            Dir::Out => "out",
        };
        let mut c = format!("{dir}, worker {}", self.worker);
        if let Some(r) = self.drop {
            c.push_str(&format!(", dropped: {}", r.name()));
        }
        if let Some(n) = &self.note {
            c.push_str(", ");
            c.push_str(n);
        }
        c
    }
}

/// Packet bytes as base64 text in JSON (a third of hex's growth).
mod b64 {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// An optional drop reason by its `stats` name.
mod reason_opt {
    use super::*;
    use crate::core::trace::reason_name;
    #[derive(Serialize, Deserialize)]
    struct Named(#[serde(with = "reason_name")] DropReason);
    pub fn serialize<S: Serializer>(r: &Option<DropReason>, s: S) -> Result<S::Ok, S::Error> {
        r.map(Named).serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DropReason>, D::Error> {
        Ok(Option::<Named>::deserialize(d)?.map(|n| n.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_json_with_its_bytes_and_reason() {
        let c = Captured {
            worker: 1,
            at_ns: 1_700_000_000_123_456_789,
            side: Side::Underlay,
            dir: Dir::In,
            link: Link::Ip,
            len: 300,
            drop: Some(DropReason::UnknownPeer),
            note: None,
            data: (0..=255).collect(),
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""drop":"unknown_peer""#), "{json}");
        assert_eq!(serde_json::from_str::<Captured>(&json).unwrap(), c);
        assert_eq!(c.comment(), "in, worker 1, dropped: unknown_peer");
        assert!(Sides::Both.has(Side::Overlay) && !Sides::Underlay.has(Side::Overlay));
    }
}
