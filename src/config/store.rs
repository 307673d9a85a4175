//! Where a store-driven fabric keeps its state (`--store etcd=URL[,URL]`, `--store-prefix`,
//! `--store-ttl`). Defined once here: the `vtepd run` flags (flattened into the command line),
//! their parsers, and the file keys of the same names (`store`, `store_prefix`, `store_ttl`;
//! flattened into the file's top level). What the daemon does with them is `daemon::store`.
//!
//! Every field is `None` when not given, so the defaults live in one place ([`StoreOptions::
//! settings`]) and a prefix or TTL given without a store can be refused.

use serde::{Deserialize, Deserializer, Serialize};
use std::time::Duration;

/// The key prefix when `--store-prefix` is not given.
pub const DEFAULT_PREFIX: &str = "/vtepd";
/// The registration lease's TTL when `--store-ttl` is not given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// The shortest lease etcd grants (shorter ones are raised to about this by etcd itself).
pub const MIN_TTL_SECS: u64 = 2;
/// The longest lease TTL accepted (a day: a dead host would linger longer than anyone waits).
pub const MAX_TTL_SECS: u64 = 86_400;

/// The store options of a daemon (`None`: not given).
#[derive(Debug, Clone, PartialEq, Eq, Default, clap::Args, Deserialize, Serialize)]
#[group(id = "store_opts", multiple = true)]
pub struct StoreOptions {
    /// Join a store-driven fabric through etcd: register this host in every network (under a
    /// lease) and keep the flood lists (and, in the L3 modes, routes and neighbours) equal to
    /// the other members the store holds; comma-separated etcd endpoints, each http://HOST:PORT
    /// [default: no store; flood-and-learn with the static configuration].
    #[arg(long, value_name = "etcd=URL[,URL]", value_parser = parse_store)]
    #[serde(
        default,
        deserialize_with = "de_store",
        skip_serializing_if = "Option::is_none"
    )]
    pub store: Option<StoreEndpoints>,

    /// The key prefix of this fabric in the store: daemons with the same prefix form one fabric
    /// (see README.md, "Store") [default: /vtepd].
    #[arg(long, value_name = "/PATH", value_parser = parse_prefix)]
    #[serde(
        default,
        deserialize_with = "de_prefix",
        skip_serializing_if = "Option::is_none"
    )]
    pub store_prefix: Option<String>,

    /// Seconds this host's registration outlives it in the store (its lease TTL, kept alive
    /// while the daemon runs): how long the others keep flooding to a host that died
    /// [default: 30].
    #[arg(long, value_name = "SECS", value_parser = parse_ttl)]
    #[serde(
        default,
        deserialize_with = "de_ttl",
        skip_serializing_if = "Option::is_none"
    )]
    pub store_ttl: Option<u64>,
}

/// The etcd endpoints of `--store`, as given (each checked to be `http://HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct StoreEndpoints(pub Vec<String>);

impl From<StoreEndpoints> for String {
    fn from(e: StoreEndpoints) -> String {
        format!("etcd={}", e.0.join(","))
    }
}

/// The store settings a daemon runs with (defaults applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// The etcd endpoints.
    pub endpoints: Vec<String>,
    /// The key prefix, without a trailing `/`.
    pub prefix: String,
    /// The registration lease's TTL.
    pub ttl: Duration,
}

impl StoreOptions {
    /// The settings with defaults applied (`Ok(None)`: no store); a prefix or TTL without a
    /// store is refused, with the flag's name.
    pub fn settings(&self) -> Result<Option<StoreSettings>, String> {
        let Some(endpoints) = &self.store else {
            return match (&self.store_prefix, self.store_ttl) {
                (Some(_), _) => Err("--store-prefix (store_prefix) needs --store".into()),
                (_, Some(_)) => Err("--store-ttl (store_ttl) needs --store".into()),
                _ => Ok(None),
            };
        };
        Ok(Some(StoreSettings {
            endpoints: endpoints.0.clone(),
            prefix: self
                .store_prefix
                .clone()
                .unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
            ttl: self.store_ttl.map_or(DEFAULT_TTL, Duration::from_secs),
        }))
    }
}

/// Parses `--store`: `etcd=` then comma-separated `http://HOST:PORT` endpoints.
pub fn parse_store(s: &str) -> Result<StoreEndpoints, String> {
    let Some(list) = s.trim().strip_prefix("etcd=") else {
        return Err(format!(
            "store '{s}' is not etcd=URL[,URL] (like etcd=http://192.0.2.10:2379): etcd is the \
             only store"
        ));
    };
    let endpoints: Vec<String> = list
        .split(',')
        .map(|u| parse_endpoint(u.trim()))
        .collect::<Result<_, _>>()?;
    Ok(StoreEndpoints(endpoints))
}

