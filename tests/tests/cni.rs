//! `linkrt-cni` under a libcni-like runtime (`linkrt_tests::cni::Runtime`), with Debian's
//! `bridge` and `host-local` before it, in a private host namespace, bpffs, state dir and
//! cgroup. The chain runs at cniVersion 1.0.0 (Debian's bridge speaks up to 1.0.0); STATUS
//! and GC, which are 1.1.0 verbs, are called on `linkrt-cni` alone.
use std::{collections::BTreeSet, net::Ipv4Addr, path::Path};

use aya::maps::{HashMap, MapData};
use linkrt_common::{
    maps,
    nat::{Backend, PortKey},
    user::ip_of,
};
use linkrt_tests::{
    Bg, CLIENT_IP, Client, HOST_IP, Host, NetNs, TempDir,
    cni::{Attachment, Runtime},
    eventually, rand_suffix,
};
use serde_json::{Value, json};

const SUBNET: &str = "10.88.0.0/24";

/// The published ports of a host: (host ip, host port, proto, backend ip, backend port).
type Entry = (Ipv4Addr, u16, u8, Ipv4Addr, u16);

fn portmap(h: &Host) -> BTreeSet<Entry> {
    let p = h.t.cfg.maps_dir().join(maps::PORTMAP);
    if !p.exists() {
        return BTreeSet::new();
    }
    let m: HashMap<MapData, PortKey, Backend> =
        HashMap::try_from(aya::maps::Map::HashMap(MapData::from_pin(&p).expect("open PORTMAP"))).unwrap();
    m.iter()
        .map(|r| {
            let (k, v) = r.unwrap();
            (
                ip_of(k.ip),
                u16::from_be(k.port),
                k.proto,
                ip_of(v.ip),
                u16::from_be(v.port),
            )
        })
        .collect()
}

fn delete_portmap_entry(h: &Host, ip: Ipv4Addr, port: u16, proto: u8) {
    let p = h.t.cfg.maps_dir().join(maps::PORTMAP);
    let mut m: HashMap<MapData, PortKey, Backend> =
        HashMap::try_from(aya::maps::Map::HashMap(MapData::from_pin(&p).unwrap())).unwrap();
    m.remove(&PortKey::new(ip, port, proto)).unwrap();
}

/// Every attachment record the plugin keeps (relative paths).
fn records(h: &Host) -> Vec<String> {
    let dir = h.t.cfg.root.join("cni");
    let mut v = Vec::new();
    fn walk(d: &Path, base: &Path, v: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, v);
            } else if p.extension().is_some_and(|x| x == "json") {
                v.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    walk(&dir, &dir, &mut v);
    v.sort();
    v
}

/// The host veths of the plugin's attachments (name, ifindex), from the records.
fn cni_veths(h: &Host) -> Vec<(String, u32)> {
    records(h)
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&std::fs::read(h.t.cfg.root.join("cni").join(r)).unwrap()).unwrap();
            (
                v["host_veth"].as_str().unwrap().to_string(),
                v["host_ifindex"].as_u64().unwrap() as u32,
            )
        })
        .collect()
}

/// Tracked flows: (key, the ifindex the entry delivers to).
fn ct_entries(h: &Host) -> Vec<(linkrt_common::ct::CtKey, u32)> {
    use linkrt_common::ct::{CtEntry, CtKey};
    let p = h.t.cfg.maps_dir().join(maps::CT);
    let m: HashMap<MapData, CtKey, CtEntry> =
        HashMap::try_from(aya::maps::Map::LruHashMap(MapData::from_pin(&p).unwrap())).unwrap();
    m.iter().filter_map(|r| r.ok()).map(|(k, e)| (k, e.ifindex)).collect()
}

/// The name (as the kernel keeps it: 15 bytes) of the program on `ifname`'s pinned ingress link.
fn program_on(h: &Host, ifname: &str) -> String {
    use aya::programs::links::{FdLink, PinnedLink};
    let pin = h.t.cfg.links_dir().join(format!("{ifname}_in"));
    let id = FdLink::from(PinnedLink::from_pin(&pin).unwrap())
        .info()
        .unwrap()
        .program_id();
    aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string))
        .unwrap_or_default()
}

fn links_pinned(h: &Host) -> Vec<String> {
    linkrt::datapath::attached_interfaces(&h.t.cfg)
}

