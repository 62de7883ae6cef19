//! A test-only plugin for downstream calls: each request names the calls to
//! make (`spp_host.call`, `spp_host.call_many`) and the answer says what
//! they returned, so a test asserts exactly what a client saw.
//!
//! Requests and answers are length-prefixed frames (4-byte big-endian
//! length, then the payload; [`spp_plugin_api::framing`]). A request's
//! payload is one text command:
//!
//! | command                                                | what `process` does |
//! |--------------------------------------------------------|---------------------|
//! | `tcp <addr> <timeout_ms> <cap> <payload>`              | one TCP call sending `<payload>` as a frame; the answer is a frame (the completeness check) of at most `<cap>` bytes, header included |
//! | `udp <addr> <timeout_ms> <cap> <payload>`              | the same over UDP: one datagram out, the first datagram back |
//! | `many <wait_for> <timeout_ms> <cap> <a1,a2,..> <payload>` | one TCP leg per address in one `call_many`, waiting for `<wait_for>` successes (0: all) |
//! | `sleep <ms>`                                           | `spp_host.sleep`, then answers `slept` |
//! | `panic`                                                | panics (the boundary closes the connection) |
//!
//! Answers: a call's outcome is `ok:<payload of the answer frame>` or
//! `err:<CallError variant>` (`err:Timeout`, `err:Refused`, ...); `many`
//! answers `n=<successes>` then one outcome per leg, in order, each on its
//! own line; a `call_many` that failed as a whole answers `err:<variant>`.
//! A command the plugin cannot parse is answered `bad:<why>`.
//!
//! The exception hook answers a request the proxy could not serve with
//! `busy:<reason>` ([`BUSY_DIED`] when its worker died) and keeps the
//! connection.

use spp_plugin_api::framing::{encode_u32_be_prefixed, u32_be_prefixed, U32_PREFIX_LEN};
use spp_plugin_api::{
    export_plugin, AfterException, Call, CallError, Conn, ExceptionReason, Host, Input, Leg,
    OnException, Plugin, Processed, Target,
};
use std::net::SocketAddr;
use std::time::Duration;

/// The largest request or downstream answer payload accepted.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Exception answer: the worker died holding the request.
pub const BUSY_DIED: &[u8] = b"busy:died";
/// Exception answer: any other reason.
pub const BUSY_OTHER: &[u8] = b"busy:other";

/// The caller plugin.
pub struct Caller {
    host: Host,
}

/// One call's parameters.
struct Spec<'a> {
    addr: SocketAddr,
    timeout: Duration,
    cap: usize,
    payload: &'a [u8],
}

/// A parsed command.
enum Command<'a> {
    Tcp(Spec<'a>),
    Udp(Spec<'a>),
    Many {
        wait_for: usize,
        timeout: Duration,
        cap: usize,
        addrs: Vec<SocketAddr>,
        payload: &'a [u8],
    },
    Sleep(Duration),
    Panic,
}

/// The completeness check of every answer: one length-prefixed frame.
fn frame_check(buf: &[u8]) -> Input {
    u32_be_prefixed(buf, MAX_PAYLOAD)
}

/// Splits off the first space-separated word.
fn word(text: &[u8]) -> (&[u8], &[u8]) {
    match text.iter().position(|&b| b == b' ') {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, &[][..]),
    }
}

fn parse<T: std::str::FromStr>(text: &[u8], what: &str) -> Result<T, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{what} {:?}", String::from_utf8_lossy(text)))
}

/// `<timeout_ms> <cap> <rest>`.
fn timeout_and_cap(text: &[u8]) -> Result<(Duration, usize, &[u8]), String> {
    let (timeout, rest) = word(text);
    let (cap, rest) = word(rest);
    let ms: u64 = parse(timeout, "timeout_ms")?;
    Ok((Duration::from_millis(ms), parse(cap, "cap")?, rest))
}

/// `<addr> <timeout_ms> <cap> <payload>`.
fn spec(text: &[u8]) -> Result<Spec<'_>, String> {
    let (addr, rest) = word(text);
    let addr = parse(addr, "addr")?;
    let (timeout, cap, payload) = timeout_and_cap(rest)?;
    Ok(Spec {
        addr,
        timeout,
        cap,
        payload,
    })
}

