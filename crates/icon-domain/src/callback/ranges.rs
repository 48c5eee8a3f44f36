//! Which addresses are public: IANA's special-purpose address registries, read from the CSV
//! files beside this module, plus the few rules those registries leave to others.
//!
//! Why data and not a hand list: the registries grow (3fff::/20 and 5f00::/16 arrived in 2024),
//! and a hand list silently misses what it does not name. Updating ICON means replacing rows in
//! the CSV files; the tests below check every row parses and pin the answers that matter.
//!
//! The answer for an address comes from the most specific registry block that contains it
//! (192.0.0.9/32, an anycast service, is public inside the non-public 192.0.0.0/24). A block is
//! public only if the registry says "Globally Reachable: True"; False, N/A and blank are not.
//! Beyond the registries:
//! - 64:ff9b::/96 (NAT64) is public per IANA, but a translator turns it into *any* IPv4
//!   address, private ones included, so ICON refuses it too.
//! - An address in no block: IPv4 is public unless multicast (224.0.0.0/4, from IANA's IPv4
//!   Address Space registry); IPv6 only inside 2000::/3, the one range IANA's IPv6 Address Space
//!   registry allocates as Global Unicast. That refuses multicast (ff00::/8), the deprecated
//!   site-local fec0::/10 and IPv4-compatible ::/96 (both "Reserved by IETF").

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

const IPV4_CSV: &str = include_str!("iana-ipv4-special-registry.csv");
const IPV6_CSV: &str = include_str!("iana-ipv6-special-registry.csv");

/// One row of a registry: what ICON needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialBlock {
    pub network: IpNet,
    pub name: String,
    /// The registry's "Globally Reachable" column: `Some(true)` for True, `Some(false)` for
    /// False, `None` for N/A or blank.
    pub globally_reachable: Option<bool>,
}

/// Both registries, parsed once. The files are compiled in and a test parses them, so a
/// parse failure here cannot reach a tested build.
static REGISTRY: LazyLock<Vec<SpecialBlock>> = LazyLock::new(|| {
    let mut rows = parse_registry(IPV4_CSV).expect("the vendored IPv4 registry parses");
    rows.extend(parse_registry(IPV6_CSV).expect("the vendored IPv6 registry parses"));
    rows
});

/// Every block of both registries, IPv4 first, in file order.
pub fn special_blocks() -> &'static [SpecialBlock] {
    &REGISTRY
}

/// Parses a registry CSV: `#` comment lines, a header naming at least `Address Block`, `Name`
/// and `Globally Reachable`, then one row per block. Names must not hold commas (none does).
pub fn parse_registry(csv: &str) -> Result<Vec<SpecialBlock>, String> {
    let mut lines = csv
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let (_, header) = lines.next().ok_or("no header line")?;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or(format!("no `{name}` column"))
    };
    let (block, name, global) = (
        col("Address Block")?,
        col("Name")?,
        col("Globally Reachable")?,
    );
    lines
        .map(|(n, line)| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let field = |i: usize| fields.get(i).copied().unwrap_or("");
            let network = field(block)
                .parse::<IpNet>()
                .map_err(|e| format!("line {}: `{}`: {e}", n + 1, field(block)))?;
            // IANA appends footnote markers ("False [1]"); the word before them is the value.
            let globally_reachable = match field(global).split_whitespace().next() {
                Some("True") => Some(true),
                Some("False") => Some(false),
                Some("N/A") | None => None,
                Some(other) => {
                    return Err(format!("line {}: Globally Reachable `{other}`", n + 1));
                }
            };
            Ok(SpecialBlock {
                network,
                name: field(name).to_owned(),
                globally_reachable,
            })
        })
        .collect()
}

/// The most specific registry block containing `ip`, if any.
pub fn special_block(ip: IpAddr) -> Option<&'static SpecialBlock> {
    special_blocks()
        .iter()
        .filter(|b| b.network.contains(&ip))
        .max_by_key(|b| b.network.prefix_len())
}

const NAT64_WELL_KNOWN: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
const IPV6_GLOBAL_UNICAST: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);
const IPV4_MULTICAST: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4);

/// Whether `ip` itself is public (see the module comment). Embedded IPv4 addresses are the
/// policy's business, not this function's.
pub fn is_public(ip: IpAddr) -> bool {
    if let IpAddr::V6(v6) = ip {
        if NAT64_WELL_KNOWN.contains(&v6) {
            return false;
        }
    }
    match special_block(ip) {
        Some(block) => block.globally_reachable == Some(true),
        None => match ip {
            IpAddr::V4(v4) => !IPV4_MULTICAST.contains(&v4),
            IpAddr::V6(v6) => IPV6_GLOBAL_UNICAST.contains(&v6),
        },
    }
}

