//! The daemon's log: `tracing` events to stderr (journald takes them from there under
//! systemd), as text or as one JSON object per line (`--log-format`), filtered by `RUST_LOG`
//! (default `info`). A `RUST_LOG` that does not parse is a usage error, not a silent default.

use crate::config::LogFormat;
use crate::error::Failure;
use std::ffi::OsStr;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// The level when `RUST_LOG` is unset or empty.
const DEFAULT_FILTER: &str = "info";

/// The filter `RUST_LOG` (`value`) asks for: `info` when unset or blank, a usage error (one
/// line, naming the variable) when it does not parse.
pub fn filter(value: Option<&OsStr>) -> Result<EnvFilter, Failure> {
    let text = match value {
        None => DEFAULT_FILTER,
        Some(v) => v
            .to_str()
            .ok_or_else(|| Failure::Usage(format!("RUST_LOG={v:?} is not valid UTF-8")))?,
    };
    let text = if text.trim().is_empty() {
        DEFAULT_FILTER
    } else {
        text
    };
    EnvFilter::builder().parse(text).map_err(|e| {
        let why = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        Failure::Usage(format!(
            "RUST_LOG={text:?} is not a valid log filter ({why}); \
             expected a level (error, warn, info, debug, trace) or directives like vtepd=debug"
        ))
    })
}

/// Installs the daemon's log writer: `format` lines on stderr, filtered by `RUST_LOG`. A
/// subscriber installed already (a test) is kept.
pub fn init(format: LogFormat) -> Result<(), Failure> {
    let filter = filter(std::env::var_os("RUST_LOG").as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is installed already (tests): that one stays.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn unset_or_blank_is_info() {
        for v in [None, Some(OsStr::new("")), Some(OsStr::new("  "))] {
            assert_eq!(filter(v).unwrap().to_string(), "info", "{v:?}");
        }
    }

    #[test]
    fn valid_filters_pass() {
        for v in ["debug", "vtepd=trace", "warn,vtepd::daemon=debug", "off"] {
            assert!(filter(Some(OsStr::new(v))).is_ok(), "{v}");
        }
    }

    #[test]
    fn invalid_filters_are_one_line_usage_errors() {
        for v in ["vtepd=loud", "=", "info,[{", "a=b=c"] {
            let e = filter(Some(OsStr::new(v))).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{v}");
            let m = e.message();
            assert!(m.starts_with("RUST_LOG=") && m.contains(v), "{v}: {m}");
            assert!(!m.contains('\n'), "{v}: {m:?}");
        }
        let bad = OsString::from_vec(vec![b'i', 0xff]);
        let e = filter(Some(&bad)).unwrap_err();
        assert!(e.message().contains("not valid UTF-8"), "{}", e.message());
    }
}