/// The plugin object of `linkrt-cni` for this host's private linkrt instance.
fn linkrt_cni_plugin(h: &Host) -> Value {
    json!({
        "type": "linkrt-cni",
        "capabilities": {"portMappings": true},
        "bpffs": h.t.cfg.bpffs,
        "linkrtRoot": h.t.cfg.root,
        "cgroup": h.t.cfg.cgroup.as_ref().unwrap(),
    })
}

fn portmap_plugin() -> Value {
    json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true})
}

/// bridge → host-local → `last`.
fn conflist(bridge: &str, ipam_dir: &Path, last: Value) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": format!("lrtnet-{}", rand_suffix(6)),
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                }
            },
            last
        ]
    })
}

fn mapping(host_port: u16, container_port: u16, proto: &str, host_ip: &str) -> Value {
    json!({"hostPort": host_port, "containerPort": container_port, "protocol": proto, "hostIP": host_ip})
}

fn attachment(ns: &NetNs, id: &str, ports: Vec<Value>) -> Attachment {
    let mut caps = std::collections::BTreeMap::new();
    caps.insert("portMappings".to_string(), Value::Array(ports));
    Attachment {
        container_id: id.to_string(),
        netns: ns.path(),
        ifname: "eth0".into(),
        capability_args: caps,
    }
}

/// A pod's servers: TCP on 80 and UDP on 53 answer "<name> <peer address>".
fn pod_server(ns: &NetNs, name: &str) -> Bg {
    let script = format!(
        "import socket,threading\nN='{name}'\ndef udp():\n s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n s.bind(('',53))\n while True:\n  d,a=s.recvfrom(2048)\n  s.sendto((N+' '+a[0]).encode(),a)\nthreading.Thread(target=udp,daemon=True).start()\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('',80))\ns.listen(64)\nwhile True:\n c,a=s.accept()\n c.sendall((N+' '+a[0]+'\\n').encode())\n c.close()"
    );
    let bg = Bg::spawn_in(ns, &["python3", "-c", &script]);
    eventually(10, || tcp_in(ns, "127.0.0.1", 80));
    bg
}

fn tcp_script(ip: &str, port: u16) -> String {
    format!(
        "import socket\ns=socket.create_connection(('{ip}',{port}),timeout=2)\ns.settimeout(2)\nprint(s.recv(100).decode().strip())"
    )
}

fn udp_script(ip: &str, port: u16) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(b'x',('{ip}',{port}))\nprint(s.recvfrom(100)[0].decode().strip())"
    )
}

fn answer(o: std::process::Output) -> Option<String> {
    let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (o.status.success() && !s.is_empty()).then_some(s)
}

fn tcp_in(ns: &NetNs, ip: &str, port: u16) -> Option<String> {
    answer(ns.try_exec(&["python3", "-c", &tcp_script(ip, port)]))
}

fn udp_in(ns: &NetNs, ip: &str, port: u16) -> Option<String> {
    answer(ns.try_exec(&["python3", "-c", &udp_script(ip, port)]))
}

fn bridge_name() -> String {
    format!("cni{}", rand_suffix(6))
}

/// Two pods on one bridge, pod A publishing TCP 8080, UDP 5353, TCP 8081 on the host's
/// uplink address only and TCP 8082 on 127.0.0.1; pod B publishing TCP 9090.
struct Scenario<'h> {
    h: &'h Host,
    rt: Runtime<'h>,
    client: Client,
    pod_a: NetNs,
    pod_b: NetNs,
    at_a: Attachment,
    at_b: Attachment,
    ip_a: String,
    ip_b: String,
    _servers: Vec<Bg>,
    _ipam: TempDir,
}

fn a_ports() -> Vec<Value> {
    vec![
        mapping(8080, 80, "tcp", ""),
        mapping(5353, 53, "udp", ""),
        mapping(8081, 80, "tcp", HOST_IP),
        mapping(8082, 80, "tcp", "127.0.0.1"),
    ]
}

fn pod_ip(result: &Value) -> String {
    let ips = result["ips"].as_array().expect("ips in the result");
    let a = ips[0]["address"].as_str().unwrap();
    a.split('/').next().unwrap().to_string()
}

