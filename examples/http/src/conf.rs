//! The plugin's settings, read from `plugin_conf`: `key=value` items
//! separated by commas (a value may hold spaces, not commas).
//!
//! * `body` — the answer's body (default `hello world`);
//! * `max_header` — bytes of request line plus headers at most (default
//!   8 KiB); past it the answer is 431;
//! * `max_body` — request body bytes at most (default 1 MiB); past it the
//!   answer is 413.
//!
//! The proxy's `max_request_size` must exceed `max_header + max_body`, or
//! the proxy closes a large request's connection before it can be framed.

/// Default answer body (nginx's `return 200 "hello world"`).
pub const DEFAULT_BODY: &str = "hello world";
/// Default limit of the request line plus headers, bytes.
pub const DEFAULT_MAX_HEADER: usize = 8 << 10;
/// Default limit of a request body, bytes.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conf {
    /// The body of every 200 answer.
    pub body: String,
    /// The request size limits.
    pub limits: Limits,
}

/// Request size limits, shared by the proxy's framing and the worker's
/// answer so both sides reach the same verdict on the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus headers, bytes.
    pub max_header: usize,
    /// Request body, bytes.
    pub max_body: usize,
}

impl Default for Conf {
    fn default() -> Self {
        Conf {
            body: DEFAULT_BODY.into(),
            limits: Limits {
                max_header: DEFAULT_MAX_HEADER,
                max_body: DEFAULT_MAX_BODY,
            },
        }
    }
}

impl Conf {
    /// Parses `plugin_conf`; an error names the item and the reason.
    pub fn parse(conf: &str) -> Result<Conf, String> {
        let mut out = Conf::default();
        for item in conf.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let number = |v: &str| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("{item:?}: not a number of bytes"))
            };
            match item.split_once('=') {
                Some(("body", v)) => out.body = v.to_string(),
                Some(("max_header", v)) => out.limits.max_header = number(v)?,
                Some(("max_body", v)) => out.limits.max_body = number(v)?,
                _ => {
                    return Err(format!(
                        "unknown setting {item:?} (known: body=TEXT, max_header=N, max_body=N)"
                    ))
                }
            }
        }
        if out.limits.max_header == 0 {
            return Err("max_header must be at least 1".into());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_and_checked() {
        assert_eq!(Conf::parse(""), Ok(Conf::default()));
        let c = Conf::parse("body=hi there, max_body=10,max_header=100").unwrap();
        assert_eq!(c.body, "hi there");
        assert_eq!(c.limits.max_body, 10);
        assert_eq!(c.limits.max_header, 100);
        assert!(Conf::parse("speed=fast").unwrap_err().contains("speed"));
        assert!(Conf::parse("max_body=lots")
            .unwrap_err()
            .contains("max_body"));
        assert!(Conf::parse("max_header=0").is_err());
    }
}