fn command(body: &[u8]) -> Result<Command<'_>, String> {
    let (verb, rest) = word(body);
    match verb {
        b"tcp" => Ok(Command::Tcp(spec(rest)?)),
        b"udp" => Ok(Command::Udp(spec(rest)?)),
        b"many" => {
            let (wait_for, rest) = word(rest);
            let wait_for = parse(wait_for, "wait_for")?;
            let (timeout, cap, rest) = timeout_and_cap(rest)?;
            let (addrs, payload) = word(rest);
            let addrs = addrs
                .split(|&b| b == b',')
                .map(|a| parse(a, "addr"))
                .collect::<Result<_, _>>()?;
            Ok(Command::Many {
                wait_for,
                timeout,
                cap,
                addrs,
                payload,
            })
        }
        b"sleep" => Ok(Command::Sleep(Duration::from_millis(parse(rest, "ms")?))),
        b"panic" => Ok(Command::Panic),
        _ => Err(format!("verb {:?}", String::from_utf8_lossy(verb))),
    }
}

/// `ok:<payload of the answer frame>` or `err:<variant>`.
fn outcome(result: Result<&[u8], CallError>) -> Vec<u8> {
    match result {
        Ok(answer) => {
            let mut out = b"ok:".to_vec();
            out.extend_from_slice(answer.get(U32_PREFIX_LEN..).unwrap_or(&[]));
            out
        }
        Err(e) => format!("err:{e:?}").into_bytes(),
    }
}

impl Caller {
    /// One call over `call`'s transport into a `cap`-byte buffer.
    fn one(&self, call: &Call<'_>, cap: usize) -> Vec<u8> {
        let mut answer = vec![0u8; cap];
        let result = self
            .host
            .call(call, &mut answer)
            .map(|done| &answer[..done.len]);
        outcome(result)
    }

    fn many(
        &self,
        wait_for: usize,
        timeout: Duration,
        cap: usize,
        addrs: &[SocketAddr],
        request: &[u8],
    ) -> Vec<u8> {
        let check: &dyn Fn(&[u8]) -> Input = &frame_check;
        let mut buffers = vec![vec![0u8; cap]; addrs.len()];
        let mut legs: Vec<Leg<'_>> = addrs
            .iter()
            .zip(buffers.iter_mut())
            .map(|(addr, buf)| {
                let call = Call::tcp(Target::Addr(*addr), request, check).timeout(timeout);
                Leg::new(call, buf)
            })
            .collect();
        match self.host.call_many(&mut legs, wait_for) {
            Ok(n) => {
                let mut out = format!("n={n}").into_bytes();
                for leg in &legs {
                    out.push(b'\n');
                    out.extend_from_slice(&outcome(leg.answer()));
                }
                out
            }
            Err(e) => outcome(Err(e)),
        }
    }

    fn run(&self, command: Command<'_>) -> Vec<u8> {
        match command {
            Command::Tcp(spec) => {
                let request = encode_u32_be_prefixed(spec.payload);
                let call = Call::tcp(Target::Addr(spec.addr), &request, &frame_check)
                    .timeout(spec.timeout);
                self.one(&call, spec.cap)
            }
            Command::Udp(spec) => {
                let request = encode_u32_be_prefixed(spec.payload);
                let call = Call::udp(Target::Addr(spec.addr), &request).timeout(spec.timeout);
                self.one(&call, spec.cap)
            }
            Command::Many {
                wait_for,
                timeout,
                cap,
                addrs,
                payload,
            } => {
                let request = encode_u32_be_prefixed(payload);
                self.many(wait_for, timeout, cap, &addrs, &request)
            }
            Command::Sleep(duration) => match self.host.sleep(duration) {
                Ok(()) => b"slept".to_vec(),
                Err(e) => format!("err:{e:?}").into_bytes(),
            },
            Command::Panic => panic!("asked to panic"),
        }
    }
}

impl Plugin for Caller {
    type ConnState = ();

    fn init(host: Host, _conf: &str) -> Result<Self, i32> {
        Ok(Caller { host })
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        u32_be_prefixed(buf, MAX_PAYLOAD)
    }

    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Processed {
        let body = req.get(U32_PREFIX_LEN..).unwrap_or(&[]);
        let answer = match command(body) {
            Ok(command) => self.run(command),
            Err(why) => format!("bad:{why}").into_bytes(),
        };
        Processed::replied(
            self.host
                .reply(conn.flow(), &encode_u32_be_prefixed(&answer)),
        )
    }
}

impl OnException for Caller {
    fn exception(
        &self,
        conn: Conn<'_>,
        _state: &mut (),
        _req: Option<&[u8]>,
        why: ExceptionReason,
    ) -> AfterException {
        let answer = match why {
            ExceptionReason::WorkerDied => BUSY_DIED,
            _ => BUSY_OTHER,
        };
        match self
            .host
            .reply(conn.flow(), &encode_u32_be_prefixed(answer))
        {
            Ok(()) => AfterException::Keep,
            Err(_) => AfterException::Close,
        }
    }
}

export_plugin!(Caller, hooks: [exception]);
