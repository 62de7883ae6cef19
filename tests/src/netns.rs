//! Network namespaces for the partition test: [`Lab::create`] makes `n`
//! namespaces, each joined to the root namespace by a veth pair on its own
//! /30 (`10.201.<k>.1` on the host side, `10.201.<k>.2` inside, `lo` up in
//! each), and its `Drop` removes them again, also when the test panics.
//!
//! [`Host::partition`] takes a namespace's end of its veth down: packets
//! between it and the root namespace are dropped (connects and reads time
//! out; nothing answers with a reset); [`Host::heal`] brings it back.
//!
//! It needs root and iproute2's `ip`: [`Lab::create`] returns `None` (and
//! says why on stderr) when either is missing, so the test can skip.
//! Names carry the test's pid; the subnets are checked to be unused.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// The first two octets of the lab's subnets (private, rarely routed).
const NET: [u8; 2] = [10, 201];
/// Third octets tried, from a pid-dependent start, for a free /30.
const OCTETS: u8 = 250;
/// The `ip` binaries looked for.
const IP_BINARIES: [&str; 3] = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"];

/// Namespaces joined to the root namespace by veth pairs.
pub struct Lab {
    ip: String,
    hosts: Vec<Host>,
}

/// One namespace and its veth pair.
pub struct Host {
    ip: String,
    /// The namespace's name.
    pub netns: String,
    /// The veth end in the root namespace.
    pub outer_link: String,
    /// The veth end inside the namespace.
    pub inner_link: String,
    /// The host-side (root namespace) address.
    pub outer: Ipv4Addr,
    /// The address inside the namespace.
    pub inner: Ipv4Addr,
}

/// The `ip` binary, or why the lab cannot be built here (the test skips).
fn ip_binary() -> Result<String, String> {
    // SAFETY: plain syscall, no memory involved.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root".into());
    }
    IP_BINARIES
        .iter()
        .find(|p| std::path::Path::new(p).is_file())
        .map(|p| p.to_string())
        .ok_or_else(|| format!("iproute2's `ip` is not installed (looked at {IP_BINARIES:?})"))
}

/// Runs `ip args...`; its stdout, or what went wrong.
fn run(ip: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(ip)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{ip} {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{ip} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Lab {
    /// `n` namespaces named `spp<pid>n<k>`, or `None` (with the reason on
    /// stderr) when this machine cannot make them: not root, no `ip`, or
    /// the kernel refuses. Panics only on a failure after the first
    /// namespace was made (removing what it made first).
    pub fn create(n: usize) -> Option<Lab> {
        let ip = match ip_binary() {
            Ok(ip) => ip,
            Err(why) => {
                eprintln!("skipped: network namespaces need root and `ip`: {why}");
                return None;
            }
        };
        let taken = run(&ip, &["-o", "-4", "addr", "show"]).unwrap_or_default()
            + &run(&ip, &["-4", "route", "show", "table", "all"]).unwrap_or_default();
        let pid = std::process::id();
        let start = (pid % u32::from(OCTETS)) as u8;
        let free: Vec<u8> = (0..OCTETS)
            .map(|i| ((u16::from(start) + u16::from(i)) % u16::from(OCTETS)) as u8 + 1)
            .filter(|k| !taken.contains(&format!("{}.{}.{k}.", NET[0], NET[1])))
            .take(n)
            .collect();
        if free.len() < n {
            eprintln!(
                "skipped: no {n} free /30 subnets under {}.{}",
                NET[0], NET[1]
            );
            return None;
        }
        let mut lab = Lab {
            ip: ip.clone(),
            hosts: Vec::new(),
        };
        for (i, k) in free.into_iter().enumerate() {
            let host = Host {
                ip: ip.clone(),
                netns: format!("spp{pid}n{i}"),
                outer_link: format!("spp{pid}h{i}"),
                inner_link: format!("spp{pid}i{i}"),
                outer: Ipv4Addr::new(NET[0], NET[1], k, 1),
                inner: Ipv4Addr::new(NET[0], NET[1], k, 2),
            };
            let made = run(&ip, &["netns", "add", &host.netns]);
            if let Err(why) = made {
                if lab.hosts.is_empty() {
                    eprintln!("skipped: cannot make a network namespace here: {why}");
                    return None;
                }
                panic!("{why}");
            }
            // Pushed first: Drop removes it whatever fails next.
            lab.hosts.push(host);
            let host = &lab.hosts[i];
            if let Err(why) = host.wire() {
                if i == 0 {
                    eprintln!("skipped: cannot wire a network namespace here: {why}");
                    return None;
                }
                panic!("{why}");
            }
        }
        Some(lab)
    }

    /// The `k`-th namespace.
    pub fn host(&self, k: usize) -> &Host {
        &self.hosts[k]
    }

    /// The host-side addresses (where a server in the root namespace must
    /// listen to be reached from the namespaces).
    pub fn outer_addrs(&self) -> Vec<Ipv4Addr> {
        self.hosts.iter().map(|h| h.outer).collect()
    }
}

impl Host {
    /// The veth pair, the addresses, every link up.
    fn wire(&self) -> Result<(), String> {
        let (outer, inner) = (format!("{}/30", self.outer), format!("{}/30", self.inner));
        let ip = |args: &[&str]| run(&self.ip, args).map(drop);
        ip(&[
            "link",
            "add",
            &self.outer_link,
            "type",
            "veth",
            "peer",
            "name",
            &self.inner_link,
            "netns",
            &self.netns,
        ])?;
        ip(&["addr", "add", &outer, "dev", &self.outer_link])?;
        ip(&["link", "set", &self.outer_link, "up"])?;
        ip(&[
            "-n",
            &self.netns,
            "addr",
            "add",
            &inner,
            "dev",
            &self.inner_link,
        ])?;
        ip(&["-n", &self.netns, "link", "set", &self.inner_link, "up"])?;
        ip(&["-n", &self.netns, "link", "set", "lo", "up"])
    }

    /// The command prefix running a program inside the namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec![
            self.ip.clone(),
            "netns".into(),
            "exec".into(),
            self.netns.clone(),
        ]
    }

    /// Takes the namespace's end of the veth down: from then on packets
    /// between the namespace and the root namespace are dropped, with no
    /// reset or unreachable answer from the far side.
    pub fn partition(&self) {
        let out = run(
            &self.ip,
            &["-n", &self.netns, "link", "set", &self.inner_link, "down"],
        );
        out.unwrap_or_else(|why| panic!("partition {}: {why}", self.netns));
    }

    /// Brings the namespace's end of the veth up again.
    pub fn heal(&self) {
        let out = run(
            &self.ip,
            &["-n", &self.netns, "link", "set", &self.inner_link, "up"],
        );
        out.unwrap_or_else(|why| panic!("heal {}: {why}", self.netns));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in &self.hosts {
            // Deleting one end deletes the pair; the namespace's removal
            // would too, but only once nothing runs inside it.
            let _ = run(&self.ip, &["link", "del", &host.outer_link]);
            if let Err(why) = run(&self.ip, &["netns", "del", &host.netns]) {
                eprintln!("could not remove network namespace {}: {why}", host.netns);
            }
        }
    }
}
