//! The [`Network`] of the host through rtnetlink.
//!
//! One [`Netlink`] holds one current-thread tokio runtime and one netlink connection in the
//! calling thread's netns (the host's), both made on first use and reused by every call of
//! the command. Work inside a container's netns goes through a second connection whose
//! socket was opened *inside* that netns, on a short-lived thread that `setns`ed (netavark's
//! trick: a socket stays bound to the namespace it was created in). That connection lives
//! for one call, so that it never keeps a namespace alive.
use std::{
    cell::OnceCell,
    fs,
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsRawFd, RawFd},
};

use futures_util::TryStreamExt;
use netlink_packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressMessage},
    link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage},
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use tokio::runtime::Runtime;

use super::{BRIDGE, EndpointSpec, Network, Subnet, netns};
use crate::error::{Error, Result};

/// The name of a container's end of its veth.
const PEER: &str = "eth0";

/// The host's networking through netlink. Cheap to make: nothing is opened before the first
/// call.
#[derive(Default)]
pub struct Netlink {
    host: OnceCell<Host>,
}

/// The runtime and the host netns connection.
struct Host {
    handle: Handle,
    rt: Runtime,
}

impl Netlink {
    pub fn new() -> Self {
        Self::default()
    }

    fn host(&self) -> Result<&Host> {
        if let Some(h) = self.host.get() {
            return Ok(h);
        }
        let h = Host::open()?;
        Ok(self.host.get_or_init(|| h))
    }
}

impl Host {
    fn open() -> Result<Self> {
        not_in_async()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::io("starting", "the netlink event loop", e))?;
        let (conn, handle, _) = {
            let _in_rt = rt.enter();
            rtnetlink::new_connection()
                .map_err(|e| Error::netlink("opening", "a netlink socket in the host netns", e))?
        };
        rt.spawn(conn);
        Ok(Host { handle, rt })
    }

    fn run<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        not_in_async()?;
        self.rt.block_on(f)
    }

    /// Runs `work` with a connection whose socket was opened inside the netns `ns`.
    fn in_netns<T, F>(&self, ns: &fs::File, name: &str, work: impl FnOnce(Handle) -> F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        not_in_async()?;
        let rt = self.rt.handle();
        let (conn, handle, _) = netns::run_in(ns, &netns::path(name), || {
            let _in_rt = rt.enter();
            rtnetlink::new_connection()
        })?
        .map_err(|e| Error::netlink("opening a netlink socket in netns", name, e))?;
        self.rt.block_on(async move {
            tokio::select! {
                r = work(handle) => r,
                () = conn => Err(Error::netlink("talking to netns", name, io::Error::other("the netlink connection ended"))),
            }
        })
    }
}

/// Runs `work` once with a fresh connection in the calling thread's netns (for the datapath's
/// occasional tc filter queries, which have no [`Netlink`] at hand).
pub(crate) fn run_once<T, F>(work: impl FnOnce(Handle) -> F) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    let h = Host::open()?;
    let handle = h.handle.clone();
    h.run(work(handle))
}

/// `block_on` panics inside an async context; say so as an error instead.
fn not_in_async() -> Result<()> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Err(Error::sys(
            "netlink calls block: they cannot be made from inside an async runtime",
        )),
        Err(_) => Ok(()),
    }
}

/// The errno of a netlink error; other failures (a message that does not parse, ...) become
/// `io::Error::other`.
pub(crate) fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// Only the kernel saying "no such device" or "no such entry" means absent.
fn is_absent(e: &rtnetlink::Error) -> bool {
    matches!(errno(e), Some(libc::ENODEV) | Some(libc::ENOENT))
}

fn is_exists(e: &rtnetlink::Error) -> bool {
    errno(e) == Some(libc::EEXIST)
}

fn nl(op: &'static str, target: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let target = target.into();
    move |e| Error::netlink(op, target, to_io(e))
}

/// The link named `name`, or `None` if there is none.
async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    match h.link().get().match_name(name).execute().try_next().await {
        Ok(Some(m)) => Ok(Some(m)),
        Ok(None) => Err(Error::netlink("looking up link", name, io::Error::other("no answer"))),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(nl("looking up link", name)(e)),
    }
}

async fn link_index(h: &Handle, name: &str) -> Result<u32> {
    match link_by_name(h, name).await? {
        Some(m) => Ok(m.header.index),
        None => Err(Error::netlink(
            "looking up link",
            name,
            io::Error::from_raw_os_error(libc::ENODEV),
        )),
    }
}

async fn set_up(h: &Handle, index: u32, name: &str) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl("bringing up", name))
}

/// Deletes the link named `name`; `false` if there was none.
async fn delete_link(h: &Handle, name: &str) -> Result<bool> {
    match h
        .link()
        .del_with_message(LinkUnspec::new_with_name(name).build())
        .execute()
        .await
    {
        Ok(()) => Ok(true),
        Err(e) if is_absent(&e) => Ok(false),
        Err(e) => Err(nl("deleting link", name)(e)),
    }
}

