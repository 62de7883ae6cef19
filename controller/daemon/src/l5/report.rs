//! What the controller says about L5: the `l5` section of `spp status`
//! ([`L5Status`]) and the answer to `{"cmd":"l5"}` for `spp l5 list` and
//! `spp l5 get` ([`L5Report`]: the published route table, per node its
//! weights, health and last period's outcomes), with their tables for
//! humans. The JSON names are an interface (scripts, tests).

use serde::{Deserialize, Serialize};
use spp_ipc::l5::Sid;
use std::fmt::Write as _;

/// The `l5` section of the status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct L5Status {
    /// This service's sid (`None`: it only consumes routes).
    pub sid: Option<Sid>,
    /// The group whose Ready workers decide the registration.
    pub group: u32,
    /// Its instances are registered now (the group has a Ready worker and
    /// the service runs); the backend may still be failing to store them
    /// (see `backend_error`).
    pub registered: bool,
    /// The addresses registered now.
    pub instances: Vec<String>,
    /// `embedded` or `etcd://host:port,...`.
    pub backend: String,
    /// The backend's last error while it fails (routing goes on with the
    /// last known instances); `None` while it answers.
    pub backend_error: Option<String>,
    /// Sids in the route table.
    pub sids: usize,
    /// Nodes in the route table, over every sid.
    pub nodes: usize,
    /// Instances left out (over the table's limits).
    pub dropped: usize,
    /// Publishes of the route table so far.
    pub generation: u64,
}

/// The answer to `{"cmd":"l5"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct L5Report {
    /// The summary.
    #[serde(flatten)]
    pub status: L5Status,
    /// The reshape period, ms.
    pub period_ms: u64,
    /// The published table, by sid.
    pub table: Vec<SidReport>,
}

/// One sid of the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SidReport {
    /// The sid.
    pub sid: Sid,
    /// Picks left this period that may probe dead nodes.
    pub probe_budget: u32,
    /// Its nodes.
    pub nodes: Vec<NodeReport>,
}

/// One node of a sid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// `ip:port`.
    pub addr: String,
    /// `registry` or `static` (the routes file).
    pub source: String,
    /// Static weight.
    pub static_weight: u32,
    /// Current weight (0 when dead).
    pub weight: u32,
    /// Dead: only probes reach it.
    pub dead: bool,
    /// Successful calls reported in the last period.
    pub success: u64,
    /// Failed calls reported in the last period.
    pub failure: u64,
    /// Picks in the last period.
    pub picks: u64,
    /// success / (success + failure) of the last period; `None` without
    /// calls.
    pub success_ratio: Option<f64>,
    /// Failures in a row now.
    pub consecutive_errors: u32,
}

impl L5Report {
    /// The part of the table about `sid`, if it is there.
    pub fn sid(&self, sid: Sid) -> Option<&SidReport> {
        self.table.iter().find(|s| s.sid == sid)
    }
}

/// One line about L5 for `spp status`.
pub fn render_status(l5: &L5Status) -> String {
    let mut out = String::new();
    let who = match l5.sid {
        Some(sid) if l5.registered => format!("sid {sid} registered ({})", l5.instances.join(", ")),
        Some(sid) => format!(
            "sid {sid} not registered: no ready worker in group {} (or the service is starting or stopping)",
            l5.group
        ),
        None => "consumer only (no sid)".to_string(),
    };
    let _ = writeln!(
        out,
        "l5: {who}; backend {}; table: {} sid(s), {} node(s), generation {}",
        l5.backend, l5.sids, l5.nodes, l5.generation
    );
    if let Some(e) = &l5.backend_error {
        let _ = writeln!(
            out,
            "l5: backend error (routing on the last known table): {e}"
        );
    }
    if l5.dropped > 0 {
        let _ = writeln!(
            out,
            "l5: {} instance(s) left out: over the route table's limits",
            l5.dropped
        );
    }
    out
}