impl<'h> Scenario<'h> {
    fn new(h: &'h Host, last: impl FnOnce(&Host) -> Value) -> Scenario<'h> {
        // The LAN first: the datapath attaches to the uplinks present at ADD.
        let client = Client::new(h);
        let ipam = TempDir::new("linkrt-cni-ipam");
        let mut rt = Runtime::new(h, conflist(&bridge_name(), &ipam.path, last(h)));
        let pod_a = NetNs::new("lrt-poda");
        let pod_b = NetNs::new("lrt-podb");
        let at_a = attachment(&pod_a, &format!("poda{}", rand_suffix(8)), a_ports());
        let at_b = attachment(
            &pod_b,
            &format!("podb{}", rand_suffix(8)),
            vec![mapping(9090, 80, "tcp", "")],
        );
        let ra = rt.add(&at_a).unwrap_or_else(|o| panic!("ADD pod A: {o:?}"));
        let rb = rt.add(&at_b).unwrap_or_else(|o| panic!("ADD pod B: {o:?}"));
        let servers = vec![pod_server(&pod_a, "a"), pod_server(&pod_b, "b")];
        Scenario {
            h,
            rt,
            client,
            pod_a,
            pod_b,
            ip_a: pod_ip(&ra),
            ip_b: pod_ip(&rb),
            at_a,
            at_b,
            _servers: servers,
            _ipam: ipam,
        }
    }

    fn host_tcp(&self, ip: &str, port: u16) -> Option<String> {
        answer(self.h.host_process(&["python3", "-c", &tcp_script(ip, port)]))
    }

    fn host_udp(&self, ip: &str, port: u16) -> Option<String> {
        answer(self.h.host_process(&["python3", "-c", &udp_script(ip, port)]))
    }

    /// Every probe: (what, answer); an answer is "<pod> <source address as the pod saw it>".
    fn reachability(&self) -> Vec<(&'static str, Option<String>)> {
        let c = &self.client.ns;
        vec![
            ("lan tcp 0.0.0.0:8080", tcp_in(c, HOST_IP, 8080)),
            ("lan udp 0.0.0.0:5353", udp_in(c, HOST_IP, 5353)),
            ("lan tcp hostIP:8081", tcp_in(c, HOST_IP, 8081)),
            ("lan tcp 127.0.0.1-only 8082", tcp_in(c, HOST_IP, 8082)),
            ("lan tcp 9090 (pod b)", tcp_in(c, HOST_IP, 9090)),
            ("host tcp localhost:8080", self.host_tcp("127.0.0.1", 8080)),
            ("host udp localhost:5353", self.host_udp("127.0.0.1", 5353)),
            ("host tcp 127.0.0.1:8082", self.host_tcp("127.0.0.1", 8082)),
            ("host tcp hostIP:8081", self.host_tcp(HOST_IP, 8081)),
            ("hairpin b→a tcp hostIP:8080", tcp_in(&self.pod_b, HOST_IP, 8080)),
            ("hairpin b→a udp hostIP:5353", udp_in(&self.pod_b, HOST_IP, 5353)),
            ("hairpin a→b tcp hostIP:9090", tcp_in(&self.pod_a, HOST_IP, 9090)),
        ]
    }
}

/// Which pod answered, per probe (the source address aside).
fn who_answered(r: &[(&'static str, Option<String>)]) -> Vec<(&'static str, Option<String>)> {
    r.iter()
        .map(|(k, v)| (*k, v.as_ref().map(|s| s.split(' ').next().unwrap().to_string())))
        .collect()
}

fn expected() -> Vec<(&'static str, Option<String>)> {
    let a = Some("a".to_string());
    let b = Some("b".to_string());
    vec![
        ("lan tcp 0.0.0.0:8080", a.clone()),
        ("lan udp 0.0.0.0:5353", a.clone()),
        ("lan tcp hostIP:8081", a.clone()),
        ("lan tcp 127.0.0.1-only 8082", None),
        ("lan tcp 9090 (pod b)", b.clone()),
        ("host tcp localhost:8080", a.clone()),
        ("host udp localhost:5353", a.clone()),
        ("host tcp 127.0.0.1:8082", a.clone()),
        ("host tcp hostIP:8081", a.clone()),
        ("hairpin b→a tcp hostIP:8080", a.clone()),
        ("hairpin b→a udp hostIP:5353", a),
        ("hairpin a→b tcp hostIP:9090", b),
    ]
}

/// A prevResult as Debian's bridge gives it, for a pod at `ip` in `netns`.
fn prev_result(netns: &Path, ip: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "02:00:00:00:00:01"},
            {"name": "vethx", "mac": "02:00:00:00:00:02"},
            {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": netns}
        ],
        "ips": [{"interface": 2, "address": format!("{ip}/24"), "gateway": "10.88.0.1"}]
    })
}

