//! The netlink implementation of `Network` against the kernel. Each test runs the library in
//! a private "host" netns (never the machine's own), gives container namespaces random
//! names, and checks what was made with `ip`, independently of the code under test.
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use linkrt::network::{self, BRIDGE, EndpointSpec, Subnet};
use linkrt_tests::{NetNs, rand_suffix, require_root, sh};
use serde_json::Value;

/// A container netns name under /run/netns, removed on drop if a test left it behind.
struct CtrNs {
    name: String,
}

impl CtrNs {
    fn new() -> Self {
        CtrNs {
            name: format!("lrt-nlc-{}", rand_suffix(8)),
        }
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `ip -n NAME ARGS` (must succeed).
    fn ip(&self, args: &[&str]) -> Value {
        let mut cmd = vec!["ip", "-n", &self.name, "-j"];
        cmd.extend_from_slice(args);
        json(&sh(&cmd).stdout)
    }
}

impl Drop for CtrNs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path(), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(self.path());
    }
}

fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

/// `ip -j ARGS` inside the private host (must succeed).
fn host_ip(host: &NetNs, args: &[&str]) -> Value {
    let mut cmd = vec!["ip", "-j"];
    cmd.extend_from_slice(args);
    json(&host.exec(&cmd).stdout)
}

fn has_link(host: &NetNs, name: &str) -> bool {
    host.try_exec(&["ip", "link", "show", "dev", name]).status.success()
}

fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

fn subnet() -> Subnet {
    Subnet::parse("172.17.0.0/16").unwrap()
}

fn spec(ctr: &CtrNs, ip: Ipv4Addr) -> EndpointSpec {
    EndpointSpec {
        netns: ctr.name.clone(),
        veth: format!("veth{}", rand_suffix(7)),
        ip,
        mac: network::mac_for(ip),
        subnet: subnet(),
    }
}

/// A private host with the bridge made by the code under test.
fn host_with_bridge() -> NetNs {
    require_root();
    let host = NetNs::new("lrt-nlh");
    host.run(|| network::system().ensure_bridge(&subnet())).unwrap();
    host
}

#[test]
fn an_endpoint_is_made_whole_and_removed_whole() {
    let host = host_with_bridge();
    let ctr = CtrNs::new();
    let ip = Ipv4Addr::new(172, 17, 0, 2);
    let ep = spec(&ctr, ip);
    host.run(|| {
        let net = network::system();
        // A second ensure_bridge on the same connection finds everything in place.
        net.ensure_bridge(&ep.subnet)?;
        net.create_endpoint(&ep)
    })
    .unwrap();

    // The host side: the bridge with the gateway, forwarding on, the veth a port, up.
    let br = &host_ip(&host, &["addr", "show", "dev", BRIDGE])[0];
    assert!(flags(br).contains(&"UP".into()), "{br}");
    let gw = &br["addr_info"][0];
    assert_eq!(
        (gw["local"].as_str(), gw["prefixlen"].as_u64()),
        (Some("172.17.0.1"), Some(16)),
        "{br}"
    );
    let fwd = host.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "1");
    let veth = &host_ip(&host, &["link", "show", "dev", &ep.veth])[0];
    assert_eq!(veth["master"], BRIDGE, "{veth}");
    assert!(flags(veth).contains(&"UP".into()), "{veth}");

    // The container side: eth0 with Docker's MAC and the address, up; lo up; the route.
    let eth0 = &ctr.ip(&["addr", "show", "dev", "eth0"])[0];
    assert_eq!(eth0["address"], network::mac_string(ep.mac), "{eth0}");
    assert!(flags(eth0).contains(&"UP".into()), "{eth0}");
    let a = &eth0["addr_info"][0];
    assert_eq!(
        (a["local"].as_str(), a["prefixlen"].as_u64()),
        (Some("172.17.0.2"), Some(16)),
        "{eth0}"
    );
    let lo = &ctr.ip(&["link", "show", "dev", "lo"])[0];
    assert!(flags(lo).contains(&"UP".into()), "{lo}");
    let route = &ctr.ip(&["route", "show", "default"])[0];
    assert_eq!(
        (route["gateway"].as_str(), route["dev"].as_str()),
        (Some("172.17.0.1"), Some("eth0")),
        "{route}"
    );
    sh(&[
        "ip",
        "netns",
        "exec",
        &ctr.name,
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "172.17.0.1",
    ]);

    let (exists, found) = host.run(|| {
        let net = network::system();
        (
            net.netns_exists(&ctr.name).unwrap(),
            net.endpoint_ipv4(&ctr.name).unwrap(),
        )
    });
    assert!(exists);
    assert_eq!(found, Some(ip));

    host.run(|| network::system().delete_endpoint(&ctr.name, &ep.veth))
        .unwrap();
    assert!(!has_link(&host, &ep.veth));
    assert!(!ctr.path().exists());
    let (exists, found) = host.run(|| {
        let net = network::system();
        (
            net.netns_exists(&ctr.name).unwrap(),
            net.endpoint_ipv4(&ctr.name).unwrap(),
        )
    });
    assert!(!exists);
    assert_eq!(found, None);
}

