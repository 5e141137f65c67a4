//! `linux.netDevices`: host interfaces moved into the container's network
//! namespace (runtime-spec 1.2), renamed if asked, with their addresses.
//!
//! The kernel flushes an interface's addresses when it changes namespace, so
//! they are read first (the permanent ones: what an admin or a CNI plugin
//! set, not what the kernel made up, such as IPv6 link-local ones), the
//! interface is moved and renamed in one `RTM_NEWLINK` (`IFLA_NET_NS_FD`
//! with `IFLA_IFNAME`), and the addresses are added again inside, where the
//! interface is also brought up again if it was up. Its other attributes
//! (MTU, MAC address) move with it.
//!
//! strata keeps no record of the move: when the namespace goes away the
//! kernel gives a physical interface back to the host and destroys a
//! virtual one, whatever happened to strata.
//!
//! Three rtnetlink messages are all this needs; they are encoded here rather
//! than through a general netlink crate, whose generic code every strata
//! command would carry. Encoding and decoding are pure functions, tested
//! below; the socket I/O goes through `nix`.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send, socket};
use oci_spec::runtime::LinuxNetDevice;

use crate::sys::{self, SysError};

#[derive(Debug, thiserror::Error)]
pub enum NetDevError {
    #[error("linux.netDevices: {0}")]
    Invalid(String),
    #[error("linux.netDevices: {op} {dev}: {errno}")]
    Netlink { op: &'static str, dev: String, errno: Errno },
    #[error(transparent)]
    Sys(#[from] SysError),
}

type Result<T> = std::result::Result<T, NetDevError>;

/// One interface to move: its name on the host and in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub host: String,
    pub inside: String,
}

/// The moves `linux.netDevices` asks for, checked: names the kernel accepts
/// (1 to 15 bytes, no `/`, no whitespace, not `.` or `..`), no two devices
/// with one name inside, and a network namespace of the container's own to
/// move them into.
pub fn plan(devices: Option<&HashMap<String, LinuxNetDevice>>, own_netns: bool) -> Result<Vec<Move>> {
    let Some(devices) = devices.filter(|d| !d.is_empty()) else { return Ok(Vec::new()) };
    if !own_netns {
        return Err(NetDevError::Invalid("the container has no network namespace of its own to move devices into".into()));
    }
    let mut moves: Vec<Move> = devices
        .iter()
        .map(|(host, d)| Move { host: host.clone(), inside: d.name().clone().filter(|n| !n.is_empty()).unwrap_or_else(|| host.clone()) })
        .collect();
    moves.sort_by(|a, b| a.host.cmp(&b.host));
    for m in &moves {
        for name in [&m.host, &m.inside] {
            if !valid_ifname(name) {
                return Err(NetDevError::Invalid(format!("{name:?} is not a valid interface name")));
            }
        }
    }
    for (i, m) in moves.iter().enumerate() {
        if moves[..i].iter().any(|o| o.inside == m.inside) {
            return Err(NetDevError::Invalid(format!("two devices would be named {:?} in the container", m.inside)));
        }
    }
    Ok(moves)
}

fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() < 16
        && n != "."
        && n != ".."
        && !n.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

/// Moves each device into `netns` (an fd of the container's network
/// namespace), renames it and restores its addresses and up state there.
pub fn apply(moves: &[Move], netns: BorrowedFd<'_>) -> Result<()> {
    if moves.is_empty() {
        return Ok(());
    }
    let host = Rtnl::open()?;
    let mut restore = Vec::new();
    for m in moves {
        let index = nix::net::if_::if_nametoindex(m.host.as_str())
            .map_err(|_| NetDevError::Invalid(format!("{}: no such interface on the host", m.host)))?;
        let link = host.link(index, &m.host)?;
        let addrs = host.addresses(index, &m.host)?;
        host.request(&move_link(index, netns, &m.inside), "move", &m.host)?;
        restore.push((m, link, addrs));
    }
    // The namespace's own socket: made by a thread that joins it (a thread
    // may change its network namespace alone), used from here.
    let inside = std::thread::scope(|s| {
        s.spawn(|| -> Result<(Rtnl, Vec<u32>)> {
            nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(sys::err(
                "setns",
                "the container's network namespace",
                "CLONE_NEWNET",
            ))?;
            let rtnl = Rtnl::open()?;
            let mut indexes = Vec::new();
            for (m, ..) in &restore {
                let i = nix::net::if_::if_nametoindex(m.inside.as_str()).map_err(|e| NetDevError::Netlink {
                    op: "find after the move",
                    dev: m.inside.clone(),
                    errno: e,
                })?;
                indexes.push(i);
            }
            Ok((rtnl, indexes))
        })
        .join()
        .unwrap_or_else(|_| Err(NetDevError::Invalid("the thread that joins the network namespace panicked".into())))
    })?;
    let (rtnl, indexes) = inside;
    for ((m, link, addrs), index) in restore.iter().zip(indexes) {
        for a in addrs {
            rtnl.request(&new_address(index, a), "add address to", &m.inside)?;
        }
        if link.flags & libc::IFF_UP as u32 != 0 {
            rtnl.request(&set_up(index), "bring up", &m.inside)?;
        }
    }
    Ok(())
}

/// What is kept of a link: its flags (IFF_UP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub flags: u32,
}

