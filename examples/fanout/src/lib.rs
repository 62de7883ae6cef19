//! # The fan-out example plugin (`libspp_fanout.so`)
//!
//! Each request calls two services at once and answers with both answers
//! merged: SPP's task lists, on micro-threads. `process` builds two
//! [`Leg`]s and hands them to [`Host::call_many`], which suspends only
//! this request until both legs finished (or `wait_for` of them
//! succeeded); the worker serves other requests meanwhile. Run it in a
//! group with `mode = "microthread"`.
//!
//! ## Protocol
//! Clients and both backends speak the echo framing (a 4-byte big-endian
//! payload length, then the payload). The request frame goes to both legs
//! as it came; the client gets one frame whose payload is
//!
//! ```text
//! a=<payload of a's answer>;b=<payload of b's answer>
//! ```
//!
//! A leg that gave no answer shows why instead, as `err:<variant>` of
//! [`CallError`] (see [`error_name`]): `a=hello;b=err:refused` is a partial
//! failure, answered as such rather than failing the whole request. With
//! `wait_for=1` the answer leaves as soon as one leg succeeded, and the
//! other shows `err:cancelled` if it was still running. In a plain group
//! calls are unsupported: `a=err:unsupported;b=err:unsupported` at once.
//!
//! ## `plugin_conf`
//! `a=64001:1 b=64002:1 timeout_ms=500 wait_for=0` (see [`conf`]): each
//! leg is an L5 sid `MODID:CMDID` (the host picks an instance, reports the
//! outcome and retries once on another instance) or a fixed `IP:PORT`.
//!
//! ## What a request costs
//! One micro-thread (the group's `stack_size` plus a guard page, and the
//! request's bytes; see `worker/src/microthread/mod.rs`), plus one heap
//! buffer of `2 × (4 + max_payload)` bytes for the two answers and the
//! merged reply, both freed when the request is answered.
//!
//! ## Metrics (`spp stat`, Prometheus)
//! Counters `fanout_full` (both legs answered), `fanout_partial` (one
//! did) and `fanout_none` (neither did).

pub mod conf;

use crate::conf::{Conf, LEGS};
use spp_plugin_api::framing::{u32_be_prefixed, U32_PREFIX_LEN};
use spp_plugin_api::{
    export_plugin, Call, CallError, Conn, Host, Input, Leg, Level, Plugin, Processed, Target,
};

/// The fan-out plugin.
pub struct Fanout {
    host: Host,
    conf: Conf,
}

/// The name a failed leg shows after `err:`.
pub fn error_name(err: CallError) -> String {
    let name = match err {
        CallError::Timeout => "timeout",
        CallError::Refused => "refused",
        CallError::Closed => "closed",
        CallError::TooLarge => "too-large",
        CallError::NoRoute => "no-route",
        CallError::Malformed => "malformed",
        CallError::BadArgs => "bad-args",
        CallError::Io => "io",
        CallError::Cancelled => "cancelled",
        CallError::Unsupported => "unsupported",
        CallError::Other(code) => return format!("code{code}"),
    };
    name.to_string()
}

/// The reply frame: `a=<payload>;b=<payload>`, a failed leg as
/// `err:<variant>`. `answers` are the legs' answer frames, [`LEGS`] order.
pub fn merge(answers: [Result<&[u8], CallError>; 2]) -> Vec<u8> {
    let mut frame = vec![0; U32_PREFIX_LEN];
    for (i, (name, answer)) in LEGS.iter().zip(answers).enumerate() {
        if i > 0 {
            frame.push(b';');
        }
        frame.extend_from_slice(name.as_bytes());
        frame.push(b'=');
        match answer {
            Ok(answer) => frame.extend_from_slice(answer.get(U32_PREFIX_LEN..).unwrap_or_default()),
            Err(err) => {
                frame.extend_from_slice(b"err:");
                frame.extend_from_slice(error_name(err).as_bytes());
            }
        }
    }
    let payload = u32::try_from(frame.len() - U32_PREFIX_LEN).unwrap_or(u32::MAX);
    frame[..U32_PREFIX_LEN].copy_from_slice(&payload.to_be_bytes());
    frame
}

impl Fanout {
    /// Calls both legs with `req`; the merged reply frame.
    fn fan_out(&self, legs: [Target; 2], req: &[u8]) -> Vec<u8> {
        let max_payload = self.conf.max_payload;
        let check = move |buf: &[u8]| u32_be_prefixed(buf, max_payload);
        let call = |target: Target| {
            let call = Call::tcp(target, req, &check).timeout(self.conf.timeout);
            match target {
                Target::Addr(_) => call,
                _ => call.retry(),
            }
        };
        let cap = U32_PREFIX_LEN + max_payload;
        let mut buffer = vec![0; 2 * cap];
        let (buf_a, buf_b) = buffer.split_at_mut(cap);
        let mut running = [
            Leg::new(call(legs[0]), buf_a),
            Leg::new(call(legs[1]), buf_b),
        ];
        let frame = match self.host.call_many(&mut running, self.conf.wait_for) {
            Ok(succeeded) => {
                self.count(match succeeded {
                    0 => "fanout_none",
                    1 => "fanout_partial",
                    _ => "fanout_full",
                });
                merge([running[0].answer(), running[1].answer()])
            }
            Err(err) => {
                self.count("fanout_none");
                merge([Err(err), Err(err)])
            }
        };
        for (name, leg) in LEGS.iter().zip(&running) {
            if let Err(err) = leg.answer() {
                self.host
                    .log(Level::Debug, &format!("fanout: leg {name} failed: {err}"));
            }
        }
        frame
    }

    fn count(&self, name: &str) {
        // A refused metric (no free slot) must not fail the request.
        let _ = self.host.count(name, 1);
    }
}

impl Plugin for Fanout {
    type ConnState = ();

    fn init(host: Host, conf: &str) -> Result<Self, i32> {
        let conf = match conf::parse(conf) {
            Ok(c) if c.legs.is_none() && !host.is_proxy() => {
                Err("a and b are required in a worker".to_string())
            }
            other => other,
        };
        match conf {
            Ok(conf) => Ok(Fanout { host, conf }),
            Err(why) => {
                host.log(Level::Error, &format!("fanout: bad plugin_conf: {why}"));
                Err(1)
            }
        }
    }

    fn input(&self, _conn: Conn<'_>, _state: &mut (), buf: &[u8]) -> Input {
        u32_be_prefixed(buf, self.conf.max_payload)
    }

    fn process(&self, conn: Conn<'_>, req: &[u8]) -> Processed {
        let frame = match self.conf.legs {
            Some(legs) => self.fan_out(legs, req),
            None => merge([Err(CallError::BadArgs), Err(CallError::BadArgs)]),
        };
        Processed::replied(self.host.reply(conn.flow(), &frame))
    }
}

export_plugin!(Fanout);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_failures_are_merged_into_one_frame() {
        let frame = merge([Ok(b"\0\0\0\x02hi"), Err(CallError::Refused)]);
        assert_eq!(&frame[4..], b"a=hi;b=err:refused");
        assert_eq!(frame[..4], 18u32.to_be_bytes());
        let frame = merge([Err(CallError::Other(-99)), Ok(b"\0\0\0\0")]);
        assert_eq!(&frame[4..], b"a=err:code-99;b=");
    }
}