async fn ipv4_addr_messages(h: &Handle, what: &str) -> Result<Vec<AddressMessage>> {
    let mut req = h.address().get();
    req.message_mut().header.family = AddressFamily::Inet;
    req.execute()
        .try_collect()
        .await
        .map_err(nl("listing the IPv4 addresses of", what))
}

/// The veth `veth` on the bridge `bridge`, up, whose peer `eth0` is born with `mac` in the
/// netns `netns_fd`: one request, so that there is never a veth half made.
fn veth_message(veth: &str, bridge: u32, mac: [u8; 6], netns_fd: RawFd) -> LinkMessage {
    let peer = LinkUnspec::new_with_name(PEER)
        .address(mac.to_vec())
        .setns_by_fd(netns_fd)
        .build();
    LinkVeth::new(veth, PEER)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(bridge)
        .up()
        .build()
}

fn name_of(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

fn controller_of(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

/// Every link but loopback, the bridge and the bridge's ports (by `IFLA_MASTER`).
fn uplink_names(links: &[LinkMessage]) -> Vec<String> {
    let bridge = links
        .iter()
        .find(|m| name_of(m) == Some(BRIDGE))
        .map(|m| m.header.index);
    links
        .iter()
        .filter(|m| !m.header.flags.contains(LinkFlags::Loopback))
        .filter(|m| Some(m.header.index) != bridge)
        .filter(|m| bridge.is_none() || controller_of(m) != bridge)
        .filter_map(|m| name_of(m).filter(|n| *n != "lo").map(str::to_string))
        .collect()
}

/// The local IPv4 addresses in address messages (`IFA_LOCAL`, else `IFA_ADDRESS`).
fn ipv4_addrs(msgs: &[AddressMessage]) -> Vec<Ipv4Addr> {
    ipv4_addrs_by_link(msgs).into_iter().map(|(_, a)| a).collect()
}

/// The IPv4 addresses of `msgs` with their interface's index, in the kernel's order (each
/// interface's primary address before its secondaries).
fn ipv4_addrs_by_link(msgs: &[AddressMessage]) -> Vec<(u32, Ipv4Addr)> {
    let v4 = |a: &IpAddr| match a {
        IpAddr::V4(ip) => Some(*ip),
        IpAddr::V6(_) => None,
    };
    msgs.iter()
        .filter_map(|m| {
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => v4(ip),
                _ => None,
            });
            local
                .or_else(|| {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => v4(ip),
                        _ => None,
                    })
                })
                .map(|a| (m.header.index, a))
        })
        .collect()
}

/// What `create_endpoint` has made so far, to undo exactly that on failure.
#[derive(Default)]
struct Made {
    netns: bool,
    veth: bool,
}

impl Netlink {
    fn try_create_endpoint(&self, ep: &EndpointSpec, made: &mut Made) -> Result<()> {
        let host = self.host()?;
        // The bridge first: without it there is nothing to make.
        let bridge = host.run(link_index(&host.handle, BRIDGE))?;
        let path = netns::path(&ep.netns);
        let ns = match netns::probe(&path)? {
            netns::Found::Live => netns::open(&path)?,
            found => {
                if found == netns::Found::Stale {
                    netns::remove(&path)?;
                }
                let f = netns::create(&path)?;
                made.netns = true;
                f
            }
        };
        host.run(async {
            let msg = veth_message(&ep.veth, bridge, ep.mac, ns.as_raw_fd());
            host.handle.link().add(msg).execute().await.map_err(nl(
                "creating veth",
                format!("{} (peer {PEER} in netns {})", ep.veth, ep.netns),
            ))?;
            made.veth = true;
            Ok(())
        })?;
        let gateway = ep.subnet.gateway();
        host.in_netns(&ns, &ep.netns, |h| async move {
            let target = |what: &str| format!("{what} in netns {}", ep.netns);
            let eth0 = match link_by_name(&h, PEER).await? {
                Some(m) => m.header.index,
                None => {
                    return Err(Error::netlink(
                        "looking up",
                        target(PEER),
                        io::Error::from_raw_os_error(libc::ENODEV),
                    ));
                }
            };
            h.address()
                .add(eth0, IpAddr::V4(ep.ip), ep.subnet.prefix)
                .execute()
                .await
                .map_err(nl(
                    "adding address",
                    format!("{}/{} to {}", ep.ip, ep.subnet.prefix, target(PEER)),
                ))?;
            set_up(&h, eth0, &target(PEER)).await?;
            h.link()
                .set(LinkUnspec::new_with_name("lo").up().build())
                .execute()
                .await
                .map_err(nl("bringing up", target("lo")))?;
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gateway)
                .output_interface(eth0)
                .build();
            h.route().add(route).execute().await.map_err(nl(
                "adding the default route via",
                format!("{gateway} to {}", target(PEER)),
            ))
        })
    }

    /// Removes what a failed `create_endpoint` made, and only that: a veth of that name that
    /// existed before is someone else's.
    fn undo_endpoint(&self, ep: &EndpointSpec, made: &Made) -> Result<()> {
        let mut errs = Vec::new();
        if made.veth {
            // Explicitly: a netns is freed asynchronously, and with it the peer.
            match self.host().and_then(|h| h.run(delete_link(&h.handle, &ep.veth))) {
                Ok(_) => {}
                Err(e) => errs.push(e),
            }
        }
        if made.netns
            && let Err(e) = netns::remove(&netns::path(&ep.netns))
        {
            errs.push(e);
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Multiple(errs))
        }
    }
}

