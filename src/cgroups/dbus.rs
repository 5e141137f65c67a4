//! The few D-Bus calls the systemd driver makes, on systemd's private
//! socket: method calls with basic, array, struct and variant arguments,
//! their replies and errors, and signals. Written here rather than taken
//! from a crate: libdbus (the `dbus` crate) added 0.1 to 0.3 MiB to the
//! peak RSS of every strata command, even those that never talk to systemd
//! (docs/benchmarks.md), and zbus brings an async runtime and threads into
//! a process that forks. The wire format is the D-Bus specification's,
//! little-endian, version 1.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A value to marshal, with its D-Bus type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `s`
    Str(String),
    /// `o`
    Path(String),
    /// `b`
    Bool(bool),
    /// `u`
    U32(u32),
    /// `t`
    U64(u64),
    /// `au`
    U32s(Vec<u32>),
    /// `ay`
    Bytes(Vec<u8>),
    /// `a(ss)`
    StrPairs(Vec<(String, String)>),
    /// `a(sv)`: named values, as unit properties are passed.
    Props(Vec<(String, Arg)>),
    /// `a(sa(sv))`: auxiliary units (strata passes none).
    AuxUnits(Vec<(String, Vec<(String, Arg)>)>),
}

impl Arg {
    fn signature(&self) -> &'static str {
        match self {
            Arg::Str(_) => "s",
            Arg::Path(_) => "o",
            Arg::Bool(_) => "b",
            Arg::U32(_) => "u",
            Arg::U64(_) => "t",
            Arg::U32s(_) => "au",
            Arg::Bytes(_) => "ay",
            Arg::StrPairs(_) => "a(ss)",
            Arg::Props(_) => "a(sv)",
            Arg::AuxUnits(_) => "a(sa(sv))",
        }
    }
}

/// Marshals into a buffer whose offset 0 is the start of the message (the
/// D-Bus alignment rules count from there).
#[derive(Default)]
struct Enc {
    buf: Vec<u8>,
}

