//! A layer blob as the tar stream it holds: decompressed (gzip, zstd or
//! none, told by the media type or the bytes), bounded (`image::guard`)
//! and hashed on the way, both the blob (its digest) and the tar (its
//! diff_id), in place or on a thread of its own (`Stream`, readahead).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

use crate::image::digest::{Digest, HashReader};
use crate::image::guard;
use crate::image::source::BlobSource;

pub(super) const READ_BUF: usize = 1 << 20;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the media type; an unknown or generic one falls back to the
    /// blob's first bytes.
    pub fn detect(media_type: &str, head: &[u8]) -> Compression {
        if media_type.ends_with("+gzip") || media_type.ends_with(".gzip") {
            Compression::Gzip
        } else if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
            Compression::Zstd
        } else if media_type.ends_with(".tar") {
            Compression::None
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

type Compressed = BufReader<HashReader<std::io::Take<File>>>;

// One per layer being read: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Decoder {
    None(Compressed),
    Gzip(flate2::bufread::MultiGzDecoder<Compressed>),
    Zstd(zstd::stream::read::Decoder<'static, Compressed>),
}

impl Decoder {
    fn new(kind: Compression, r: Compressed) -> io::Result<Decoder> {
        Ok(match kind {
            Compression::None => Decoder::None(r),
            Compression::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(r)),
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(r)?),
        })
    }

    fn into_inner(self) -> Compressed {
        match self {
            Decoder::None(r) => r,
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.finish(),
        }
    }
}

impl Read for Decoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::None(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// The blob's decompressed stream, read through `guard::capped`: at most
/// `size` + 1 bytes of the blob file.
pub(super) fn open_decoder(file: File, media_type: &str, limit: u64) -> io::Result<Decoder> {
    let mut compressed = BufReader::with_capacity(READ_BUF, HashReader::new(file.take(limit)));
    let kind = Compression::detect(media_type, compressed.fill_buf()?);
    Decoder::new(kind, compressed)
}

/// The uncompressed tar stream of a layer blob (no digest checks: for
/// reading a few files, as `bundle` does).
pub fn open_layer_stream(blob: &BlobSource, media_type: &str, size: Option<u64>) -> io::Result<impl Read + use<>> {
    let (file, _) = blob.open()?;
    Ok(guard::TarGuard::new(open_decoder(file, media_type, blob.read_limit(size))?))
}

/// The uncompressed, guarded, hashed tar stream of a blob: read in place,
/// or inflated ahead on a thread of its own (`readahead`), a few chunks
/// ahead of the tar reader (bounded: 4 chunks of 256 KiB).
// One per layer being read: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Stream {
    Here(HashReader<guard::TarGuard<Decoder>>),
    Ahead(Ahead),
}

pub(super) struct Ahead {
    rx: Option<std::sync::mpsc::Receiver<io::Result<Vec<u8>>>>,
    chunk: Vec<u8>,
    at: usize,
    done: Option<std::thread::JoinHandle<io::Result<Digests>>>,
}

/// (diff_id, uncompressed size) and (digest, blob size).
pub(super) type Digests = ((Digest, u64), (Digest, u64));

const AHEAD_CHUNK: usize = 256 << 10;

fn finish_hashes(r: HashReader<guard::TarGuard<Decoder>>) -> io::Result<Digests> {
    let (guarded, diff_id, n) = r.finish()?;
    let (_, digest, size) = guarded.into_inner().into_inner().into_inner().finish()?;
    Ok(((diff_id, n), (digest, size)))
}

impl Stream {
    pub(super) fn new(r: HashReader<guard::TarGuard<Decoder>>, readahead: bool) -> Stream {
        if !readahead {
            return Stream::Here(r);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
        let done = std::thread::spawn(move || {
            let mut r = r;
            loop {
                let mut chunk = vec![0u8; AHEAD_CHUNK];
                match r.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        chunk.truncate(n);
                        if tx.send(Ok(chunk)).is_err() {
                            // The reader stopped (an error there): so do we.
                            return Err(io::Error::other("the tar reader stopped"));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let (kind, msg) = (e.kind(), e.to_string());
                        let _ = tx.send(Err(e));
                        return Err(io::Error::new(kind, msg));
                    }
                }
            }
            finish_hashes(r)
        });
        Stream::Ahead(Ahead { rx: Some(rx), chunk: Vec::new(), at: 0, done: Some(done) })
    }

    /// Reads the rest (the tar reader stops at the end-of-archive blocks;
    /// the digests cover the whole blob) and returns the digests.
    pub(super) fn finish(self) -> io::Result<Digests> {
        match self {
            Stream::Here(r) => finish_hashes(r),
            Stream::Ahead(mut a) => {
                for chunk in a.rx.take().into_iter().flat_map(|r| r.into_iter()) {
                    chunk?;
                }
                let handle = a.done.take().expect("joined once");
                handle.join().unwrap_or_else(|_| Err(io::Error::other("the inflating thread panicked")))
            }
        }
    }
}

impl Drop for Ahead {
    /// A reader that stopped early (an error) stops the inflating thread:
    /// its next send fails once the channel is gone. It is joined, so no
    /// thread outlives the unpack.
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(h) = self.done.take() {
            let _ = h.join();
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Here(r) => r.read(buf),
            Stream::Ahead(a) => {
                if a.at == a.chunk.len() {
                    let Some(rx) = &a.rx else { return Ok(0) };
                    match rx.recv() {
                        Ok(next) => {
                            a.chunk = next?;
                            a.at = 0;
                        }
                        Err(_) => return Ok(0),
                    }
                }
                let n = buf.len().min(a.chunk.len() - a.at);
                buf[..n].copy_from_slice(&a.chunk[a.at..a.at + n]);
                a.at += n;
                Ok(n)
            }
        }
    }
}
