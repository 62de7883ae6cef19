//! Downstream calls from a micro-thread: the safe view of `spp_host.call`
//! and `spp_host.call_many`.
//!
//! A [`Call`] says where to send which bytes and how to tell a complete
//! answer ([`Call::tcp`] takes the check, with `input`'s contract); the
//! answer lands in a buffer the plugin owns, so a call allocates nothing.
//! [`Host::call`] suspends the calling micro-thread until the answer, a
//! failure or the timeout; [`Host::call_many`] runs several [`Leg`]s in
//! parallel. Outside a micro-thread both answer
//! [`CallError::Unsupported`] at once.
//!
//! ```no_run
//! # use spp_plugin_api::{Call, Host, Input, Target};
//! # fn handler(host: &Host, req: &[u8]) {
//! let line = |buf: &[u8]| match buf.iter().position(|&b| b == b'\n') {
//!     Some(i) => Input::Complete(i + 1),
//!     None => Input::NeedMore,
//! };
//! let mut answer = [0u8; 4096];
//! let call = Call::tcp(Target::Sid { modid: 64001, cmdid: 1 }, req, &line).retry();
//! match host.call(&call, &mut answer) {
//!     Ok(done) => { let _ = &answer[..done.len]; }
//!     Err(e) => eprintln!("downstream failed: {e}"),
//! }
//! # }
//! ```

use crate::abi::*;
use crate::plugin::{Host, Route};
use crate::Input;
use std::ffi::{c_int, c_void};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// An answer's completeness check: `input`'s contract over the bytes
/// received so far.
pub type Check<'a> = &'a dyn Fn(&[u8]) -> Input;

/// Where a call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// This address.
    Addr(SocketAddr),
    /// An instance of the L5 sid, by weighted random choice.
    Sid {
        /// Module id.
        modid: u32,
        /// Command id.
        cmdid: u32,
    },
    /// The instance of the L5 sid that `key` hashes to.
    SidHash {
        /// Module id.
        modid: u32,
        /// Command id.
        cmdid: u32,
        /// The key.
        key: u64,
    },
}

/// Why a call gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No complete answer within the timeout.
    #[error("no complete answer within the timeout")]
    Timeout,
    /// The connection was refused.
    #[error("the connection was refused")]
    Refused,
    /// The peer closed or reset before a complete answer.
    #[error("the peer closed before a complete answer")]
    Closed,
    /// The answer does not fit the buffer.
    #[error("the answer does not fit the buffer")]
    TooLarge,
    /// L5 has no usable instance for the sid (or L5 is off).
    #[error("no route to the sid")]
    NoRoute,
    /// The check called the answer malformed.
    #[error("the answer is malformed")]
    Malformed,
    /// The host refused the call's arguments.
    #[error("bad call arguments")]
    BadArgs,
    /// Another socket error.
    #[error("socket error")]
    Io,
    /// `call_many` returned before this call finished.
    #[error("cancelled: enough other calls succeeded")]
    Cancelled,
    /// Not on a micro-thread, or the host has no calls.
    #[error("calls are not available here")]
    Unsupported,
    /// A code this version does not know.
    #[error("call failed with code {0}")]
    Other(i32),
}

impl CallError {
    /// The error of a non-`SPP_OK` result code.
    pub fn from_raw(code: c_int) -> Self {
        match code {
            SPP_CALL_TIMEOUT => Self::Timeout,
            SPP_CALL_REFUSED => Self::Refused,
            SPP_CALL_CLOSED => Self::Closed,
            SPP_CALL_TOO_LARGE => Self::TooLarge,
            SPP_CALL_NO_ROUTE => Self::NoRoute,
            SPP_CALL_MALFORMED => Self::Malformed,
            SPP_CALL_BAD_ARGS => Self::BadArgs,
            SPP_CALL_IO => Self::Io,
            SPP_CALL_CANCELLED => Self::Cancelled,
            SPP_ERR_UNSUPPORTED => Self::Unsupported,
            other => Self::Other(other),
        }
    }
}

