//! Issue 19: kernels without TCX (Debian 12's 6.1, Ubuntu 22.04's 5.15) get linkrt's TC
//! programs as netlink `cls_bpf` filters on a `clsact` qdisc. `LINKRT_ATTACH_MODE=netlink` forces
//! that mode on this kernel, so the fallback is proven here too: the publish and policy suites
//! run again (their own test functions, included below) with every linkrt command in netlink
//! mode, plus the tests of the mode itself: what is attached, self-healing, teardown.
use linkrt_tests::{Client, HOST_IP, Host, Remount, eventually};

#[path = "publish.rs"]
mod publish;

#[path = "policy.rs"]
mod policy;

/// Runs before `main`, while the process has a single thread: every linkrt this test binary
/// starts inherits `LINKRT_ATTACH_MODE=netlink`.
extern "C" fn force_netlink() {
    // SAFETY: no other thread exists yet (an `.init_array` constructor).
    unsafe { std::env::set_var("LINKRT_ATTACH_MODE", "netlink") };
}

#[used]
#[unsafe(link_section = ".init_array")]
static FORCE_NETLINK: extern "C" fn() = force_netlink;

fn status_line(h: &Host, key: &str) -> String {
    h.ok(&["status"])
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_default()
        .to_string()
}

fn tc_filters(h: &Host, dev: &str, dir: &str) -> String {
    let o = h.sh(&["tc", "filter", "show", "dev", dev, dir]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The host's interface toward the client (the one holding `HOST_IP`).
fn uplink(h: &Host) -> String {
    let o = h.sh(&["ip", "-o", "addr", "show", "to", HOST_IP]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    out.split_whitespace().nth(1).expect("the uplink").to_string()
}

fn veth_of(h: &Host, name: &str) -> String {
    let id = h.inspect(name, "{{.Id}}");
    linkrt::network::veth_name(&id[..12])
}

#[test]
fn netlink_mode_attaches_cls_bpf_filters_and_no_tcx_link() {
    let h = Host::new();
    let cl = Client::new(&h);
    h.ok(&["run", "-d", "--name", "web", "-p", "8080:5000", "training/webapp"]);
    assert_eq!(
        eventually(10, || cl.curl(&format!("http://{HOST_IP}:8080/"))),
        "Hello world!"
    );
    let st = status_line(&h, "attach:");
    assert!(
        st.starts_with("attach:     netlink (LINKRT_ATTACH_MODE=netlink, cls_bpf on clsact, priority 1 handle 0x4c52)"),
        "{st}"
    );
    let veth = veth_of(&h, "web");
    for (dir, prog) in [("ingress", "lrt_from_container"), ("egress", "lrt_to_container")] {
        let f = tc_filters(&h, &veth, dir);
        // The filter is named after the program as the kernel keeps it (15 bytes): the
        // programs are reused from their pins, whose names are the kernel's.
        assert!(
            f.contains(&prog[..15])
                && f.contains("direct-action")
                && f.contains("pref 1")
                && f.contains("handle 0x4c52"),
            "{veth} {dir}: {f}"
        );
    }
    let up = uplink(&h);
    assert!(tc_filters(&h, &up, "ingress").contains("lrt_uplink_in"));
    assert!(tc_filters(&h, &up, "egress").contains("lrt_uplink_out"));
    // No TCX link pins: nothing is attached twice.
    let pins: Vec<String> = std::fs::read_dir(h.t.cfg.links_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("cgroup_"))
        .collect();
    assert!(pins.is_empty(), "TCX pins in netlink mode: {pins:?}");
    assert_eq!(status_line(&h, "datapath:"), "datapath:   ok");

    // Teardown deletes the veth's records (the veth takes its filters along).
    h.ok(&["rm", "-f", "web"]);
    let recs: Vec<String> = std::fs::read_dir(h.t.cfg.run_root.join("tc"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&veth))
        .collect();
    assert!(recs.is_empty(), "records left: {recs:?}");
}

#[test]
fn netlink_filters_heal_when_deleted_or_left_with_lost_maps() {
    let mut remount = Remount(std::path::PathBuf::new());
    let h = Host::new();
    remount.0 = h.t.cfg.bpffs.clone();
    let cl = Client::new(&h);
    let up = uplink(&h);
    h.ok(&["run", "-d", "--name", "web", "-p", "8080:5000", "training/webapp"]);
    let url = format!("http://{HOST_IP}:8080/");
    assert_eq!(eventually(10, || cl.curl(&url)), "Hello world!");

    // Someone deletes linkrt's filter on the uplink: the published port stops answering.
    let del = h.sh(&[
        "tc", "filter", "del", "dev", &up, "ingress", "pref", "1", "handle", "0x4c52", "bpf",
    ]);
    assert!(del.status.success(), "{del:?}");
    assert!(!tc_filters(&h, &up, "ingress").contains("lrt_uplink_in"));
    assert_eq!(cl.curl(&url), None, "the probe fails without the filter");
    let st = status_line(&h, "datapath:");
    assert!(st.contains(&format!("link {up}/in")), "{st}");
    // Any command heals it.
    h.ok(&["ps"]);
    assert_eq!(status_line(&h, "datapath:"), "datapath:   ok");
    assert!(tc_filters(&h, &up, "ingress").contains("lrt_uplink_in"));
    assert_eq!(eventually(10, || cl.curl(&url)), "Hello world!");

    // The pins go (bpffs unmounted): the filters live on, with maps nobody can reach.
    nix::mount::umount2(&h.bpffs_mount(), nix::mount::MntFlags::MNT_DETACH).expect("umount bpffs");
    let st = status_line(&h, "datapath:");
    assert!(st.starts_with("datapath:   degraded"), "{st}");
    h.ok(&["ps"]);
    assert_eq!(status_line(&h, "datapath:"), "datapath:   ok");
    assert_eq!(eventually(10, || cl.curl(&url)), "Hello world!");
    // Replaced in place: still one filter of linkrt's per hook.
    let f = tc_filters(&h, &up, "ingress");
    assert_eq!(f.matches("handle 0x4c52").count(), 1, "{f}");
}