#[test]
fn version_and_bad_input_are_cni_errors_that_change_nothing() {
    let h = Host::new();
    let rt = Runtime::new(
        &h,
        json!({"cniVersion": "1.0.0", "name": "lrtbad", "plugins": [linkrt_cni_plugin(&h)]}),
    );
    let v = rt.exec(
        "linkrt-cni",
        &[("CNI_COMMAND", "VERSION")],
        br#"{"cniVersion":"1.0.0"}"#,
    );
    assert_eq!(v.code, 0, "{v:?}");
    let versions: Vec<String> = v.json()["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    for want in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(versions.iter().any(|s| s == want), "{want} not in {versions:?}");
    }
    let pod = NetNs::new("lrt-pod");
    let plugin = rt.plugin("linkrt-cni");
    let at = attachment(&pod, "badinput1", vec![mapping(8080, 80, "tcp", "")]);
    let good = rt.plugin_config(&plugin, &at, Some(&prev_result(&pod.path(), "10.88.0.2")));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c.to_string()
    };
    let netns = pod.path().to_string_lossy().into_owned();
    let cases: Vec<(&str, String, String, u64)> = vec![
        ("malformed JSON", netns.clone(), good.to_string()[..40].to_string(), 6),
        (
            "missing prevResult on ADD",
            netns.clone(),
            with(&|c| {
                c.as_object_mut().unwrap().remove("prevResult");
            }),
            7,
        ),
        (
            "unknown protocol",
            netns.clone(),
            with(&|c| c["runtimeConfig"]["portMappings"][0]["protocol"] = json!("icmp")),
            6,
        ),
        (
            "host port 0",
            netns.clone(),
            with(&|c| c["runtimeConfig"]["portMappings"][0]["hostPort"] = json!(0)),
            7,
        ),
        (
            "host port 65536",
            netns.clone(),
            with(&|c| c["runtimeConfig"]["portMappings"][0]["hostPort"] = json!(65536)),
            7,
        ),
        (
            "container port 70000",
            netns.clone(),
            with(&|c| c["runtimeConfig"]["portMappings"][0]["containerPort"] = json!(70000)),
            7,
        ),
        (
            "CNI_NETNS that does not exist",
            format!("/run/netns/lrt-nope-{}", rand_suffix(8)),
            good.to_string(),
            3,
        ),
        (
            "unsupported cniVersion",
            netns.clone(),
            with(&|c| c["cniVersion"] = json!("9.9.9")),
            1,
        ),
    ];
    for (what, ns, stdin, code) in cases {
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "badinput1"),
            ("CNI_NETNS", ns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", ""),
        ];
        let o = rt.exec("linkrt-cni", &env, stdin.as_bytes());
        assert_ne!(o.code, 0, "{what}: {o:?}");
        assert_eq!(o.error_code(), code, "{what}: {o:?}");
        let msg = o.json()["msg"].as_str().unwrap_or_default().to_string();
        let details = o.json()["details"].as_str().unwrap_or_default().to_string();
        assert!(
            !msg.is_empty() && !details.is_empty(),
            "{what}: no clear message: {o:?}"
        );
        // Nothing made: no datapath loaded, no record.
        assert!(!h.t.cfg.maps_dir().exists(), "{what}: the datapath was loaded");
        assert!(records(&h).is_empty(), "{what}: a record was written");
    }
}