/// A call's success.
#[derive(Clone, Copy, Debug)]
pub struct Answered {
    /// Bytes of the answer at the front of the buffer.
    pub len: usize,
    /// From start to answer.
    pub latency: Duration,
    /// The instance that answered (L5 targets).
    pub route: Option<Route>,
}

/// One call: destination, transport, bytes, check, timeout.
pub struct Call<'a> {
    target: Target,
    transport: u32,
    request: &'a [u8],
    check: Option<Check<'a>>,
    timeout: Duration,
    retry: bool,
}

impl<'a> Call<'a> {
    /// A TCP call (pooled keep-alive connection per destination); `check`
    /// tells when the answer is complete.
    pub fn tcp(target: Target, request: &'a [u8], check: Check<'a>) -> Self {
        Call {
            target,
            transport: SPP_CALL_TCP,
            request,
            check: Some(check),
            timeout: Duration::from_millis(u64::from(SPP_CALL_DEFAULT_TIMEOUT_MS)),
            retry: false,
        }
    }

    /// A UDP call (a fresh socket); the first datagram is the answer unless
    /// [`Call::check`] says otherwise.
    pub fn udp(target: Target, request: &'a [u8]) -> Self {
        Call {
            transport: SPP_CALL_UDP,
            check: None,
            ..Call::tcp(target, request, &|_| Input::NeedMore)
        }
    }

    /// Sets the completeness check (for UDP: which datagram is the answer).
    pub fn check(mut self, check: Check<'a>) -> Self {
        self.check = Some(check);
        self
    }

    /// The whole call's timeout, retry included (default 1 s; rounded up
    /// to whole ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// L5 targets: try once more on another instance when the first fails.
    pub fn retry(mut self) -> Self {
        self.retry = true;
        self
    }

    /// The ABI record of this call, answering into `answer`. It points at
    /// `self.check` (the trampoline's `check_user`): use it while `self`
    /// stays where it is.
    fn raw(&self, answer: &mut [u8]) -> SppCall {
        let (flags, addr, modid, cmdid, hash_key) = match self.target {
            Target::Addr(addr) => (0, SppAddr::from_socket_addr(addr), 0, 0, 0),
            Target::Sid { modid, cmdid } => (SPP_CALL_L5, SppAddr::default(), modid, cmdid, 0),
            Target::SidHash { modid, cmdid, key } => (
                SPP_CALL_L5 | SPP_CALL_L5_HASH,
                SppAddr::default(),
                modid,
                cmdid,
                key,
            ),
        };
        let retry = if self.retry { SPP_CALL_RETRY } else { 0 };
        let ms = self.timeout.as_nanos().div_ceil(1_000_000).max(1);
        SppCall {
            transport: self.transport,
            flags: flags | retry,
            timeout_ms: u32::try_from(ms).unwrap_or(u32::MAX),
            addr,
            modid,
            cmdid,
            hash_key,
            req: self.request.as_ptr(),
            req_len: self.request.len(),
            check: self.check.map(|_| check_trampoline as CallCheckFn),
            check_user: (&self.check as *const Option<Check<'a>>).cast_mut().cast(),
            answer: answer.as_mut_ptr(),
            answer_cap: answer.len(),
            ..SppCall::default()
        }
    }
}

/// One call of [`Host::call_many`] with its answer buffer and, after the
/// call, its outcome.
pub struct Leg<'a> {
    call: Call<'a>,
    answer: &'a mut [u8],
    outcome: Result<Answered, CallError>,
}

impl<'a> Leg<'a> {
    /// `call`, answering into `answer`.
    pub fn new(call: Call<'a>, answer: &'a mut [u8]) -> Self {
        Leg {
            call,
            answer,
            outcome: Err(CallError::Cancelled),
        }
    }

    /// The outcome of the last `call_many`.
    pub fn outcome(&self) -> Result<Answered, CallError> {
        self.outcome
    }