#[test]
fn deleting_missing_pieces_is_not_an_error() {
    let host = host_with_bridge();
    // Nothing of it ever existed.
    let never = CtrNs::new();
    host.run(|| network::system().delete_endpoint(&never.name, "vethnothere"))
        .unwrap();

    // The veth is already gone; the netns is still there.
    let ctr = CtrNs::new();
    let ep = spec(&ctr, Ipv4Addr::new(172, 17, 0, 3));
    host.run(|| network::system().create_endpoint(&ep)).unwrap();
    host.exec(&["ip", "link", "del", &ep.veth]);
    host.run(|| network::system().delete_endpoint(&ctr.name, &ep.veth))
        .unwrap();
    assert!(!ctr.path().exists());

    // Only the netns, made by `ip netns add`.
    let bare = CtrNs::new();
    sh(&["ip", "netns", "add", &bare.name]);
    host.run(|| network::system().delete_endpoint(&bare.name, "vethnothere"))
        .unwrap();
    assert!(!bare.path().exists());

    // A stale file where a netns was being made (a command killed before the mount): not a
    // netns, removed by delete, and replaced by a real one on create.
    let stale = CtrNs::new();
    std::fs::write(stale.path(), "").unwrap();
    let (exists, found) = host.run(|| {
        let net = network::system();
        (
            net.netns_exists(&stale.name).unwrap(),
            net.endpoint_ipv4(&stale.name).unwrap(),
        )
    });
    assert!(!exists);
    assert_eq!(found, None);
    host.run(|| network::system().delete_endpoint(&stale.name, "vethnothere"))
        .unwrap();
    assert!(!stale.path().exists());
    std::fs::write(stale.path(), "").unwrap();
    let ep = spec(&stale, Ipv4Addr::new(172, 17, 0, 4));
    host.run(|| network::system().create_endpoint(&ep)).unwrap();
    assert_eq!(stale.ip(&["link", "show", "dev", "eth0"])[0]["ifname"], "eth0");
    host.run(|| network::system().delete_endpoint(&stale.name, &ep.veth))
        .unwrap();
    assert!(!stale.path().exists() && !has_link(&host, &ep.veth));
}

#[test]
fn uplinks_exclude_loopback_the_bridge_and_its_ports() {
    let host = host_with_bridge();
    // Interfaces of the host whose other ends are in a "client" netns (this kernel has no
    // dummy devices): an uplink, a port of linkrt0 that is not a container's veth, and a
    // port of another bridge.
    let other = NetNs::new("lrt-nlx");
    let veth_to_other = |name: &str, peer: &str, master: Option<&str>| {
        let mut cmd = vec!["ip", "link", "add", name];
        if let Some(m) = master {
            cmd.extend(["master", m]);
        }
        cmd.extend(["type", "veth", "peer", "name", peer, "netns", &other.name]);
        host.exec(&cmd);
    };
    veth_to_other("up0", "eth0", None);
    host.exec(&["ip", "addr", "add", "10.77.0.1/24", "dev", "up0"]);
    veth_to_other("port0", "eth1", Some(BRIDGE));
    host.exec(&["ip", "link", "add", "brx", "type", "bridge"]);
    veth_to_other("brxport", "eth2", Some("brx"));
    let ctr = CtrNs::new();
    let ep = spec(&ctr, Ipv4Addr::new(172, 17, 0, 5));
    let (mut uplinks, addrs) = host.run(|| {
        let net = network::system();
        net.create_endpoint(&ep).unwrap();
        (net.uplinks().unwrap(), net.local_addrs().unwrap())
    });
    uplinks.sort();
    assert_eq!(uplinks, ["brx", "brxport", "up0"]);
    for a in ["127.0.0.1", "10.77.0.1", "172.17.0.1"] {
        assert!(addrs.contains(&a.parse().unwrap()), "{a} in {addrs:?}");
    }
    assert!(
        !addrs.contains(&ep.ip),
        "the container's address is not the host's: {addrs:?}"
    );
    host.run(|| network::system().delete_endpoint(&ctr.name, &ep.veth))
        .unwrap();
}

