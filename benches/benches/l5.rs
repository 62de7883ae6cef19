//! What an L5 lookup costs a worker: `RouteTable::pick` (weighted random,
//! 8 nodes, with the seqlock read, the skip check against the node's slot
//! counters and the pick counter), `pick_hash` (weighted rendezvous over
//! the 8 nodes) and `report` (three atomic adds on the node's slot), in a
//! memfd route table holding 32 sids of 8 nodes, against the baseline of a
//! plain weighted pick by binary search over a `Vec` of cumulative weights
//! in process memory. Each iteration does [`PICKS`] lookups with a fresh
//! xorshift random each. Run: `cargo bench -p spp-benches --bench l5`.

mod common;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use spp_ipc::l5::table::{NodeView, RouteTable, SidView};
use spp_ipc::l5::{Instance, Sid};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Lookups per iteration.
const PICKS: u64 = 1024;
/// Sids in the table.
const SIDS: u32 = 32;
/// Nodes per sid.
const NODES: u32 = 8;
/// The sid the benchmarks look up (in the middle of the table).
const SID: Sid = Sid {
    modid: 64_016,
    cmdid: 1,
};

/// xorshift64*: what a worker's per-thread RNG costs.
struct XorShift(u64);

impl XorShift {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn addr(sid: u32, node: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, sid as u8, node as u8, 1)),
        9000 + node as u16,
    )
}

/// Node `n` weighs 100 × (n + 1).
fn weight(node: u32) -> u32 {
    100 * (node + 1)
}

/// A table with SIDS sids (modid 64001..) of NODES nodes each.
fn table() -> RouteTable {
    let mut table = RouteTable::create().expect("route table");
    let mut views = Vec::new();
    for s in 0..SIDS {
        let sid = Sid {
            modid: 64_001 + s,
            cmdid: 1,
        };
        let mut nodes = Vec::new();
        for n in 0..NODES {
            let instance = Instance {
                sid,
                addr: addr(s, n),
                weight: weight(n),
            };
            let slot = table.slot_for(&instance).expect("slot");
            nodes.push(NodeView {
                instance,
                weight: weight(n),
                dead: false,
                slot,
            });
        }
        views.push(SidView {
            sid,
            nodes,
            probe_budget: 0,
        });
    }
    table.publish(&views).expect("publish");
    table
}

/// The baseline: cumulative weights and addresses in process memory.
struct PlainTable {
    cumulative: Vec<u64>,
    addrs: Vec<SocketAddr>,
}

impl PlainTable {
    fn new() -> Self {
        let mut sum = 0;
        let cumulative = (0..NODES)
            .map(|n| {
                sum += u64::from(weight(n));
                sum
            })
            .collect();
        let addrs = (0..NODES).map(|n| addr(15, n)).collect();
        PlainTable { cumulative, addrs }
    }

    #[inline]
    fn pick(&self, random: u64) -> SocketAddr {
        let total = self.cumulative[self.cumulative.len() - 1];
        let at = ((u128::from(random) * u128::from(total)) >> 64) as u64;
        let i = self.cumulative.partition_point(|&c| c <= at);
        self.addrs[i.min(self.addrs.len() - 1)]
    }
}

fn l5(c: &mut Criterion) {
    let mut group = c.benchmark_group("l5");
    group.throughput(Throughput::Elements(PICKS));

    let plain = PlainTable::new();
    let mut rng = XorShift(0x5eed);
    group.bench_function("baseline_vec_weighted_pick_8", |b| {
        b.iter(|| {
            for _ in 0..PICKS {
                black_box(plain.pick(rng.next()));
            }
        })
    });

    let table = table();
    group.bench_function("pick_weighted_8", |b| {
        b.iter(|| {
            for _ in 0..PICKS {
                let _ = black_box(table.pick(black_box(SID), rng.next()));
            }
        })
    });
    group.bench_function("pick_hash_8", |b| {
        b.iter(|| {
            for _ in 0..PICKS {
                let _ = black_box(table.pick_hash(black_box(SID), rng.next()));
            }
        })
    });
    let route = table.pick(SID, 1).expect("route");
    group.bench_function("report", |b| {
        b.iter(|| {
            for i in 0..PICKS {
                table.report(black_box(&route), 0, black_box(100 + i));
            }
        })
    });
    group.bench_function("pick_then_report", |b| {
        b.iter(|| {
            for _ in 0..PICKS {
                if let Ok(route) = table.pick(black_box(SID), rng.next()) {
                    table.report(&route, 0, 100);
                }
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = l5
}
criterion_main!(benches);