    /// The answer's bytes, or why there are none.
    pub fn answer(&self) -> Result<&[u8], CallError> {
        self.outcome.map(|done| &self.answer[..done.len])
    }
}

/// The outcome an ABI record carries after the host filled it.
fn outcome(raw: &SppCall) -> Result<Answered, CallError> {
    match raw.result {
        SPP_OK => Ok(Answered {
            len: raw.answer_len.min(raw.answer_cap),
            latency: Duration::from_micros(u64::from(raw.latency_us)),
            route: (raw.flags & SPP_CALL_L5 != 0).then_some(Route(raw.route)),
        }),
        code => Err(CallError::from_raw(code)),
    }
}

/// `spp_call_check` over a [`Check`]; a panic in it calls the answer
/// malformed (it never crosses into the host).
unsafe extern "C" fn check_trampoline(user: *mut c_void, buf: *const u8, len: usize) -> c_int {
    // SAFETY: `user` is the `check_user` of a record built by `Call::raw`,
    // pointing at its `Call`'s `check`, which lives for the host call.
    let Some(check) = (unsafe { &*user.cast_const().cast::<Option<Check<'_>>>() }) else {
        return -1;
    };
    let bytes = if buf.is_null() || len == 0 {
        &[][..]
    } else {
        // SAFETY: the host passes `len` readable bytes at `buf`.
        unsafe { std::slice::from_raw_parts(buf, len) }
    };
    match catch_unwind(AssertUnwindSafe(|| check(bytes))) {
        Ok(Input::Complete(n)) => c_int::try_from(n).unwrap_or(c_int::MAX),
        Ok(Input::NeedMore) => 0,
        Ok(Input::Close) | Err(_) => -1,
    }
}

impl Host {
    /// Whether this host has `call` and `call_many`.
    fn has_calls(&self) -> bool {
        let end = std::mem::offset_of!(SppHost, call_many) + std::mem::size_of::<CallManyFn>();
        self.raw().size as usize >= end
    }

    /// Sends `call`'s bytes and waits for one complete answer in `answer`,
    /// suspending only this micro-thread. L5 targets are picked and
    /// reported by the host.
    pub fn call(&self, call: &Call<'_>, answer: &mut [u8]) -> Result<Answered, CallError> {
        if !self.has_calls() {
            return Err(CallError::Unsupported);
        }
        let mut raw = call.raw(answer);
        let host = self.raw();
        // SAFETY: `raw` is a complete record whose pointers (request,
        // answer, check_user) live for this call.
        let code = unsafe { (host.call)(host.ctx, &mut raw) };
        if code == SPP_ERR_UNSUPPORTED {
            return Err(CallError::Unsupported);
        }
        outcome(&raw)
    }

    /// Runs `legs` in parallel and waits until all finished, or until
    /// `wait_for` of them succeeded (0: all); the rest end
    /// [`CallError::Cancelled`]. Returns how many succeeded.
    pub fn call_many(&self, legs: &mut [Leg<'_>], wait_for: usize) -> Result<usize, CallError> {
        if !self.has_calls() {
            return Err(CallError::Unsupported);
        }
        if legs.len() > SPP_CALL_MANY_MAX {
            return Err(CallError::BadArgs);
        }
        let mut raws: Vec<SppCall> = legs
            .iter_mut()
            .map(|leg| leg.call.raw(leg.answer))
            .collect();
        let host = self.raw();
        // SAFETY: every record is complete and its pointers live for this
        // call (the legs are borrowed for it).
        let code = unsafe { (host.call_many)(host.ctx, raws.as_mut_ptr(), raws.len(), wait_for) };
        if code < 0 {
            return Err(CallError::from_raw(code));
        }
        for (leg, raw) in legs.iter_mut().zip(&raws) {
            leg.outcome = outcome(raw);
        }
        Ok(usize::try_from(code).unwrap_or(0))
    }
}
