//! Who listens where on this machine: the listening TCP sockets and the
//! bound, unconnected UDP sockets of this network namespace with their
//! owners' uids, read from `/proc/net/{tcp,tcp6,udp,udp6}` (readable by
//! every user). The embedded registry accepts another user's registration
//! only for addresses that user listens on, so a local user cannot point
//! a sid at an address of someone else's (or at nothing).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The kernel's socket tables, with the state that means "listening".
const TABLES: [(&str, &str); 4] = [
    ("/proc/net/tcp", TCP_LISTEN),
    ("/proc/net/tcp6", TCP_LISTEN),
    ("/proc/net/udp", UDP_UNCONNECTED),
    ("/proc/net/udp6", UDP_UNCONNECTED),
];
/// `st` of a listening TCP socket (`TCP_LISTEN`).
const TCP_LISTEN: &str = "0A";
/// `st` of a bound, unconnected UDP socket (`TCP_CLOSE`).
const UDP_UNCONNECTED: &str = "07";

/// The listening sockets seen at one moment: (local address, owner uid).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listening {
    sockets: Vec<(SocketAddr, u32)>,
}

impl Listening {
    /// Reads every table; one that cannot be read (no IPv6, say) adds
    /// nothing.
    pub fn read() -> Self {
        let mut sockets = Vec::new();
        for (path, state) in TABLES {
            if let Ok(text) = std::fs::read_to_string(path) {
                sockets.extend(parse_table(&text, state));
            }
        }
        Listening { sockets }
    }

    /// Whether `uid` listens on `addr`: on that very address, or on that
    /// port of the wildcard address of either family.
    pub fn held_by(&self, addr: SocketAddr, uid: u32) -> bool {
        self.sockets.iter().any(|&(local, owner)| {
            owner == uid
                && local.port() == addr.port()
                && (local.ip() == addr.ip() || local.ip().is_unspecified())
        })
    }
}

/// The (address, uid) of every row of a `/proc/net` socket table whose
/// state is `state`; rows that do not parse are skipped.
pub fn parse_table(text: &str, state: &str) -> Vec<(SocketAddr, u32)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
            let (local, st, uid) = (fields.get(1)?, fields.get(3)?, fields.get(7)?);
            if *st != state {
                return None;
            }
            Some((parse_addr(local)?, uid.parse().ok()?))
        })
        .collect()
}

/// `IP:PORT` as the kernel prints it: the IP as 32-bit words in host byte
/// order, in hex (8 digits for IPv4, 32 for IPv6), the port in hex.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            // A v4-mapped listener (`::ffff:a.b.c.d`) serves that v4 address.
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F4B 00000000:0000 0A 00000000:00000000 00:00000000 00000000   65534        0 1 1 0 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:9C40 0100007F:1F4B 01 00000000:00000000 00:00000000 00000000   65534        0 3 1 0 100 0 0 10 0
   3: garbage
";

    #[test]
    fn rows_in_the_state_asked_for_parse_with_their_owner() {
        let rows = parse_table(TCP, TCP_LISTEN);
        assert_eq!(
            rows,
            vec![
                ("127.0.0.1:8011".parse().unwrap(), 65534),
                ("0.0.0.0:80".parse().unwrap(), 0),
            ]
        );
    }

    #[test]
    fn an_address_is_held_exactly_or_through_the_wildcard() {
        let listening = Listening {
            sockets: parse_table(TCP, TCP_LISTEN),
        };
        assert!(listening.held_by("127.0.0.1:8011".parse().unwrap(), 65534));
        assert!(!listening.held_by("127.0.0.1:8011".parse().unwrap(), 0));
        assert!(!listening.held_by("127.0.0.2:8011".parse().unwrap(), 65534));
        assert!(listening.held_by("127.0.0.9:80".parse().unwrap(), 0));
        assert!(!listening.held_by("127.0.0.1:81".parse().unwrap(), 0));
    }

    #[test]
    fn ipv6_and_v4_mapped_addresses_parse() {
        let loopback6 = "00000000000000000000000001000000:1F90";
        assert_eq!(parse_addr(loopback6), Some("[::1]:8080".parse().unwrap()));
        let mapped = "0000000000000000FFFF00000100007F:1F90";
        assert_eq!(parse_addr(mapped), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(parse_addr("0100007F"), None);
        assert_eq!(parse_addr("01007F:10"), None);
    }

    #[test]
    fn this_process_s_own_sockets_are_seen() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let listening = Listening::read();
        assert!(listening.held_by(tcp.local_addr().unwrap(), me));
        assert!(listening.held_by(udp.local_addr().unwrap(), me));
    }
}
