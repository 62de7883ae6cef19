//! What travels in the rings: request records (proxy → worker) carry a
//! [`RequestMeta`], then the request's note (`meta.conn.note_len` bytes,
//! at most [`SPP_NOTE_MAX`]; `meta.conn.note` is null in the ring), then
//! the request bytes; response records
//! (worker → proxy) carry a [`ResponseMeta`]. Both metas are `#[repr(C)]`
//! and read in place (ring payloads are 8-aligned), so a request reaches
//! the plugin with no copy.

use spp_plugin_api::abi::{SppConnInfo, SPP_NOTE_MAX};

/// Ring record kind of a request.
pub const KIND_REQUEST: u16 = 16;
/// Ring record kind of response bytes for a flow.
pub const KIND_RESPONSE: u16 = 17;
/// Ring record kind: close the flow once its pending bytes are flushed.
pub const KIND_CLOSE: u16 = 18;
/// Ring record kind (worker → proxy): a request for the flow waited in
/// the ring longer than its group's `msg_timeout` and was not processed.
/// A [`ResponseMeta`] followed by the request bytes, or by nothing when
/// they did not fit the response ring. The proxy hands it to the
/// exception hook (`SPP_EXC_TIMEOUT`) or closes the connection.
pub const KIND_EXPIRED: u16 = 19;
/// Ring record kind (proxy → worker): TCP connections this worker served
/// requests of have closed. The payload is up to [`FLOW_CLOSED_BATCH`]
/// flow ids (`u64`, native byte order); the record flags are the worker's
/// [`generation_tag`] (another generation skips it). It has no `seq` and
/// completes nothing: the worker calls its plugin's `spp_flow_closed` for
/// each flow, after every request of the flow that came before it in the
/// ring. A worker without the hook never gets one (the proxy sends only
/// to a worker whose `PairHeader::worker_hooks` has
/// [`crate::layout::HOOK_FLOW_CLOSED`]).
pub const KIND_FLOW_CLOSED: u16 = 20;
/// The most flow ids in one [`KIND_FLOW_CLOSED`] record.
pub const FLOW_CLOSED_BATCH: usize = 64;
/// Bytes of one flow id in a [`KIND_FLOW_CLOSED`] record.
pub const FLOW_ID_SIZE: usize = 8;

/// In front of every request record's bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestMeta {
    /// The connection the request came from, handed to `spp_process` as is.
    pub conn: SppConnInfo,
    /// Per-pair request sequence number (see `PairHeader::pushed_seq`).
    pub seq: u64,
    /// When the proxy queued it, CLOCK_MONOTONIC nanoseconds.
    pub enqueued_ns: u64,
}

/// In front of every response record's bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponseMeta {
    /// The flow the bytes go to.
    pub flow: u64,
}

/// Bytes of a [`RequestMeta`].
pub const REQUEST_META_SIZE: usize = std::mem::size_of::<RequestMeta>();
/// Bytes of a [`ResponseMeta`].
pub const RESPONSE_META_SIZE: usize = std::mem::size_of::<ResponseMeta>();

/// A request record's payload, viewed in place.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'r> {
    /// Its meta (`conn.note` is null here: point it at `note` before a
    /// plugin sees it).
    pub meta: &'r RequestMeta,
    /// The request's note (empty without one).
    pub note: &'r [u8],
    /// The request bytes.
    pub bytes: &'r [u8],
}

/// Views a request record's payload as its meta, note and request bytes,
/// in place. `None` if it is too short or misaligned, or its note length
/// is past [`SPP_NOTE_MAX`] or the payload.
pub fn split_request(payload: &[u8]) -> Option<RequestParts<'_>> {
    let (meta, rest) = split::<RequestMeta>(payload)?;
    let note_len = meta.conn.note_len as usize;
    if note_len > SPP_NOTE_MAX || note_len > rest.len() {
        return None;
    }
    let (note, bytes) = rest.split_at(note_len);
    Some(RequestParts { meta, note, bytes })
}

/// Views a response record's payload as its meta and bytes, in place.
pub fn split_response(payload: &[u8]) -> Option<(&ResponseMeta, &[u8])> {
    split::<ResponseMeta>(payload)
}

fn split<T>(payload: &[u8]) -> Option<(&T, &[u8])> {
    let size = std::mem::size_of::<T>();
    if payload.len() < size
        || !(payload.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return None;
    }
    // SAFETY: long enough and aligned (checked); `T` is a plain-old-data
    // `#[repr(C)]` struct for which every bit pattern is valid.
    let meta = unsafe { &*payload.as_ptr().cast::<T>() };
    Some((meta, &payload[size..]))
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::RequestMeta {}
    impl Sealed for super::ResponseMeta {}
}

/// A record meta: `#[repr(C)]`, no padding, every bit pattern valid.
/// Sealed: only [`RequestMeta`] and [`ResponseMeta`].
pub trait Meta: sealed::Sealed + Copy {}
impl Meta for RequestMeta {}
impl Meta for ResponseMeta {}

// No padding anywhere: the sums of the field sizes equal the struct sizes.
const _: () = assert!(REQUEST_META_SIZE == std::mem::size_of::<SppConnInfo>() + 16);
const _: () = assert!(std::mem::size_of::<SppConnInfo>() == 24 + 2 * 24 + 8 + 4 + 4);
const _: () = assert!(RESPONSE_META_SIZE == 8);

/// The bytes of a record meta, for pushing into a ring.
pub fn meta_bytes<T: Meta>(meta: &T) -> &[u8] {
    // SAFETY: `Meta` types are `#[repr(C)]` with no padding (asserted
    // above), so every byte of the object is initialised.
    unsafe { std::slice::from_raw_parts((meta as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// The largest request a request ring of `capacity` bytes can carry, with
/// a note of any allowed length.
pub const fn max_request_len(capacity: usize) -> usize {
    crate::ring::max_payload_for(capacity).saturating_sub(REQUEST_META_SIZE + SPP_NOTE_MAX)
}

/// The `RecordHeader::flags` a proxy stamps on a request it pushes for a
/// worker of `generation`; a worker skips requests stamped for another
/// generation (pushed for its dead predecessor and already failed).
pub fn generation_tag(generation: u64) -> u16 {
    generation as u16
}

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;
/// Nanoseconds per millisecond.
pub const NS_PER_MS: u64 = 1_000_000;
/// Nanoseconds per microsecond.
pub const NS_PER_US: u64 = 1_000;

/// CLOCK_MONOTONIC now, in nanoseconds (comparable across processes).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * NS_PER_SEC + ts.tv_nsec as u64
}
