//! `config_toml`: `DaemonConfig::from_toml` on arbitrary text (the input, UTF-8-lossy).
//!
//! Checked: no panic; an accepted configuration validates again; every error message is one
//! non-empty line (the daemon prints it as `vtepd: <message>`, "one line on stderr").

use vtepd::config::DaemonConfig;

/// Whether a string value anywhere in `v` holds a line break.
fn has_line_break(v: &toml::Value) -> bool {
    match v {
        toml::Value::String(s) => s.contains(['\n', '\r']),
        toml::Value::Array(a) => a.iter().any(has_line_break),
        toml::Value::Table(t) => t
            .iter()
            .any(|(k, v)| k.contains(['\n', '\r']) || has_line_break(v)),
        _ => false,
    }
}

/// The target's body.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match DaemonConfig::from_toml(&text) {
        Ok(cfg) => {
            assert_eq!(
                cfg.validate(),
                Ok(()),
                "an accepted configuration validates again"
            );
            assert!(!cfg.networks.is_empty());
        }
        Err(e) => {
            let m = &e.0;
            assert!(!m.trim().is_empty(), "an empty error message");
            // KNOWN ISSUE (found with this target, reported, not fixed here: src/config.rs and
            // src/core/route.rs): the parse helpers quote the offending value as it is
            // (`'{s}' is not an IPv4 address`), so a string value holding a line break makes
            // a message of several lines. Tolerated, and only for inputs with such a string
            // value (parsed with toml, as from_toml does), so that fuzzing goes on;
            // `corpus/config_toml/regress-multiline-error` is the input. Drop the tolerance
            // once the helpers escape what they quote.
            let echoed = toml::from_str::<toml::Table>(&text)
                .is_ok_and(|t| has_line_break(&toml::Value::Table(t)));
            assert!(
                !m.contains(['\n', '\r']) || echoed,
                "the error message is not one line: {m:?}"
            );
        }
    }
}
