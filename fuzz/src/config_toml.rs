//! `config_toml`: `DaemonConfig::from_toml` on arbitrary text (the input, UTF-8-lossy).
//!
//! Checked: no panic; an accepted configuration validates again, and what `config show` writes
//! of it (`to_toml`) reads back into the same configuration, from which a reload has nothing to
//! do; every error message is one non-empty line (the daemon prints it as `vtepd: <message>`,
//! "one line on stderr").

use vtepd::config::DaemonConfig;

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
            let shown = cfg
                .to_toml()
                .expect("an accepted configuration writes as TOML");
            assert_eq!(
                DaemonConfig::from_toml(&shown).as_ref(),
                Ok(&cfg),
                "`config show` reads back: {shown}"
            );
            assert_eq!(
                vtepd::config::reload::plan(&cfg, &cfg),
                Ok(Vec::new()),
                "a reload of the same configuration changes something"
            );
        }
        Err(e) => {
            // What the daemon prints (`vtepd: <message>`); the message may quote a value
            // holding a line break (`corpus/config_toml/regress-multiline-error`).
            let m = e.to_string();
            assert!(!m.trim().is_empty(), "an empty error message");
            assert!(
                !m.contains(['\n', '\r']),
                "the error message is not one line: {m:?}"
            );
        }
    }
}