#[test]
fn add_publishes_and_del_removes_only_its_own_entries() {
    let h = Host::new();
    let mut s = Scenario::new(&h, linkrt_cni_plugin);
    let (ip_a, ip_b): (Ipv4Addr, Ipv4Addr) = (s.ip_a.parse().unwrap(), s.ip_b.parse().unwrap());
    let host: Ipv4Addr = HOST_IP.parse().unwrap();
    let want: BTreeSet<Entry> = [
        (Ipv4Addr::UNSPECIFIED, 8080, 6, ip_a, 80),
        (Ipv4Addr::UNSPECIFIED, 5353, 17, ip_a, 53),
        (host, 8081, 6, ip_a, 80),
        (Ipv4Addr::LOCALHOST, 8082, 6, ip_a, 80),
        (Ipv4Addr::UNSPECIFIED, 9090, 6, ip_b, 80),
    ]
    .into();
    assert_eq!(portmap(&h), want);
    assert_eq!(records(&h).len(), 2, "{:?}", records(&h));
    let got = s.reachability();
    assert_eq!(who_answered(&got), expected(), "{got:#?}");
    // The client's address is what the pod sees (no SNAT).
    for (k, v) in &got {
        if k.starts_with("lan") && v.is_some() {
            assert!(v.as_ref().unwrap().ends_with(&format!(" {CLIENT_IP}")), "{k}: {v:?}");
        }
        if k.starts_with("hairpin b") {
            assert!(v.as_ref().unwrap().ends_with(&format!(" {}", s.ip_b)), "{k}: {v:?}");
        }
    }

    // DEL of pod A removes A's entries only; B still answers.
    let at_a = s.at_a.clone();
    s.rt.del(&at_a).unwrap_or_else(|o| panic!("DEL pod A: {o:?}"));
    assert_eq!(portmap(&h), [(Ipv4Addr::UNSPECIFIED, 9090, 6, ip_b, 80)].into());
    assert_eq!(records(&h).len(), 1);
    assert_eq!(tcp_in(&s.client.ns, HOST_IP, 8080), None);
    assert_eq!(
        tcp_in(&s.client.ns, HOST_IP, 9090).as_deref(),
        Some(format!("b {CLIENT_IP}").as_str())
    );
    // DEL is idempotent: three more times, through the whole chain, then linkrt-cni alone with
    // an empty prevResult.
    for _ in 0..3 {
        s.rt.del(&at_a).unwrap_or_else(|o| panic!("repeated DEL: {o:?}"));
    }
    let plugin = s.rt.plugin("linkrt-cni");
    for _ in 0..3 {
        let o = s.rt.run_plugin("DEL", &plugin, &at_a, Some(&json!({})));
        assert_eq!(o.code, 0, "{o:?}");
    }
    assert_eq!(portmap(&h), [(Ipv4Addr::UNSPECIFIED, 9090, 6, ip_b, 80)].into());
    // ADD again without port mappings: what the earlier ADD published goes, prevResult passes.
    let mut at_b = s.at_b.clone();
    let prev_b = s.rt.cache[&(at_b.container_id.clone(), "eth0".to_string())].clone();
    at_b.capability_args.clear();
    let o = s.rt.run_plugin("ADD", &plugin, &at_b, Some(&prev_b));
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.json()["ips"], prev_b["ips"], "prevResult passed through");
    assert!(portmap(&h).is_empty());
    assert!(records(&h).is_empty());
    s.rt.del(&at_b).unwrap_or_else(|o| panic!("DEL pod B: {o:?}"));
    assert!(portmap(&h).is_empty());
    assert!(records(&h).is_empty());
    assert!(
        !links_pinned(&h).iter().any(|l| l.starts_with("veth")),
        "{:?}",
        links_pinned(&h)
    );
}

#[test]
fn conflicting_host_port_is_refused_and_changes_nothing() {
    let h = Host::new();
    let mut s = Scenario::new(&h, linkrt_cni_plugin);
    let before = portmap(&h);
    let pod_c = NetNs::new("lrt-podc");
    for (port, proto, ip) in [
        (8080, "tcp", ""),
        (8080, "tcp", HOST_IP),
        (9090, "tcp", "127.0.0.1"),
        (8081, "tcp", ""),
    ] {
        let at_c = attachment(
            &pod_c,
            "podc1",
            vec![mapping(7070, 80, "tcp", ""), mapping(port, 80, proto, ip)],
        );
        let o = s.rt.add(&at_c).expect_err("a published host port must be refused");
        assert_eq!(o.error_code(), 100, "{o:?}");
        let msg = o.json()["msg"].as_str().unwrap().to_string();
        assert!(
            msg.contains("port is already allocated") && msg.contains(&port.to_string()),
            "{msg}"
        );
        assert_eq!(portmap(&h), before, "the refused ADD changed PORTMAP");
        assert_eq!(records(&h).len(), 2);
        // The runtime cleans up after a failed ADD.
        s.rt.del(&at_c)
            .unwrap_or_else(|o| panic!("DEL after failed ADD: {o:?}"));
    }
    // The same port on another protocol is free.
    let at_c = attachment(&pod_c, "podc1", vec![mapping(8080, 80, "udp", "")]);
    s.rt.add(&at_c).unwrap_or_else(|o| panic!("{o:?}"));
    s.rt.del(&at_c).unwrap_or_else(|o| panic!("{o:?}"));
    assert_eq!(portmap(&h), before);
    assert_eq!(
        tcp_in(&s.client.ns, HOST_IP, 8080).as_deref(),
        Some(format!("a {CLIENT_IP}").as_str())
    );
}

