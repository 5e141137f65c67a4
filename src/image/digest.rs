//! Content addresses: the `sha256:<hex>` digests of blobs and diffs, chain
//! ids, and the hashing reader/writer that compute them while data streams
//! through (a layer is never read twice just to check it).

use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use super::ImageError;

/// A checked `sha256:<64 lowercase hex>` digest. Digests come from
/// untrusted manifests and name files (`blobs/sha256/<hex>`,
/// `layers/<hex>`), so nothing else is ever accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, ImageError> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| ImageError::BadDigest(s.to_string()))?;
        let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok { Ok(Digest(s.to_string())) } else { Err(ImageError::BadDigest(s.to_string())) }
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest::from_sha(Sha256::digest(data).as_slice())
    }

    fn from_sha(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", to_hex(bytes)))
    }

    /// The 64 hex characters, used as a file name.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// The chain ids of a stack of diff ids, bottom first (OCI image spec):
/// `chain(1) = diff(1)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The short name of a layer under `<store>/l/`: 26 characters of base32
/// derived from the chain id, so that 100+ lowers fit in one mount option
/// page and a lost link can always be recreated with the same name.
pub fn short_id(chain: &Digest) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let sum = Sha256::digest(format!("strata-link {chain}").as_bytes());
    let mut out = String::with_capacity(26);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in sum.as_slice() {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 && out.len() < 26 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    out
}

/// A reader that hashes and counts everything read through it.
pub struct HashReader<R> {
    inner: R,
    sha: Sha256,
    count: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader { inner, sha: Sha256::new(), count: 0 }
    }

    /// Reads `inner` to its end (the part a decoder or tar parser did not
    /// need still belongs to the blob), then returns it with (digest, bytes
    /// read).
    pub fn finish(mut self) -> io::Result<(R, Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.inner, Digest::from_sha(self.sha.finalize().as_slice()), self.count))
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts everything written through it.
pub struct HashWriter<W> {
    inner: W,
    sha: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter { inner, sha: Sha256::new(), count: 0 }
    }

    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_sha(self.sha.finalize().as_slice()), self.count)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(hex_char: char) -> Digest {
        Digest::parse(&format!("sha256:{}", hex_char.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn parse_refuses_anything_but_sha256_hex() {
        for bad in [
            "",
            "sha256:",
            "sha512:aa",
            "sha256:../../etc/passwd",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}/", "a".repeat(63)),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(d('a').hex(), "a".repeat(64));
    }

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(Digest::of(b"").as_str(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let (a, b, c) = (d('a'), d('b'), d('c'));
        let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(ids[0], a);
        let ab = Digest::of(format!("{a} {b}").as_bytes());
        assert_eq!(ids[1], ab);
        assert_eq!(ids[2], Digest::of(format!("{ab} {c}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn chain_id_known_vector() {
        // Computed independently: printf 'sha256:aaa…a sha256:bbb…b' | sha256sum
        let ids = chain_ids(&[d('a'), d('b')]);
        let text = format!("sha256:{} sha256:{}", "a".repeat(64), "b".repeat(64));
        assert_eq!(ids[1], Digest::of(text.as_bytes()));
        assert_eq!(ids[1].as_str(), KNOWN_AB);
    }

    const KNOWN_AB: &str = "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c";

    #[test]
    fn short_ids_are_26_base32_chars_and_stable() {
        let s = short_id(&d('a'));
        assert_eq!(s.len(), 26);
        assert!(s.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        assert_eq!(s, short_id(&d('a')));
        assert_ne!(s, short_id(&d('b')));
    }

    #[test]
    fn hash_reader_counts_the_whole_stream() {
        let data = vec![7u8; 100_000];
        let mut r = HashReader::new(&data[..]);
        let mut first = [0u8; 10];
        r.read_exact(&mut first).unwrap();
        let (_, digest, n) = r.finish().unwrap();
        assert_eq!(n, 100_000);
        assert_eq!(digest, Digest::of(&data));
    }
}