/// The IPv4 addresses an IPv6 address carries by a well-known translation or tunnel, each of
/// which the packet may end up at: IPv4-compatible (`::a.b.c.d`), NAT64 (RFC 6052, both
/// prefixes), 6to4 (RFC 3056) and Teredo (RFC 4380: the server, and the client's obfuscated
/// address). IPv4-mapped addresses are not here: they *are* IPv4 and the policy treats them so.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let o = ip.octets();
    let v4 = |a: u8, b: u8, c: u8, d: u8| Ipv4Addr::new(a, b, c, d);
    let s = ip.segments();
    if s[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        // IPv4-compatible ::a.b.c.d (deprecated by RFC 4291, still routed by some stacks).
        vec![v4(o[12], o[13], o[14], o[15])]
    } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        vec![v4(o[12], o[13], o[14], o[15])]
    } else if s[..3] == [0x64, 0xff9b, 0x1] {
        // A /48 prefix: the IPv4 address is split around the reserved octet 8 (RFC 6052 §2.2).
        vec![v4(o[6], o[7], o[9], o[10])]
    } else if s[0] == 0x2002 {
        vec![v4(o[2], o[3], o[4], o[5])]
    } else if s[..2] == [0x2001, 0] {
        vec![
            v4(o[4], o[5], o[6], o[7]),
            v4(!o[12], !o[13], !o[14], !o[15]),
        ]
    } else {
        vec![]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn both_registries_parse_completely() {
        let v4 = parse_registry(IPV4_CSV).unwrap();
        let v6 = parse_registry(IPV6_CSV).unwrap();
        assert_eq!(v4.len(), 26);
        assert_eq!(v6.len(), 25);
        assert!(v4.iter().all(|b| matches!(b.network, IpNet::V4(_))));
        assert!(v6.iter().all(|b| matches!(b.network, IpNet::V6(_))));
        assert!(v4.iter().chain(&v6).all(|b| !b.name.is_empty()));
    }

    #[test]
    fn parser_reads_iana_footnotes_and_refuses_garbage() {
        let csv = "# c\nAddress Block,Name,RFC,Globally Reachable\n\
                   192.0.0.0/24,IETF Protocol Assignments,[RFC6890],False [1]\n\
                   2001::/32,TEREDO,[RFC4380],N/A [2]\n";
        let rows = parse_registry(csv).unwrap();
        assert_eq!(rows[0].globally_reachable, Some(false));
        assert_eq!(rows[1].globally_reachable, None);
        assert!(parse_registry("Address Block,Name,Globally Reachable\n1.2.3/8,x,False").is_err());
        assert!(
            parse_registry("Address Block,Name,Globally Reachable\n1.0.0.0/8,x,Maybe").is_err()
        );
        assert!(parse_registry("Name,Globally Reachable\n").is_err());
    }

    /// Every block that the registry does not call globally reachable is refused, at its first
    /// and its last address; and every block it does is accepted (NAT64 aside).
    #[test]
    fn every_registry_block_answers_as_the_registry_says() {
        for block in special_blocks() {
            for addr in [block.network.network(), block.network.broadcast()] {
                // The answer belongs to the most specific block: check where this one is it.
                if special_block(addr) != Some(block) {
                    continue;
                }
                let expected = block.globally_reachable == Some(true)
                    && block.network != IpNet::V6(NAT64_WELL_KNOWN);
                assert_eq!(is_public(addr), expected, "{addr} in {}", block.name);
            }
        }
    }

    #[test]
    fn most_specific_block_wins() {
        assert!(!is_public(ip("192.0.0.1")));
        assert!(is_public(ip("192.0.0.9")));
        assert!(!is_public(ip("2001:1::4")));
        assert!(is_public(ip("2001:1::1")));
        assert!(!is_public(ip("192.88.99.1"))); // deprecated, blank
        assert!(!is_public(ip("192.88.99.2")));
    }

    #[test]
    fn rules_beyond_the_registries() {
        for refused in [
            "224.0.0.1",
            "239.255.255.250",
            "64:ff9b::808:808",
            "ff02::1",
            "fec0::1",
            "::8.8.8.8",
            "::2",
            "4000::1",
        ] {
            assert!(!is_public(ip(refused)), "{refused}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450::1"] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn embedded_ipv4_in_every_form() {
        let e = |s: &str| embedded_ipv4(s.parse().unwrap());
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(e("::10.0.0.1"), [a("10.0.0.1")]);
        assert_eq!(e("64:ff9b::10.0.0.1"), [a("10.0.0.1")]);
        // 64:ff9b:1::/48 with 192.168.1.2 in octets 6, 7, 9 and 10.
        assert_eq!(e("64:ff9b:1:c0a8:1:200::"), [a("192.168.1.2")]);
        assert_eq!(e("2002:7f00:1::1"), [a("127.0.0.1")]);
        // Teredo: server 65.54.227.120, client 192.0.2.45 stored inverted (RFC 4380 §4).
        assert_eq!(
            e("2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            [a("65.54.227.120"), a("192.0.2.45")]
        );
        assert!(e("::1").is_empty() && e("::").is_empty());
        assert!(e("2606:4700::1").is_empty());
        assert!(e("::ffff:10.0.0.1").is_empty());
    }
}