#[test]
fn check_gc_and_status() {
    let h = Host::new();
    let mut s = Scenario::new(&h, linkrt_cni_plugin);
    let plugin = s.rt.plugin("linkrt-cni");
    // CHECK passes through the whole chain, then fails once an entry of A is gone.
    s.rt.check(&s.at_a).unwrap_or_else(|o| panic!("CHECK A: {o:?}"));
    s.rt.check(&s.at_b).unwrap_or_else(|o| panic!("CHECK B: {o:?}"));
    delete_portmap_entry(&h, HOST_IP.parse().unwrap(), 8081, 6);
    let o = s.rt.check(&s.at_a).expect_err("CHECK must see the missing entry");
    assert_eq!(o.error_code(), 101, "{o:?}");
    assert!(o.json()["details"].as_str().unwrap().contains("8081"), "{o:?}");
    s.rt.check(&s.at_b)
        .unwrap_or_else(|o| panic!("CHECK B is unaffected: {o:?}"));

    // A leaked attachment (its container gone, the runtime forgot it) is collected by GC;
    // the valid ones keep their entries and still answer.
    let pod_c = NetNs::new("lrt-podc");
    let at_c = attachment(&pod_c, "podleak1", vec![mapping(7070, 80, "tcp", "")]);
    s.rt.add(&at_c).unwrap_or_else(|o| panic!("{o:?}"));
    let ip_c: Ipv4Addr = pod_ip(&s.rt.cache[&("podleak1".to_string(), "eth0".to_string())])
        .parse()
        .unwrap();
    assert!(portmap(&h).iter().any(|e| e.1 == 7070 && e.3 == ip_c));
    assert_eq!(records(&h).len(), 3);
    s.rt.cache.remove(&("podleak1".to_string(), "eth0".to_string()));
    let before_gc: BTreeSet<Entry> = portmap(&h).into_iter().filter(|e| e.1 != 7070).collect();
    let o = s.rt.gc_plugin(&plugin, "1.1.0");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(portmap(&h), before_gc, "GC must remove the leaked entries only");
    assert_eq!(records(&h).len(), 2);
    assert_eq!(
        tcp_in(&s.client.ns, HOST_IP, 8080).as_deref(),
        Some(format!("a {CLIENT_IP}").as_str())
    );
    assert_eq!(tcp_in(&s.client.ns, HOST_IP, 7070), None);
    // The older key is accepted too: with only B valid, A goes.
    let mut conf = s.rt.plugin_config(&plugin, &s.at_b, None);
    conf["cniVersion"] = json!("1.1.0");
    conf.as_object_mut().unwrap().remove("runtimeConfig");
    conf["cni.dev/attachments"] = json!([{"containerID": s.at_b.container_id, "ifname": "eth0"}]);
    let o =
        s.rt.exec("linkrt-cni", &[("CNI_COMMAND", "GC")], conf.to_string().as_bytes());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        portmap(&h).iter().all(|e| e.3.to_string() == s.ip_b),
        "{:?}",
        portmap(&h)
    );
    assert_eq!(records(&h).len(), 1);
    drop(pod_c);

    // STATUS: ready while the datapath is whole, 50 once its pins are gone.
    let o = s.rt.status_plugin(&plugin, "1.1.0");
    assert_eq!(o.code, 0, "{o:?}");
    // STATUS is a 1.1.0 verb: refused at 1.0.0.
    let o = s.rt.status_plugin(&plugin, "1.0.0");
    assert_ne!(o.code, 0, "{o:?}");
    for m in maps::ALL_MAPS {
        std::fs::remove_file(h.t.cfg.maps_dir().join(m)).unwrap();
    }
    let o = s.rt.status_plugin(&plugin, "1.1.0");
    assert_eq!(o.error_code(), 50, "{o:?}");
    // DEL still succeeds without the datapath.
    let at_b = s.at_b.clone();
    s.rt.del(&at_b)
        .unwrap_or_else(|o| panic!("DEL without the datapath: {o:?}"));
    assert!(records(&h).is_empty());
}

