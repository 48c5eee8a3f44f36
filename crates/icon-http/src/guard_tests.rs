//! The SSRF guard, tried with every class of refused address: through host names that a
//! [`StaticLookup`] resolves to the address under test, and as IP literals.
//!
//! "Before any connection" is proven with a loopback listener that never accepts: after a
//! refused request, a non-blocking `accept` finds nothing queued. Addresses that pass the policy
//! are diverted to that witness (see `PolicyResolver::divert`), so a policy bug fails the test by
//! reaching the witness, never by sending traffic to the address under test.

use super::*;
use icon_domain::callback::ranges::{special_block, special_blocks};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// A loopback listener that never accepts on its own.
fn witness() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn assert_untouched(l: &TcpListener) {
    match l.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a connection was attempted: {other:?}"),
    }
}

/// A client whose resolver answers from `lookup` and diverts whatever it lets through to the
/// witness on 127.0.0.1.
fn diverted_client(policy: NetworkPolicy, lookup: StaticLookup, timeout: Duration) -> HttpClient {
    let mut resolver = PolicyResolver::with_lookup(Some(policy.clone()), Arc::new(lookup));
    resolver.divert = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    HttpClient::with_resolver(resolver, Some(policy), timeout).unwrap()
}

/// One address per registry block that is not globally reachable (one the block itself
/// answers for, not a more specific block inside it), and the classes the issue names.
fn refused_targets() -> Vec<(String, IpAddr)> {
    let mut targets = vec![];
    for block in special_blocks() {
        if block.globally_reachable == Some(true) {
            continue;
        }
        let first = block.network.network();
        let candidates = [first, next(first), block.network.broadcast()];
        let addr = candidates
            .into_iter()
            .find(|a| special_block(*a) == Some(block))
            .unwrap_or_else(|| panic!("no address of its own in {}", block.network));
        targets.push((format!("{} ({})", block.network, block.name), addr));
    }
    for (class, addr) in [
        ("NAT64 well-known of a public IPv4", "64:ff9b::8.8.8.8"),
        ("NAT64 well-known of loopback", "64:ff9b::127.0.0.1"),
        ("NAT64 local-use", "64:ff9b:1:a00:0:100::"),
        ("6to4 of a private IPv4", "2002:a00:1::1"),
        ("6to4 of a public IPv4", "2002:808:808::1"),
        ("IPv4-compatible", "::10.0.0.1"),
        ("IPv4-compatible of a public IPv4", "::8.8.8.8"),
        ("site-local", "fec0::1"),
        ("Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
        ("IPv4-mapped loopback", "::ffff:127.0.0.1"),
        ("IPv4-mapped private", "::ffff:192.168.1.1"),
        ("IPv4-mapped metadata", "::ffff:169.254.169.254"),
        ("IPv4 multicast", "224.0.0.251"),
        ("IPv6 multicast", "ff02::1"),
        ("IPv6 outside global unicast", "4000::1"),
        ("cloud metadata", "169.254.169.254"),
    ] {
        targets.push((class.to_owned(), addr.parse().unwrap()));
    }
    targets
}

fn next(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4).wrapping_add(1)).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6).wrapping_add(1)).into()),
    }
}

#[tokio::test]
async fn every_refused_class_via_host_name_refused_before_any_connection() {
    let (listener, port) = witness();
    let targets = refused_targets();
    let lookup = targets
        .iter()
        .enumerate()
        .fold(StaticLookup::new(), |l, (i, (_, addr))| {
            l.with(&format!("target-{i}.test"), [*addr])
        });
    let client = diverted_client(NetworkPolicy::default(), lookup, Duration::from_secs(2));
    for (i, (class, addr)) in targets.iter().enumerate() {
        let url = Url::parse(&format!("http://target-{i}.test:{port}/hook")).unwrap();
        match client.post_json(&url, &[], b"{}".to_vec()).await {
            Err(SendError::Refused(msg)) => assert!(msg.contains(POLICY_MARKER), "{msg}"),
            other => panic!("{class}: {addr} was not refused: {other:?}"),
        }
        assert_untouched(&listener);
    }
}

#[test]
fn every_refused_class_as_ip_literal_refused_before_the_request() {
    let client = HttpClient::new(Some(NetworkPolicy::default()), Duration::from_secs(2)).unwrap();
    for (class, addr) in refused_targets() {
        let host = match addr {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let url = Url::parse(&format!("https://{host}/hook")).unwrap();
        // The check the client runs before handing the request to hyper; no I/O.
        match client.check_literal(&url) {
            Err(SendError::Refused(_)) => {}
            other => panic!("{class}: {addr} was not refused: {other:?}"),
        }
    }
}

#[tokio::test]
async fn ip_literal_refused_before_any_connection() {
    let (listener, port) = witness();
    let client = HttpClient::new(Some(NetworkPolicy::default()), Duration::from_secs(5)).unwrap();
    for host in ["127.0.0.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]"] {
        let url = Url::parse(&format!("http://{host}:{port}/hook")).unwrap();
        let err = client
            .post_json(&url, &[], b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Refused(_)), "{host}: {err:?}");
        assert_untouched(&listener);
    }
}

#[tokio::test]
async fn host_name_refused_before_any_connection() {
    let (listener, port) = witness();
    let client = HttpClient::new(Some(NetworkPolicy::default()), Duration::from_secs(5)).unwrap();
    let url = Url::parse(&format!("http://localhost:{port}/hook")).unwrap();
    let err = client
        .post_json(&url, &[], b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Refused(_)), "{err:?}");
    assert_untouched(&listener);
}

/// The witness would see a leak: a name the policy lets through is connected to (diverted).
#[tokio::test]
async fn a_permitted_name_reaches_the_witness() {
    let (listener, port) = witness();
    let lookup = StaticLookup::new().with("public.test", ["8.8.8.8".parse().unwrap()]);
    let client = diverted_client(NetworkPolicy::default(), lookup, Duration::from_millis(300));
    let url = Url::parse(&format!("http://public.test:{port}/hook")).unwrap();
    // Nobody answers, so the request times out, but the connection was made.
    let err = client
        .post_json(&url, &[], b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Timeout(_)), "{err:?}");
    assert!(listener.accept().is_ok());
}

/// A name with refused and permitted addresses keeps only the permitted ones, so the
/// connection can only go to an address that was checked.
#[tokio::test]
async fn refused_addresses_are_dropped_from_a_mixed_answer() {
    let lookup = StaticLookup::new().with(
        "mixed.test",
        ["10.0.0.1", "8.8.8.8", "::ffff:127.0.0.1", "2606:4700::1"].map(|a| a.parse().unwrap()),
    );
    let resolver = PolicyResolver::with_lookup(Some(NetworkPolicy::default()), Arc::new(lookup));
    let addrs = resolver.resolve("mixed.test").await.unwrap();
    let expected: Vec<SocketAddr> = ["8.8.8.8:0", "[2606:4700::1]:0"]
        .map(|a| a.parse().unwrap())
        .to_vec();
    assert_eq!(addrs, expected);
}

#[tokio::test]
async fn allowed_network_is_reached() {
    let (listener, port) = witness();
    let policy = NetworkPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
    let client = HttpClient::new(Some(policy), Duration::from_millis(300)).unwrap();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
    // Nobody answers, so the request times out, but the connection was made.
    let err = client
        .post_json(&url, &[], b"{}".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Timeout(_)), "{err:?}");
    assert!(listener.accept().is_ok());
}
