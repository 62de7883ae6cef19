//! Counters: the event loop counts into plain integers ([`Counters`]) and
//! adds them to the shared [`ProxyStats`] once per loop turn with Relaxed
//! atomics, so the hot path never touches a shared cache line per message.

use spp_ipc::layout::ProxyStats;
use std::sync::atomic::Ordering;

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Deltas not yet added to [`ProxyStats`]; field names match it.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(
                #[doc = concat!("Pending delta of `ProxyStats::", stringify!($name), "`.")]
                pub $name: u64,
            )*
        }

        impl Counters {
            /// Adds every pending delta to `shared` and zeroes it.
            pub fn flush(&mut self, shared: &ProxyStats) {
                $(
                    if self.$name != 0 {
                        shared.$name.fetch_add(self.$name, Ordering::Relaxed);
                        self.$name = 0;
                    }
                )*
            }
        }
    };
}

counters!(
    conns_accepted,
    conns_refused,
    requests,
    bytes_in,
    bytes_out,
    responses,
    frame_errors,
    oversized,
    ring_full,
    no_worker,
    worker_died_failed,
    idle_closed,
    slow_closed,
    stale_responses,
    udp_dropped,
    plugin_panics,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_adds_and_resets() {
        let shared = ProxyStats::default();
        shared.requests.store(10, Ordering::Relaxed);
        let mut c = Counters {
            requests: 5,
            udp_dropped: 1,
            ..Counters::default()
        };
        c.flush(&shared);
        c.flush(&shared);
        assert_eq!(shared.requests.load(Ordering::Relaxed), 15);
        assert_eq!(shared.udp_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(c.requests, 0);
    }
}