/// The same scenario with Debian's portmap and with linkrt-cni: the same pods answer every
/// probe; with linkrt-cni the LAN client's address is preserved.
#[test]
fn same_reachability_as_debians_portmap() {
    let results: Vec<Vec<(&'static str, Option<String>)>> = [false, true]
        .into_iter()
        .map(|ours| {
            let h = Host::new();
            let s = if ours {
                Scenario::new(&h, linkrt_cni_plugin)
            } else {
                Scenario::new(&h, |_| portmap_plugin())
            };
            let r = s.reachability();
            eprintln!("{}: {r:#?}", if ours { "linkrt-cni" } else { "portmap" });
            if ours {
                for (k, v) in &r {
                    if k.starts_with("lan") && v.is_some() {
                        assert!(v.as_ref().unwrap().ends_with(&format!(" {CLIENT_IP}")), "{k}: {v:?}");
                    }
                }
            }
            let mut s = s;
            // A third pod asking for pod A's host port: portmap takes it (last write wins),
            // linkrt-cni refuses it.
            let pod_c = NetNs::new("lrt-podc");
            let at_c = attachment(&pod_c, "podc3", vec![mapping(8080, 80, "tcp", "")]);
            let taken = s.rt.add(&at_c);
            if ours {
                assert_eq!(taken.expect_err("linkrt-cni refuses a taken port").error_code(), 100);
            } else {
                taken.unwrap_or_else(|o| panic!("portmap accepts a taken port: {o:?}"));
            }
            s.rt.del(&at_c).unwrap_or_else(|o| panic!("DEL C: {o:?}"));
            for at in [s.at_a.clone(), s.at_b.clone()] {
                s.rt.del(&at).unwrap_or_else(|o| panic!("DEL: {o:?}"));
            }
            r
        })
        .collect();
    assert_eq!(
        who_answered(&results[0]),
        who_answered(&results[1]),
        "portmap: {:#?}\nlinkrt-cni: {:#?}",
        results[0],
        results[1]
    );
    assert_eq!(who_answered(&results[1]), expected(), "{:#?}", results[1]);
}

/// The plugin and the CLI share one datapath: a port the CLI published is refused to a pod
/// (and the other way round the CLI leaves the pods' veths, entries and flows alone).
#[test]
fn shares_the_datapath_with_the_linkrt_cli() {
    let h = Host::new();
    let mut s = Scenario::new(&h, linkrt_cni_plugin);
    // Flows through the pods' veths (hairpin), before the CLI does anything.
    let before = s.reachability();
    assert_eq!(who_answered(&before), expected(), "{before:#?}");
    let veths = cni_veths(&h);
    assert_eq!(veths.len(), 2);
    let pod_flows = |h: &Host| {
        ct_entries(h)
            .into_iter()
            .filter(|(_, i)| veths.iter().any(|v| v.1 == *i))
            .count()
    };
    let flows = pod_flows(&h);
    assert!(flows > 0, "hairpin made no flow through a pod's veth");
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "7000:5000",
        "training/webapp",
        "python",
        "app.py",
    ]);
    // The CLI attached its uplink programs elsewhere: the pods' veths keep the container
    // programs, and its policy sync kept their flows.
    for (v, _) in &veths {
        assert_eq!(program_on(&h, v), "lrt_from_contai", "{v}");
    }
    assert_eq!(pod_flows(&h), flows);
    let hello = eventually(20, || s.client.curl(&format!("http://{HOST_IP}:7000/")));
    assert_eq!(hello, "Hello world!");
    // The CLI's start attached its programs to the uplinks, not to the pods' veths, and its
    // policy sync kept the pods' entries: the pods answer as before.
    let got = s.reachability();
    assert_eq!(who_answered(&got), expected(), "{got:#?}");
    s.rt.check(&s.at_a)
        .unwrap_or_else(|o| panic!("CHECK A after the CLI: {o:?}"));
    // A pod may not take the CLI's port.
    let pod_c = NetNs::new("lrt-podc");
    let at_c = attachment(&pod_c, "podc2", vec![mapping(7000, 80, "tcp", "")]);
    let o = s.rt.add(&at_c).expect_err("the CLI's port must be refused");
    assert_eq!(o.error_code(), 100, "{o:?}");
    assert!(
        o.json()["details"].as_str().unwrap().contains("published by linkrt"),
        "{o:?}"
    );
    s.rt.del(&at_c).unwrap_or_else(|o| panic!("{o:?}"));
    h.ok(&["rm", "-f", "web"]);
    assert_eq!(
        tcp_in(&s.client.ns, HOST_IP, 8080).as_deref(),
        Some(format!("a {CLIENT_IP}").as_str())
    );
    for at in [s.at_a.clone(), s.at_b.clone()] {
        s.rt.del(&at).unwrap_or_else(|o| panic!("DEL: {o:?}"));
    }
    assert!(portmap(&h).is_empty(), "{:?}", portmap(&h));
}