impl Enc {
    fn pad(&mut self, align: usize) {
        while !self.buf.len().is_multiple_of(align) {
            self.buf.push(0);
        }
    }
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.pad(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    fn sig(&mut self, s: &str) {
        self.u8(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// An array: its byte length, padding to the element alignment (even
    /// when empty), then the elements.
    fn array(&mut self, elem_align: usize, f: impl FnOnce(&mut Enc)) {
        self.u32(0);
        let at = self.buf.len() - 4;
        self.pad(elem_align);
        let start = self.buf.len();
        f(self);
        let len = (self.buf.len() - start) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    fn arg(&mut self, a: &Arg) {
        match a {
            Arg::Str(s) | Arg::Path(s) => self.str(s),
            Arg::Bool(b) => self.u32(u32::from(*b)),
            Arg::U32(v) => self.u32(*v),
            Arg::U64(v) => self.u64(*v),
            Arg::U32s(v) => self.array(4, |e| v.iter().for_each(|x| e.u32(*x))),
            Arg::Bytes(v) => self.array(1, |e| e.buf.extend_from_slice(v)),
            Arg::StrPairs(v) => self.array(8, |e| {
                for (a, b) in v {
                    e.pad(8);
                    e.str(a);
                    e.str(b);
                }
            }),
            Arg::Props(v) => self.array(8, |e| e.props(v)),
            Arg::AuxUnits(v) => self.array(8, |e| {
                for (name, props) in v {
                    e.pad(8);
                    e.str(name);
                    e.array(8, |e| e.props(props));
                }
            }),
        }
    }
    fn props(&mut self, v: &[(String, Arg)]) {
        for (k, val) in v {
            self.pad(8);
            self.str(k);
            self.sig(val.signature());
            self.arg(val);
        }
    }
}

/// A received message: what the driver looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub kind: u8,
    pub reply_serial: Option<u32>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub signature: String,
    pub body: Vec<u8>,
    /// Where the body starts in the message, for alignment.
    body_at: usize,
}

pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

/// Reads the body's values, as far as they are strings, paths and u32s
/// (what systemd's replies and JobRemoved carry).
pub fn body_values(m: &Message) -> Option<Vec<Arg>> {
    let mut d = Dec { buf: &m.body, pos: 0, base: m.body_at };
    let mut out = Vec::new();
    for c in m.signature.chars() {
        out.push(match c {
            's' => Arg::Str(d.str()?),
            'o' => Arg::Path(d.str()?),
            'u' => Arg::U32(d.u32()?),
            _ => return None,
        });
    }
    Some(out)
}

struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the message.
    base: usize,
}

impl Dec<'_> {
    fn align(&mut self, n: usize) {
        while !(self.base + self.pos).is_multiple_of(n) {
            self.pos += 1;
        }
    }
    fn u8(&mut self) -> Option<u8> {
        let v = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
    fn u32(&mut self) -> Option<u32> {
        self.align(4);
        let b = self.buf.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        let s = self.buf.get(self.pos..self.pos + n)?;
        self.pos += n + 1;
        String::from_utf8(s.to_vec()).ok()
    }
    fn sig(&mut self) -> Option<String> {
        let n = self.u8()? as usize;
        let s = self.buf.get(self.pos..self.pos + n)?;
        self.pos += n + 1;
        String::from_utf8(s.to_vec()).ok()
    }
}

/// Builds a method call: the header, then the body.
pub fn method_call(serial: u32, dest: &str, path: &str, iface: &str, member: &str, args: &[Arg]) -> Vec<u8> {
    let mut body = Enc::default();
    for a in args {
        body.arg(a);
    }
    let signature: String = args.iter().map(Arg::signature).collect();
    let mut m = Enc::default();
    m.buf.extend_from_slice(&[b'l', 1, 0, 1]);
    m.u32(body.buf.len() as u32);
    m.u32(serial);
    m.array(8, |e| {
        let field = |e: &mut Enc, code: u8, sig: &str, v: &str| {
            e.pad(8);
            e.u8(code);
            e.sig(sig);
            if sig == "g" { e.sig(v) } else { e.str(v) }
        };
        field(e, 1, "o", path);
        field(e, 2, "s", iface);
        field(e, 3, "s", member);
        field(e, 6, "s", dest);
        if !signature.is_empty() {
            field(e, 8, "g", &signature);
        }
    });
    m.pad(8);
    m.buf.extend_from_slice(&body.buf);
    m.buf
}

/// Parses one whole message (as `read_message` delimits it).
pub fn parse(buf: &[u8]) -> Option<Message> {
    if buf.len() < 16 || buf[0] != b'l' {
        return None;
    }
    let body_len = u32::from_le_bytes(buf[4..8].try_into().ok()?) as usize;
    let fields_len = u32::from_le_bytes(buf[12..16].try_into().ok()?) as usize;
    let mut m = Message { kind: buf[1], ..Default::default() };
    let mut d = Dec { buf: buf.get(16..16 + fields_len)?, pos: 0, base: 16 };
    while d.pos < fields_len {
        d.align(8);
        let code = d.u8()?;
        let sig = d.sig()?;
        let (s, u) = match sig.as_str() {
            "s" | "o" => (Some(d.str()?), None),
            "g" => (Some(d.sig()?), None),
            "u" => (None, Some(d.u32()?)),
            _ => return None,
        };
        match code {
            3 => m.member = s,
            4 => m.error_name = s,
            5 => m.reply_serial = u,
            8 => m.signature = s.unwrap_or_default(),
            _ => {}
        }
    }
    m.body_at = (16 + fields_len).next_multiple_of(8);
    m.body = buf.get(m.body_at..m.body_at + body_len)?.to_vec();
    Some(m)
}

/// A connection to a D-Bus peer (systemd's private socket: no bus daemon,
/// so no Hello and no match rules).
pub struct Conn {
    stream: BufReader<UnixStream>,
    serial: u32,
}

impl Conn {
    /// Connects and authenticates as this process's uid (EXTERNAL).
    pub fn connect(path: &Path) -> std::io::Result<Conn> {
        let mut s = UnixStream::connect(path)?;
        let uid = nix::unistd::getuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        s.write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line)?;
        if !line.starts_with("OK ") {
            return Err(std::io::Error::other(format!("authentication refused: {}", line.trim())));
        }
        r.get_mut().write_all(b"BEGIN\r\n")?;
        let mut conn = Conn { stream: r, serial: 0 };
        conn.settle()?;
        Ok(conn)
    }

    /// Waits until the peer answers a Ping. systemd (252, seen on a cgroup
    /// v1 host) can leave a call that reached it together with BEGIN unread
    /// until more bytes arrive: a call made right away then waited 30 s for
    /// its answer. Pings are sent until one is answered, each new one waking
    /// the peer; from then on the connection is known to be read.
    fn settle(&mut self) -> std::io::Result<()> {
        for _ in 0..100 {
            self.send("org.freedesktop.systemd1", "/", "org.freedesktop.DBus.Peer", "Ping", &[])?;
            while let Some(m) = self.recv(Duration::from_millis(20))? {
                if m.reply_serial.is_some() {
                    return Ok(());
                }
            }
        }
        Err(std::io::Error::other("no answer to Ping"))
    }

    /// Sends a call and returns its serial.
    pub fn send(&mut self, dest: &str, path: &str, iface: &str, member: &str, args: &[Arg]) -> std::io::Result<u32> {
        self.serial += 1;
        let msg = method_call(self.serial, dest, path, iface, member, args);
        self.stream.get_mut().write_all(&msg)?;
        Ok(self.serial)
    }

    /// The next message; `None` when `timeout` passes first.
    pub fn recv(&mut self, timeout: Duration) -> std::io::Result<Option<Message>> {
        self.stream.get_mut().set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut head = [0u8; 16];
        match self.stream.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Ok(None),
            Err(e) => return Err(e),
        }
        let bad = || std::io::Error::other("malformed D-Bus message");
        if head[0] != b'l' {
            return Err(bad());
        }
        let body_len = u32::from_le_bytes(head[4..8].try_into().map_err(|_| bad())?) as usize;
        let fields_len = u32::from_le_bytes(head[12..16].try_into().map_err(|_| bad())?) as usize;
        let total = (16 + fields_len).next_multiple_of(8) + body_len;
        if total > 1 << 26 {
            return Err(bad());
        }
        let mut buf = head.to_vec();
        buf.resize(total, 0);
        self.stream.get_mut().set_read_timeout(Some(Duration::from_secs(10)))?;
        self.stream.read_exact(&mut buf[16..])?;
        parse(&buf).map(Some).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_round_trips_through_the_parser() {
        let args = [
            Arg::Str("x.scope".into()),
            Arg::Str("fail".into()),
            Arg::Props(vec![
                ("PIDs".into(), Arg::U32s(vec![7])),
                ("MemoryMax".into(), Arg::U64(1 << 20)),
                ("Delegate".into(), Arg::Bool(true)),
            ]),
            Arg::AuxUnits(vec![]),
        ];
        let msg = method_call(
            3,
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "StartTransientUnit",
            &args,
        );
        let m = parse(&msg).unwrap();
        assert_eq!(m.kind, 1);
        assert_eq!(m.member.as_deref(), Some("StartTransientUnit"));
        assert_eq!(m.signature, "ssa(sv)a(sa(sv))");
        assert_eq!(m.body_at % 8, 0);
        // The body as the specification lays it out, byte for byte.
        let mut want: Vec<u8> = Vec::new();
        let s = |w: &mut Vec<u8>, v: &str| {
            while !w.len().is_multiple_of(4) {
                w.push(0);
            }
            w.extend_from_slice(&(v.len() as u32).to_le_bytes());
            w.extend_from_slice(v.as_bytes());
            w.push(0);
        };
        let pad = |w: &mut Vec<u8>, n: usize| {
            while !w.len().is_multiple_of(n) {
                w.push(0);
            }
        };
        s(&mut want, "x.scope");
        s(&mut want, "fail");
        pad(&mut want, 4);
        let len_at = want.len();
        want.extend_from_slice(&[0; 4]);
        pad(&mut want, 8);
        let start = want.len();
        s(&mut want, "PIDs");
        want.extend_from_slice(&[2, b'a', b'u', 0]);
        pad(&mut want, 4);
        want.extend_from_slice(&4u32.to_le_bytes());
        want.extend_from_slice(&7u32.to_le_bytes());
        pad(&mut want, 8);
        s(&mut want, "MemoryMax");
        want.extend_from_slice(&[1, b't', 0]);
        pad(&mut want, 8);
        want.extend_from_slice(&(1u64 << 20).to_le_bytes());
        pad(&mut want, 8);
        s(&mut want, "Delegate");
        want.extend_from_slice(&[1, b'b', 0]);
        pad(&mut want, 4);
        want.extend_from_slice(&1u32.to_le_bytes());
        let n = (want.len() - start) as u32;
        want[len_at..len_at + 4].copy_from_slice(&n.to_le_bytes());
        // The empty aux array: length 0, then padding to 8 all the same.
        pad(&mut want, 4);
        want.extend_from_slice(&0u32.to_le_bytes());
        pad(&mut want, 8);
        assert_eq!(m.body, want);
    }

    #[test]
    fn replies_errors_and_signals_are_read() {
        // A JobRemoved signal (uoss), built as systemd would send it.
        let mut e = Enc::default();
        e.buf.extend_from_slice(&[b'l', SIGNAL, 1, 1]);
        e.u32(0);
        e.u32(9);
        e.array(8, |e| {
            e.pad(8);
            e.u8(3);
            e.sig("s");
            e.str("JobRemoved");
            e.pad(8);
            e.u8(8);
            e.sig("g");
            e.sig("uoss");
        });
        e.pad(8);
        let body_at = e.buf.len();
        e.u32(42);
        e.str("/org/freedesktop/systemd1/job/42");
        e.str("x.scope");
        e.str("done");
        let body_len = (e.buf.len() - body_at) as u32;
        e.buf[4..8].copy_from_slice(&body_len.to_le_bytes());
        let m = parse(&e.buf).unwrap();
        assert_eq!((m.kind, m.member.as_deref()), (SIGNAL, Some("JobRemoved")));
        assert_eq!(
            body_values(&m).unwrap(),
            vec![Arg::U32(42), Arg::Path("/org/freedesktop/systemd1/job/42".into()), Arg::Str("x.scope".into()), Arg::Str("done".into())]
        );
        // Truncated or foreign-endian messages are refused, not misread.
        assert!(parse(&e.buf[..e.buf.len() - 3]).is_none());
        let mut big = e.buf.clone();
        big[0] = b'B';
        assert!(parse(&big).is_none());
    }
}