/// One etcd endpoint: `http://HOST:PORT` (an IP address or a host name, an explicit port).
fn parse_endpoint(u: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("store endpoint '{u}' {why}"));
    if u.is_empty() {
        return bad("is empty (etcd=URL[,URL])");
    }
    if u.starts_with("https://") {
        return bad(
            "uses https: TLS to etcd is not supported yet (use http:// on a trusted network)",
        );
    }
    let Ok(uri) = u.parse::<http::Uri>() else {
        return bad("is not a URL like http://192.0.2.10:2379");
    };
    if uri.scheme_str() != Some("http") {
        return bad("is not an http:// URL like http://192.0.2.10:2379");
    }
    let Some(auth) = uri.authority() else {
        return bad("has no host");
    };
    if auth.host().is_empty() || auth.as_str().contains('@') {
        return bad("needs a host and no user name (http://HOST:PORT)");
    }
    if auth.port_u16().is_none_or(|p| p == 0) {
        return bad("needs a port other than 0 (etcd's client port is usually 2379)");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return bad("has a path: give only http://HOST:PORT");
    }
    Ok(format!("http://{auth}"))
}

/// Parses `--store-prefix`: `/` then segments of letters, digits, `-`, `_` and `.`, separated
/// by `/`, no trailing `/` (the keys are built under it).
pub fn parse_prefix(s: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("store prefix '{s}' {why}"));
    let Some(rest) = s.strip_prefix('/') else {
        return bad("must start with / (like /vtepd/prod)");
    };
    if s.len() > 256 {
        return bad("is longer than 256 bytes");
    }
    for seg in rest.split('/') {
        if seg.is_empty() {
            return bad("has an empty segment (// or a trailing /)");
        }
        if seg == "." || seg == ".." {
            return bad("has a . or .. segment");
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return bad("may hold only letters, digits, -, _, . and /");
        }
    }
    Ok(s.to_owned())
}

/// Parses `--store-ttl`: whole seconds in `MIN_TTL_SECS..=MAX_TTL_SECS`.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let v = s
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("store TTL '{s}' is not a number of seconds"))?;
    ttl_from(v)
}

fn ttl_from(v: u64) -> Result<u64, String> {
    if (MIN_TTL_SECS..=MAX_TTL_SECS).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "store TTL {v} is not in {MIN_TTL_SECS}..={MAX_TTL_SECS} seconds"
        ))
    }
}

pub(crate) fn de_store<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<StoreEndpoints>, D::Error> {
    let s = String::deserialize(d)?;
    parse_store(&s).map(Some).map_err(serde::de::Error::custom)
}

pub(crate) fn de_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    parse_prefix(&s).map(Some).map_err(serde::de::Error::custom)
}

pub(crate) fn de_ttl<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = u64::deserialize(d)?;
    ttl_from(v).map(Some).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_endpoints_are_checked() {
        assert_eq!(
            parse_store("etcd=http://192.0.2.10:2379, http://etcd-2:2379/").unwrap(),
            StoreEndpoints(vec![
                "http://192.0.2.10:2379".into(),
                "http://etcd-2:2379".into()
            ])
        );
        for (bad, why) in [
            ("http://192.0.2.10:2379", "is not etcd="),
            ("consul=http://192.0.2.10:8500", "is not etcd="),
            ("etcd=", "is empty"),
            ("etcd=http://a:1,", "is empty"),
            ("etcd=https://192.0.2.10:2379", "TLS"),
            ("etcd=192.0.2.10:2379", "is not an http:// URL"),
            ("etcd=ftp://192.0.2.10:2379", "is not an http:// URL"),
            ("etcd=http://192.0.2.10", "needs a port"),
            ("etcd=http://192.0.2.10:0", "needs a port"),
            ("etcd=http://u@192.0.2.10:2379", "no user name"),
            ("etcd=http://192.0.2.10:2379/v3", "has a path"),
            ("etcd=http://192.0.2.10:99999", "needs a port"),
        ] {
            let e = parse_store(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn prefixes_and_ttls_are_checked() {
        assert_eq!(parse_prefix("/vtepd/prod-1").unwrap(), "/vtepd/prod-1");
        for bad in [
            "vtepd", "/", "/a/", "/a//b", "/a/../b", "/a b", "/a\nb", "/ä",
        ] {
            assert!(parse_prefix(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_ttl("3"), Ok(3));
        for bad in ["0", "1", "86401", "-1", "x", "3s"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_apply_and_options_need_a_store() {
        assert_eq!(StoreOptions::default().settings(), Ok(None));
        let mut o = StoreOptions {
            store_ttl: Some(5),
            ..StoreOptions::default()
        };
        assert!(o.settings().unwrap_err().contains("--store-ttl"));
        o.store = Some(parse_store("etcd=http://192.0.2.10:2379").unwrap());
        let s = o.settings().unwrap().unwrap();
        assert_eq!(s.prefix, DEFAULT_PREFIX);
        assert_eq!(s.ttl, Duration::from_secs(5));
        // The file form reads back (what `config show` writes).
        let text = toml::to_string(&o).unwrap();
        assert_eq!(toml::from_str::<StoreOptions>(&text).unwrap(), o);
    }
}
