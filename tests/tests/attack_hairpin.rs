//! Issue 11, bypass 7: a container reaches its own published port through the host's address
//! (Docker's TestAccessPublishedPortFromCtr), TCP and UDP, as every other container does.
use linkrt_tests::{HOST_IP, Host, eventually, udp_big_echo_script};

#[test]
fn a_container_reaches_its_own_published_ports_through_the_host_address() {
    let h = Host::new();
    let _cl = linkrt_tests::Client::new(&h);
    h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:5000",
        "-p",
        "5353:7001/udp",
        "training/webapp",
        "sh",
        "-c",
        &format!(
            "python3 -c \"{}\" & exec python app.py",
            udp_big_echo_script(7001).replace('"', "\\\"")
        ),
    ]);
    h.ok(&["run", "-d", "--name", "other", "alpine", "sleep", "600"]);
    let udp = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(b'me',('{HOST_IP}',5353))\nd,a=s.recvfrom(99)\nprint(d.decode(),a[0]+':'+str(a[1]))"
    );
    for who in ["other", "web"] {
        for url in [format!("http://{HOST_IP}:8080/"), "http://172.17.0.1:8080/".to_string()] {
            let body = eventually(10, || {
                let o = h.linkrt(&["exec", who, "curl", "-s", "-m", "3", &url]);
                (o.code == 0).then_some(o.stdout)
            });
            assert_eq!(body, "Hello world!", "{who}: {url}");
        }
        let out = eventually(10, || {
            let o = h.py(who, &udp);
            (o.code == 0).then_some(o.stdout)
        });
        assert_eq!(
            out.trim(),
            format!("echo:me {HOST_IP}:5353"),
            "{who}: UDP, from the published address"
        );
    }
}