#[test]
fn endpoint_ipv4_recovers_the_address_from_the_netns() {
    let host = host_with_bridge();
    let ctr = CtrNs::new();
    let ip = Ipv4Addr::new(172, 17, 1, 9);
    let ep = spec(&ctr, ip);
    host.run(|| network::system().create_endpoint(&ep)).unwrap();
    // A later command, with its own connection, reads it back.
    assert_eq!(
        host.run(|| network::system().endpoint_ipv4(&ctr.name)).unwrap(),
        Some(ip)
    );
    // eth0 without an IPv4 address.
    sh(&["ip", "-n", &ctr.name, "addr", "flush", "dev", "eth0"]);
    assert_eq!(host.run(|| network::system().endpoint_ipv4(&ctr.name)).unwrap(), None);
    // A netns without eth0, and no netns at all.
    let bare = CtrNs::new();
    sh(&["ip", "netns", "add", &bare.name]);
    assert_eq!(host.run(|| network::system().endpoint_ipv4(&bare.name)).unwrap(), None);
    let missing = CtrNs::new();
    assert_eq!(
        host.run(|| network::system().endpoint_ipv4(&missing.name)).unwrap(),
        None
    );
    host.run(|| network::system().delete_endpoint(&ctr.name, &ep.veth))
        .unwrap();
    host.run(|| network::system().delete_endpoint(&bare.name, "vethnothere"))
        .unwrap();
}

#[test]
fn a_taken_veth_name_fails_naming_it_and_leaves_nothing_behind() {
    let host = host_with_bridge();
    let ctr = CtrNs::new();
    let ep = spec(&ctr, Ipv4Addr::new(172, 17, 0, 6));
    let peer = format!("{}p", ep.veth);
    host.exec(&["ip", "link", "add", &ep.veth, "type", "veth", "peer", "name", &peer]);
    let before = host_ip(&host, &["link", "show"]);

    let e = host.run(|| network::system().create_endpoint(&ep)).unwrap_err();
    match &e {
        linkrt::Error::Netlink { op, target, source } => {
            assert_eq!(*op, "creating veth");
            assert!(target.contains(&ep.veth) && target.contains(&ctr.name), "{target}");
            assert_eq!(source.raw_os_error(), Some(libc::EEXIST), "{source}");
        }
        other => panic!("want a netlink error, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("creating veth {}", ep.veth)), "{msg}");
    // The netns this call made is gone; the other veth of that name is untouched.
    assert!(!ctr.path().exists());
    assert_eq!(host_ip(&host, &["link", "show"]), before);
    let theirs = &host_ip(&host, &["link", "show", "dev", &ep.veth])[0];
    assert_eq!(theirs["link"], peer.as_str(), "{theirs}");
}

#[test]
fn failing_on_a_netns_made_before_keeps_it_and_a_missing_bridge_is_an_error() {
    require_root();
    let host = NetNs::new("lrt-nlh");
    // No bridge: the lookup fails with ENODEV, named; the netns made by the call is removed.
    let ctr = CtrNs::new();
    let ep = spec(&ctr, Ipv4Addr::new(172, 17, 0, 7));
    let e = host.run(|| network::system().create_endpoint(&ep)).unwrap_err();
    match &e {
        linkrt::Error::Netlink { target, source, .. } => {
            assert_eq!(target, BRIDGE);
            assert_eq!(source.raw_os_error(), Some(libc::ENODEV), "{source}");
        }
        other => panic!("want a netlink error, got {other:?}"),
    }
    assert!(!ctr.path().exists());

    // A netns that existed before the call is the caller's: a failure leaves it.
    sh(&["ip", "netns", "add", &ctr.name]);
    assert!(host.run(|| network::system().create_endpoint(&ep)).is_err());
    assert!(ctr.path().exists());
    assert_eq!(ctr.ip(&["link", "show"]).as_array().unwrap().len(), 1, "only lo");
    host.run(|| network::system().delete_endpoint(&ctr.name, &ep.veth))
        .unwrap();
    assert!(!ctr.path().exists());
}