/// Runtimes set up many pods at once: parallel ADDs and DELs through the chain serialize on
/// the state dir's lock, and every attachment ends with exactly its own entries.
#[test]
fn parallel_adds_and_dels_keep_every_owner_apart() {
    let h = Host::new();
    let _client = Client::new(&h);
    let ipam = TempDir::new("linkrt-cni-ipam");
    let base = Runtime::new(&h, conflist(&bridge_name(), &ipam.path, linkrt_cni_plugin(&h)));
    let conflist = base.conflist.clone();
    const N: u16 = 6;
    let pods: Vec<NetNs> = (0..N).map(|_| NetNs::new("lrt-podp")).collect();
    let ats: Vec<Attachment> = pods
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let i = i as u16;
            attachment(
                ns,
                &format!("par{i}x{}", rand_suffix(6)),
                vec![mapping(8100 + i, 80, "tcp", ""), mapping(8200 + i, 53, "udp", "")],
            )
        })
        .collect();
    let results: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = ats
            .iter()
            .map(|at| {
                let c = conflist.clone();
                let h = &h;
                sc.spawn(move || {
                    let mut rt = Runtime::new(h, c);
                    rt.add(at)
                        .unwrap_or_else(|o| panic!("parallel ADD {}: {o:?}", at.container_id))
                })
            })
            .collect();
        hs.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut want = BTreeSet::new();
    for (i, r) in results.iter().enumerate() {
        let ip: Ipv4Addr = pod_ip(r).parse().unwrap();
        let i = i as u16;
        want.insert((Ipv4Addr::UNSPECIFIED, 8100 + i, 6, ip, 80));
        want.insert((Ipv4Addr::UNSPECIFIED, 8200 + i, 17, ip, 53));
    }
    assert_eq!(portmap(&h), want);
    assert_eq!(records(&h).len(), N as usize);
    for v in cni_veths(&h) {
        assert_eq!(program_on(&h, &v.0), "lrt_from_contai", "{v:?}");
    }
    // Half of them go, in parallel: the others keep theirs.
    std::thread::scope(|sc| {
        for (at, r) in ats.iter().zip(&results).step_by(2) {
            let c = conflist.clone();
            let h = &h;
            sc.spawn(move || {
                let mut rt = Runtime::new(h, c);
                rt.cache.insert((at.container_id.clone(), at.ifname.clone()), r.clone());
                rt.del(at).unwrap_or_else(|o| panic!("parallel DEL: {o:?}"));
            });
        }
    });
    let left: BTreeSet<Entry> = want.iter().filter(|e| ((e.1 - 8100) % 100) % 2 == 1).copied().collect();
    assert_eq!(portmap(&h), left);
    assert_eq!(records(&h).len(), (N / 2) as usize);
    let mut rt = Runtime::new(&h, conflist.clone());
    for (at, r) in ats.iter().zip(&results).skip(1).step_by(2) {
        rt.cache.insert((at.container_id.clone(), at.ifname.clone()), r.clone());
        rt.del(at).unwrap_or_else(|o| panic!("DEL: {o:?}"));
    }
    assert!(portmap(&h).is_empty());
    assert!(records(&h).is_empty());
}
