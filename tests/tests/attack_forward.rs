//! Issue 11, bypass 8: another firewall's FORWARD policy (Docker, ufw, firewalld set it to
//! DROP). linkrt delivers into containers with bpf_redirect_peer and replies to the uplink
//! after a FIB lookup, so FORWARD is never traversed: published ports, hairpin and links keep
//! working. Rules go only into the test's own host namespace.
use linkrt_tests::{Bg, CLIENT_IP, Client, HOST_IP, Host, eventually, route_to_bridge, tcp_connect_script};

fn connects(h: &Host, from: &str, ip: &str, port: u16) -> bool {
    h.py(from, &tcp_connect_script(ip, port)).code == 0
}

/// Every path linkrt owns, and one it does not (a container's own connection to the LAN,
/// which the host routes through FORWARD): returns whether that one worked.
fn paths_work(h: &Host, cl: &Client, src: &str) -> bool {
    assert_eq!(
        eventually(10, || cl.curl(&format!("http://{HOST_IP}:8080/"))),
        "Hello world!",
        "published, from the LAN"
    );
    let hair = eventually(10, || {
        let o = h.linkrt(&[
            "exec",
            "app",
            "curl",
            "-s",
            "-m",
            "3",
            &format!("http://{HOST_IP}:8080/"),
        ]);
        (o.code == 0).then_some(o.stdout)
    });
    assert_eq!(hair, "Hello world!", "hairpin from a container");
    assert!(
        eventually(10, || connects(h, "app", src, 7000).then_some(true)),
        "linked"
    );
    assert!(!connects(h, "app", src, 7001), "and still only the link");
    let o = h.linkrt(&[
        "exec",
        "app",
        "curl",
        "-s",
        "-m",
        "2",
        &format!("http://{CLIENT_IP}:8000/"),
    ]);
    o.code == 0
}

#[test]
fn published_hairpin_and_linked_paths_survive_a_forward_drop_policy() {
    let h = Host::new();
    let cl = Client::new(&h);
    route_to_bridge(&cl);
    let _lan = Bg::spawn_in(&cl.ns, &["python3", "-m", "http.server", "8000", "--bind", CLIENT_IP]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "src",
        "--expose",
        "7000",
        "alpine",
        "sh",
        "-c",
        "python3 -m http.server 7000 & exec python3 -m http.server 7001",
    ]);
    h.ok(&["run", "-d", "--name", "web", "-p", "8080:5000", "training/webapp"]);
    h.ok(&["run", "-d", "--name", "app", "--link", "src", "alpine", "sleep", "600"]);
    let src = h.ip_of("src");
    assert!(
        eventually(10, || paths_work(&h, &cl, &src).then_some(true)),
        "without a firewall, everything works"
    );

    // iptables (Docker's and ufw's way).
    h.ns.exec(&["iptables", "-P", "FORWARD", "DROP"]);
    assert!(
        !paths_work(&h, &cl, &src),
        "the policy is in force: routed traffic is dropped"
    );
    h.ns.exec(&["iptables", "-P", "FORWARD", "ACCEPT"]);
    h.ns.exec(&["iptables", "-F"]);
    h.ns.exec(&["nft", "flush", "ruleset"]);
    assert!(eventually(10, || paths_work(&h, &cl, &src).then_some(true)));

    // nftables (firewalld's way): an inet filter forward chain with policy drop.
    h.ns.exec(&["nft", "add", "table", "inet", "filter"]);
    h.ns.exec(&[
        "nft",
        "add chain inet filter forward { type filter hook forward priority 0 ; policy drop ; }",
    ]);
    assert!(!paths_work(&h, &cl, &src), "the policy is in force");
    h.ns.exec(&["nft", "flush", "ruleset"]);
}