impl Network for Netlink {
    fn ensure_bridge(&self, subnet: &Subnet) -> Result<()> {
        let host = self.host()?;
        let h = &host.handle;
        host.run(async {
            let (index, up) = match link_by_name(h, BRIDGE).await? {
                Some(m) => (m.header.index, m.header.flags.contains(LinkFlags::Up)),
                None => {
                    match h.link().add(LinkBridge::new(BRIDGE).build()).execute().await {
                        // EEXIST: another command made it meanwhile.
                        Err(e) if !is_exists(&e) => return Err(nl("creating bridge", BRIDGE)(e)),
                        _ => {}
                    }
                    (link_index(h, BRIDGE).await?, false)
                }
            };
            let gw = subnet.gateway();
            match h.address().add(index, IpAddr::V4(gw), subnet.prefix).execute().await {
                Err(e) if !is_exists(&e) => {
                    return Err(nl("adding address", format!("{gw}/{} to {BRIDGE}", subnet.prefix))(e));
                }
                _ => {}
            }
            if !up {
                set_up(h, index, BRIDGE).await?;
            }
            Ok(())
        })?;
        fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| Error::io("writing", "/proc/sys/net/ipv4/ip_forward", e))
    }

    fn create_endpoint(&self, ep: &EndpointSpec) -> Result<()> {
        let mut made = Made::default();
        let r = self.try_create_endpoint(ep, &mut made);
        match r {
            Ok(()) => Ok(()),
            Err(e) => match self.undo_endpoint(ep, &made) {
                Ok(()) => Err(e),
                Err(u) => Err(Error::Multiple(vec![e, u])),
            },
        }
    }

    fn delete_endpoint(&self, netns: &str, veth: &str) -> Result<()> {
        let mut errs = Vec::new();
        // The veth first: removing the netns destroys the pair only once the kernel frees
        // the namespace, which is asynchronous.
        if let Err(e) = self.host().and_then(|h| h.run(delete_link(&h.handle, veth))) {
            errs.push(e);
        }
        if let Err(e) = netns::remove(&netns::path(netns)) {
            errs.push(e);
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Multiple(errs))
        }
    }

    fn netns_exists(&self, netns: &str) -> Result<bool> {
        Ok(netns::probe(&netns::path(netns))? == netns::Found::Live)
    }

    fn endpoint_ipv4(&self, netns: &str) -> Result<Option<Ipv4Addr>> {
        let path = netns::path(netns);
        if netns::probe(&path)? != netns::Found::Live {
            return Ok(None);
        }
        let ns = netns::open(&path)?;
        self.host()?.in_netns(&ns, netns, |h| async move {
            let Some(eth0) = link_by_name(&h, PEER).await? else {
                return Ok(None);
            };
            let what = format!("{PEER} in netns {netns}");
            let msgs = ipv4_addr_messages(&h, &what).await?;
            let mine: Vec<_> = msgs
                .into_iter()
                .filter(|m| m.header.index == eth0.header.index)
                .collect();
            Ok(ipv4_addrs(&mine).into_iter().next())
        })
    }

    fn uplinks(&self) -> Result<Vec<String>> {
        let host = self.host()?;
        host.run(async {
            let links: Vec<LinkMessage> = host
                .handle
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(nl("listing the links of", "the host netns"))?;
            Ok(uplink_names(&links))
        })
    }

    fn addrs_by_link(&self) -> Result<Vec<(u32, Ipv4Addr)>> {
        let host = self.host()?;
        host.run(async {
            Ok(ipv4_addrs_by_link(
                &ipv4_addr_messages(&host.handle, "the host netns").await?,
            ))
        })
    }
}