/// An address as `RTM_NEWADDR` wants it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    pub family: u8,
    pub prefix_len: u8,
    pub scope: u8,
    /// IFA_LOCAL (the interface's own address), or IFA_ADDRESS without it.
    pub local: Vec<u8>,
    /// IFA_ADDRESS (the peer on point-to-point links; else the same).
    pub address: Vec<u8>,
    /// IFA_FLAGS, or the header's 8 bits.
    pub flags: u32,
}

/// A NETLINK_ROUTE socket of the calling thread's network namespace.
struct Rtnl {
    fd: OwnedFd,
}

const NLMSG_HDR: usize = 16;
const IFINFO: usize = 16;
const IFADDR: usize = 8;
const IFA_F_PERMANENT: u32 = 0x80;

impl Rtnl {
    fn open() -> Result<Rtnl> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute).map_err(sys::err(
            "socket",
            "netlink",
            "NETLINK_ROUTE|SOCK_CLOEXEC",
        ))?;
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, 0)).map_err(sys::err("bind", "netlink", "NETLINK_ROUTE"))?;
        // A reply that never comes is an error, not a hung create.
        let limit = nix::sys::time::TimeVal::new(10, 0);
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReceiveTimeout, &limit).map_err(sys::err(
            "setsockopt",
            "netlink",
            "SO_RCVTIMEO",
        ))?;
        Ok(Rtnl { fd })
    }

    /// Sends one request and reads replies until its ACK (or its error), or
    /// to NLMSG_DONE for a dump; returns the payloads of the other replies.
    fn exchange(&self, msg: &[u8], op: &'static str, dev: &str) -> Result<Vec<(u16, Vec<u8>)>> {
        let err = |errno| NetDevError::Netlink { op, dev: dev.to_string(), errno };
        send(std::os::fd::AsRawFd::as_raw_fd(&self.fd), msg, MsgFlags::empty()).map_err(err)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = recv(std::os::fd::AsRawFd::as_raw_fd(&self.fd.as_fd()), &mut buf, MsgFlags::empty()).map_err(err)?;
            for (ty, payload) in split(&buf[..n]) {
                match ty {
                    t if t == libc::NLMSG_DONE as u16 => return Ok(out),
                    t if t == libc::NLMSG_ERROR as u16 => {
                        let code = payload.get(..4).map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes"))).unwrap_or(-libc::EPROTO);
                        return if code == 0 { Ok(out) } else { Err(err(Errno::from_raw(-code))) };
                    }
                    _ => out.push((ty, payload.to_vec())),
                }
            }
        }
    }

    fn request(&self, msg: &[u8], op: &'static str, dev: &str) -> Result<()> {
        self.exchange(msg, op, dev).map(drop)
    }

    fn link(&self, index: u32, dev: &str) -> Result<Link> {
        let replies = self.exchange(&get_link(index), "read link", dev)?;
        replies
            .iter()
            .find(|(t, _)| *t == libc::RTM_NEWLINK)
            .and_then(|(_, p)| parse_link(p))
            .ok_or_else(|| NetDevError::Invalid(format!("{dev}: no link in the kernel's reply")))
    }

    fn addresses(&self, index: u32, dev: &str) -> Result<Vec<Addr>> {
        let replies = self.exchange(&dump_addresses(), "read addresses of", dev)?;
        Ok(replies
            .iter()
            .filter(|(t, _)| *t == libc::RTM_NEWADDR)
            .filter_map(|(_, p)| parse_address(p))
            .filter(|(i, a)| *i == index && a.flags & IFA_F_PERMANENT != 0)
            .map(|(_, a)| a)
            .collect())
    }
}

