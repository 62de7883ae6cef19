//! [`Settings`]: a `plugin_conf` string of `key=value` settings separated
//! by spaces or commas (`modid=64001 cmdid=1, timeout_ms=500`), the form
//! the examples use. Parsing refuses an item that is not `key=value`, a
//! key the plugin does not know and a key given twice; each error names
//! the setting and why, for `spp_init` to log before it refuses.
//!
//! ```
//! use spp_plugin_api::conf::Settings;
//!
//! let s = Settings::parse("addr=127.0.0.1:7001 timeout_ms=500", &["addr=IP:PORT", "timeout_ms=N"])?;
//! let addr: Option<std::net::SocketAddr> = s.parsed("addr", "IP:PORT")?;
//! assert_eq!(s.number("timeout_ms")?, Some(500));
//! assert!(addr.is_some());
//! assert!(Settings::parse("timeout=5", &["timeout_ms=N"]).is_err());
//! # Ok::<(), String>(())
//! ```

use std::str::FromStr;

/// The settings of one `plugin_conf` string.
#[derive(Debug)]
pub struct Settings<'a> {
    items: Vec<(&'a str, &'a str)>,
}

impl<'a> Settings<'a> {
    /// Parses `conf`. `known` lists each accepted key with the form of its
    /// value, `"key=FORM"` (e.g. `"modid=N"`), for the error messages.
    pub fn parse(conf: &'a str, known: &[&str]) -> Result<Self, String> {
        let keys = || known.join(" ");
        let is_known = |key: &str| {
            known
                .iter()
                .any(|k| k.split_once('=').map_or(*k, |(name, _)| name) == key)
        };
        let mut items: Vec<(&'a str, &'a str)> = Vec::new();
        for item in conf
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let Some((key, value)) = item.split_once('=') else {
                return Err(format!(
                    "setting {item:?} is not key=value (known: {})",
                    keys()
                ));
            };
            if !is_known(key) {
                return Err(format!("unknown setting {key:?} (known: {})", keys()));
            }
            if items.iter().any(|(k, _)| *k == key) {
                return Err(format!("{key} is given twice"));
            }
            items.push((key, value));
        }
        Ok(Settings { items })
    }

    /// The value of `key` as given, if it is.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.items.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The value of `key` parsed as a `T`; the error says it is not
    /// `what` (e.g. `"IP:PORT"`).
    pub fn parsed<T: FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, String> {
        self.get(key)
            .map(|value| {
                value
                    .parse()
                    .map_err(|_| format!("{key}={value:?} is not {what}"))
            })
            .transpose()
    }

    /// The value of `key` as a non-negative integer.
    pub fn number(&self, key: &str) -> Result<Option<u64>, String> {
        self.parsed(key, "a non-negative integer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["modid=N", "addr=IP:PORT"];

    #[test]
    fn settings_split_on_spaces_and_commas_and_parse_by_key() {
        let s = Settings::parse(" modid=7,addr=127.0.0.1:1  ", KNOWN).unwrap();
        assert_eq!(s.number("modid"), Ok(Some(7)));
        assert_eq!(s.get("addr"), Some("127.0.0.1:1"));
        assert_eq!(
            Settings::parse("", KNOWN).unwrap().number("modid"),
            Ok(None)
        );
    }

    #[test]
    fn bad_items_unknown_keys_repeats_and_bad_values_are_named() {
        let err = |conf: &str| Settings::parse(conf, KNOWN).unwrap_err();
        assert_eq!(
            err("modid"),
            "setting \"modid\" is not key=value (known: modid=N addr=IP:PORT)"
        );
        assert_eq!(
            err("port=1"),
            "unknown setting \"port\" (known: modid=N addr=IP:PORT)"
        );
        assert_eq!(err("modid=1 modid=2"), "modid is given twice");
        let s = Settings::parse("modid=-1 addr=x", KNOWN).unwrap();
        assert_eq!(
            s.number("modid"),
            Err("modid=\"-1\" is not a non-negative integer".into())
        );
        assert_eq!(
            s.parsed::<std::net::SocketAddr>("addr", "IP:PORT"),
            Err("addr=\"x\" is not IP:PORT".into())
        );
    }
}