/// The table of `spp l5 list` (every sid) or `spp l5 get` (`only`).
pub fn render_report(report: &L5Report, only: Option<Sid>) -> String {
    let mut out = render_status(&report.status);
    let _ = writeln!(
        out,
        "\n{:<16} {:<40} {:<8} {:>6} {:>6} {:<5} {:>8} {:>8} {:>8} {:>7}",
        "SID",
        "ADDRESS",
        "SOURCE",
        "STATIC",
        "WEIGHT",
        "STATE",
        "SUCCESS",
        "FAILURE",
        "PICKS",
        "RATIO"
    );
    for sid in report
        .table
        .iter()
        .filter(|s| only.is_none_or(|o| o == s.sid))
    {
        for node in &sid.nodes {
            let ratio = node
                .success_ratio
                .map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0));
            let _ = writeln!(
                out,
                "{:<16} {:<40} {:<8} {:>6} {:>6} {:<5} {:>8} {:>8} {:>8} {:>7}",
                sid.sid.to_string(),
                node.addr,
                node.source,
                node.static_weight,
                node.weight,
                if node.dead { "dead" } else { "alive" },
                node.success,
                node.failure,
                node.picks,
                ratio
            );
        }
        if sid.nodes.is_empty() {
            let _ = writeln!(out, "{:<16} (no instance)", sid.sid.to_string());
        }
    }
    let _ = writeln!(
        out,
        "\n(outcomes of the last {} ms period)",
        report.period_ms
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> L5Report {
        L5Report {
            status: L5Status {
                sid: Some(Sid {
                    modid: 64001,
                    cmdid: 1,
                }),
                group: 1,
                registered: true,
                instances: vec!["127.0.0.1:7963".into()],
                backend: "embedded".into(),
                backend_error: Some("etcd did not answer".into()),
                sids: 2,
                nodes: 2,
                dropped: 0,
                generation: 9,
            },
            period_ms: 5000,
            table: vec![
                SidReport {
                    sid: Sid {
                        modid: 64001,
                        cmdid: 1,
                    },
                    probe_budget: 1,
                    nodes: vec![NodeReport {
                        addr: "127.0.0.1:7963".into(),
                        source: "registry".into(),
                        static_weight: 100,
                        weight: 0,
                        dead: true,
                        success: 0,
                        failure: 12,
                        picks: 12,
                        success_ratio: Some(0.0),
                        consecutive_errors: 12,
                    }],
                },
                SidReport {
                    sid: Sid { modid: 7, cmdid: 9 },
                    probe_budget: 0,
                    nodes: vec![NodeReport {
                        addr: "10.0.0.1:80".into(),
                        source: "static".into(),
                        static_weight: 300,
                        weight: 300,
                        dead: false,
                        success: 0,
                        failure: 0,
                        picks: 0,
                        success_ratio: None,
                        consecutive_errors: 0,
                    }],
                },
            ],
        }
    }

    #[test]
    fn the_json_is_flat_and_round_trips() {
        let r = report();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["sid"]["modid"], 64001);
        assert_eq!(json["registered"], true);
        assert_eq!(json["backend_error"], "etcd did not answer");
        assert_eq!(json["table"][0]["nodes"][0]["dead"], true);
        assert_eq!(
            json["table"][1]["nodes"][0]["success_ratio"],
            serde_json::Value::Null
        );
        let back: L5Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn the_tables_show_health_and_filter_by_sid() {
        let r = report();
        let all = render_report(&r, None);
        assert!(
            all.contains("sid 64001:1 registered (127.0.0.1:7963)"),
            "{all}"
        );
        assert!(all.contains("backend error"), "{all}");
        assert!(all.contains("dead"), "{all}");
        assert!(all.contains("0.0%"), "{all}");
        assert!(all.contains("10.0.0.1:80"), "{all}");
        let one = render_report(&r, Some(Sid { modid: 7, cmdid: 9 }));
        assert!(
            one.contains("10.0.0.1:80") && !one.contains("127.0.0.1:7963      "),
            "{one}"
        );
        let consumer = L5Status {
            sid: None,
            backend_error: None,
            ..r.status.clone()
        };
        let line = render_status(&consumer);
        assert!(line.contains("consumer only"), "{line}");
        assert!(!line.contains("error"), "{line}");
    }
}