// ---- encoding --------------------------------------------------------------

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink message: header, fixed part, attributes (type, payload).
fn message(ty: u16, flags: u16, fixed: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut m = vec![0u8; NLMSG_HDR];
    m.extend_from_slice(fixed);
    m.resize(align(m.len()), 0);
    for (t, payload) in attrs {
        let len = 4 + payload.len();
        m.extend_from_slice(&(len as u16).to_ne_bytes());
        m.extend_from_slice(&t.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(align(m.len()), 0);
    }
    let total = m.len() as u32;
    m[0..4].copy_from_slice(&total.to_ne_bytes());
    m[4..6].copy_from_slice(&ty.to_ne_bytes());
    m[6..8].copy_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m[8..12].copy_from_slice(&1u32.to_ne_bytes());
    m
}

fn ifinfo(index: u32, flags: u32, change: u32) -> [u8; IFINFO] {
    let mut f = [0u8; IFINFO];
    f[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    f[8..12].copy_from_slice(&flags.to_ne_bytes());
    f[12..16].copy_from_slice(&change.to_ne_bytes());
    f
}

fn get_link(index: u32) -> Vec<u8> {
    // The ACK ends the reply: a single link has no NLMSG_DONE.
    message(libc::RTM_GETLINK, libc::NLM_F_ACK as u16, &ifinfo(index, 0, 0), &[])
}

fn dump_addresses() -> Vec<u8> {
    message(libc::RTM_GETADDR, libc::NLM_F_DUMP as u16, &[0u8; IFADDR], &[])
}

fn move_link(index: u32, netns: BorrowedFd<'_>, new_name: &str) -> Vec<u8> {
    let fd = (std::os::fd::AsRawFd::as_raw_fd(&netns) as u32).to_ne_bytes();
    let mut name = new_name.as_bytes().to_vec();
    name.push(0);
    message(libc::RTM_NEWLINK, libc::NLM_F_ACK as u16, &ifinfo(index, 0, 0), &[(libc::IFLA_NET_NS_FD, &fd), (libc::IFLA_IFNAME, &name)])
}

fn set_up(index: u32) -> Vec<u8> {
    let up = libc::IFF_UP as u32;
    message(libc::RTM_NEWLINK, libc::NLM_F_ACK as u16, &ifinfo(index, up, up), &[])
}

fn new_address(index: u32, a: &Addr) -> Vec<u8> {
    let mut fixed = [0u8; IFADDR];
    fixed[0] = a.family;
    fixed[1] = a.prefix_len;
    fixed[2] = a.flags as u8;
    fixed[3] = a.scope;
    fixed[4..8].copy_from_slice(&index.to_ne_bytes());
    let flags = a.flags.to_ne_bytes();
    let attrs = [(libc::IFA_LOCAL, a.local.as_slice()), (libc::IFA_ADDRESS, a.address.as_slice()), (libc::IFA_FLAGS, &flags[..])];
    let flags = (libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    message(libc::RTM_NEWADDR, flags, &fixed, &attrs)
}

// ---- decoding --------------------------------------------------------------

/// The messages of one datagram: (type, payload after the header).
fn split(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDR <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
        let ty = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2 bytes"));
        if len < NLMSG_HDR || at + len > buf.len() {
            break;
        }
        out.push((ty, &buf[at + NLMSG_HDR..at + len]));
        at += align(len);
    }
    out
}

/// The attributes after a fixed part of `fixed` bytes.
fn attributes(payload: &[u8], fixed: usize) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = align(fixed);
    while at + 4 <= payload.len() {
        let len = u16::from_ne_bytes(payload[at..at + 2].try_into().expect("2 bytes")) as usize;
        let ty = u16::from_ne_bytes(payload[at + 2..at + 4].try_into().expect("2 bytes")) & 0x3fff;
        if len < 4 || at + len > payload.len() {
            break;
        }
        out.push((ty, &payload[at + 4..at + len]));
        at += align(len);
    }
    out
}

fn parse_link(p: &[u8]) -> Option<Link> {
    let flags = u32::from_ne_bytes(p.get(8..12)?.try_into().ok()?);
    Some(Link { flags })
}

/// An `RTM_NEWADDR` payload: (interface index, address).
fn parse_address(p: &[u8]) -> Option<(u32, Addr)> {
    let fixed = p.get(..IFADDR)?;
    let index = u32::from_ne_bytes(fixed[4..8].try_into().ok()?);
    let attrs = attributes(p, IFADDR);
    let get = |t: u16| attrs.iter().find(|(ty, _)| *ty == t).map(|(_, v)| v.to_vec());
    let address = get(libc::IFA_ADDRESS);
    let local = get(libc::IFA_LOCAL).or_else(|| address.clone())?;
    let flags = get(libc::IFA_FLAGS).and_then(|v| Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))).unwrap_or(fixed[2] as u32);
    Some((
        index,
        Addr { family: fixed[0], prefix_len: fixed[1], scope: fixed[3], address: address.unwrap_or_else(|| local.clone()), local, flags },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: Option<&str>) -> LinuxNetDevice {
        let mut d = LinuxNetDevice::default();
        d.set_name(name.map(String::from));
        d
    }

    #[test]
    fn plan_checks_names_and_the_namespace() {
        let mut m = HashMap::new();
        m.insert("veth1".to_string(), dev(Some("eth0")));
        m.insert("veth2".to_string(), dev(None));
        assert_eq!(
            plan(Some(&m), true).unwrap(),
            vec![Move { host: "veth1".into(), inside: "eth0".into() }, Move { host: "veth2".into(), inside: "veth2".into() }]
        );
        assert!(plan(Some(&m), false).unwrap_err().to_string().contains("no network namespace"));
        m.insert("veth3".to_string(), dev(Some("eth0")));
        assert!(plan(Some(&m), true).unwrap_err().to_string().contains("\"eth0\""));
        let mut bad = HashMap::new();
        bad.insert("a".to_string(), dev(Some("much-too-long-name")));
        assert!(plan(Some(&bad), true).unwrap_err().to_string().contains("not a valid interface name"));
        bad.clear();
        bad.insert("../x".to_string(), dev(None));
        assert!(plan(Some(&bad), true).is_err());
        assert_eq!(plan(None, false).unwrap(), vec![]);
    }

    #[test]
    fn an_address_survives_a_round_trip() {
        let a = Addr { family: 2, prefix_len: 24, scope: 0, local: vec![10, 1, 2, 3], address: vec![10, 1, 2, 3], flags: IFA_F_PERMANENT };
        let msg = new_address(7, &a);
        let (ty, payload) = split(&msg)[0];
        assert_eq!(ty, libc::RTM_NEWADDR);
        assert_eq!(parse_address(payload), Some((7, a)));
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize, msg.len());
    }

    #[test]
    fn the_move_names_the_namespace_fd_and_the_new_name() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let msg = move_link(3, f.as_fd(), "eth0");
        let (_, payload) = split(&msg)[0];
        let attrs = attributes(payload, IFINFO);
        assert_eq!(attrs[0], (libc::IFLA_NET_NS_FD, &(std::os::fd::AsRawFd::as_raw_fd(&f) as u32).to_ne_bytes()[..]));
        assert_eq!(attrs[1], (libc::IFLA_IFNAME, &b"eth0\0"[..]));
        assert_eq!(i32::from_ne_bytes(payload[4..8].try_into().unwrap()), 3);
    }

    #[test]
    fn truncated_replies_are_not_read_past_their_end() {
        assert!(split(&[1, 0, 0]).is_empty());
        let mut m = message(libc::RTM_NEWADDR, 0, &[0u8; IFADDR], &[(libc::IFA_ADDRESS, &[1, 2, 3, 4])]);
        m[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(split(&m).is_empty());
        assert_eq!(parse_address(&[0u8; 4]), None);
    }
}