/// The ifindex, in the calling thread's namespace, of the peer of the veth `ifname` inside
/// the network namespace at `netns` (`IFLA_LINK`); `None` when `ifname` is not there or is
/// not a veth.
pub fn veth_peer_index(netns_path: &std::path::Path, ifname: &str) -> Result<Option<u32>> {
    let ns = netns::open(netns_path)?;
    netns::run_in(&ns, netns_path, || {
        let h = Host::open()?;
        h.run(async {
            let Some(m) = link_by_name(&h.handle, ifname).await? else {
                return Ok(None);
            };
            let is_veth = m.attributes.iter().any(|a| {
                matches!(a, LinkAttribute::LinkInfo(infos)
                    if infos.iter().any(|i| matches!(i, netlink_packet_route::link::LinkInfo::Kind(netlink_packet_route::link::InfoKind::Veth))))
            });
            Ok(m.attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::Link(i) => Some(*i),
                    _ => None,
                })
                .filter(|_| is_veth))
        })
    })?
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::InfoKind;

    use super::*;

    fn link(index: u32, name: &str, flags: LinkFlags, master: Option<u32>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.attributes.push(LinkAttribute::IfName(name.into()));
        if let Some(i) = master {
            m.attributes.push(LinkAttribute::Controller(i));
        }
        m
    }

    #[test]
    fn uplinks_are_neither_loopback_nor_the_bridge_nor_its_ports() {
        let links = [
            link(1, "lo", LinkFlags::Loopback | LinkFlags::Up, None),
            link(2, "eth0", LinkFlags::Up, None),
            link(3, BRIDGE, LinkFlags::Up, None),
            link(4, "vethabcdef0", LinkFlags::Up, Some(3)),
            // A port of another bridge is an uplink of linkrt's.
            link(5, "br-other", LinkFlags::Up, None),
            link(6, "eth1", LinkFlags::Up, Some(5)),
        ];
        assert_eq!(uplink_names(&links), ["eth0", "br-other", "eth1"]);
        // No bridge yet: a link with a master is still an uplink.
        assert_eq!(uplink_names(&links[..2]), ["eth0"]);
        assert_eq!(uplink_names(&[link(7, "bond0", LinkFlags::Up, Some(9))]), ["bond0"]);
    }

    #[test]
    fn local_addresses_prefer_ifa_local() {
        let mut p2p = AddressMessage::default();
        p2p.attributes
            .push(AddressAttribute::Address("10.0.0.2".parse().unwrap()));
        p2p.attributes
            .push(AddressAttribute::Local("10.0.0.1".parse().unwrap()));
        let mut plain = AddressMessage::default();
        plain
            .attributes
            .push(AddressAttribute::Address("172.17.0.1".parse().unwrap()));
        let mut v6 = AddressMessage::default();
        v6.attributes.push(AddressAttribute::Local("fe80::1".parse().unwrap()));
        assert_eq!(
            ipv4_addrs(&[p2p, plain, v6]),
            [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(172, 17, 0, 1)]
        );
    }

    #[test]
    fn the_veth_is_one_request_with_its_peer_in_the_netns() {
        let m = veth_message("vethabc1234", 7, [2, 0x42, 172, 17, 0, 2], 33);
        assert!(m.header.flags.contains(LinkFlags::Up) && m.header.change_mask.contains(LinkFlags::Up));
        assert_eq!(name_of(&m), Some("vethabc1234"));
        assert_eq!(controller_of(&m), Some(7));
        let info = m
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i),
                _ => None,
            })
            .unwrap();
        use netlink_packet_route::link::LinkInfo;
        assert!(info.contains(&LinkInfo::Kind(InfoKind::Veth)));
        let peer = info
            .iter()
            .find_map(|i| match i {
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => Some(p),
                _ => None,
            })
            .expect("one peer");
        assert_eq!(name_of(peer), Some(PEER));
        assert!(peer.attributes.contains(&LinkAttribute::NetNsFd(33)));
        assert!(
            peer.attributes
                .contains(&LinkAttribute::Address(vec![2, 0x42, 172, 17, 0, 2]))
        );
    }

    #[test]
    fn only_enodev_and_enoent_mean_absent() {
        let nl_err = |errno: i32| {
            let mut m = rtnetlink::packet_core::ErrorMessage::default();
            m.code = std::num::NonZeroI32::new(-errno);
            rtnetlink::Error::NetlinkError(m)
        };
        assert!(is_absent(&nl_err(libc::ENODEV)) && is_absent(&nl_err(libc::ENOENT)));
        assert!(!is_absent(&nl_err(libc::EPERM)) && !is_absent(&nl_err(libc::EMFILE)));
        assert!(!is_absent(&rtnetlink::Error::RequestFailed));
        assert!(is_exists(&nl_err(libc::EEXIST)));
        let e = nl("creating veth", "vethx")(nl_err(libc::EEXIST));
        assert!(matches!(&e, Error::Netlink { source, .. } if source.raw_os_error() == Some(libc::EEXIST)));
        assert!(e.to_string().starts_with("creating veth vethx: "), "{e}");
    }
}
