//! Layer compression: gzip, zstd or none, told apart by the first bytes, never by a name.
//!
//! Reference: RFC 1952 (gzip member header `1f 8b`), RFC 8878 (zstd frame magic
//! `28 b5 2f fd`). A layer's media type says how it *should* be compressed; boxkit checks the
//! bytes, so a mislabeled layer or a tar fed on stdin still decodes.
//!
//! Decompression runs on its own thread ([`pipelined`]), handing buffers to the reader through
//! a bounded channel: memory stays a few MiB whatever the layer size, and the two cores share
//! the work (inflate on one, hashing and file creation on the other).

use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Look at the first bytes without consuming them.
    pub fn sniff<R: BufRead>(r: &mut R) -> io::Result<Compression> {
        let head = r.fill_buf()?;
        Ok(if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// A reader of the decompressed bytes of `r`, whatever its compression.
pub fn decoder<R: Read + Send + 'static>(r: R) -> io::Result<(Compression, Box<dyn Read + Send>)> {
    let mut r = BufReader::with_capacity(128 << 10, r);
    let c = Compression::sniff(&mut r)?;
    let out: Box<dyn Read + Send> = match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    };
    Ok((c, out))
}

const CHUNK: usize = 256 << 10;
const DEPTH: usize = 8;

/// Run `r` on a thread of its own; the returned reader yields the same bytes.
/// At most `DEPTH` chunks of `CHUNK` bytes are in flight.
pub fn pipelined<R: Read + Send + 'static>(mut r: R) -> PipeReader {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
    thread::spawn(move || loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        // Fill the chunk (decoders often return little at a time).
        while filled < CHUNK {
            match r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        buf.truncate(filled);
        let done = filled == 0;
        if tx.send(Ok(buf)).is_err() || done {
            return;
        }
    });
    PipeReader { rx, cur: Vec::new(), pos: 0, eof: false }
}

pub struct PipeReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.eof {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(buf)) => {
                    if buf.is_empty() {
                        self.eof = true;
                    }
                    self.cur = buf;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::new(io::ErrorKind::BrokenPipe, "decompression thread ended")),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(c: Compression) {
        let data: Vec<u8> = (0..1_000_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let packed = match c {
            Compression::None => data.clone(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(&data[..], 1).unwrap(),
        };
        let (got_c, r) = decoder(io::Cursor::new(packed)).unwrap();
        assert_eq!(got_c, c);
        let mut out = Vec::new();
        pipelined(r).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn sniffs_and_decodes_every_kind() {
        roundtrip(Compression::None);
        roundtrip(Compression::Gzip);
        roundtrip(Compression::Zstd);
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&vec![7u8; 100_000]).unwrap();
        let mut packed = e.finish().unwrap();
        packed.truncate(packed.len() / 2);
        let (_, r) = decoder(io::Cursor::new(packed)).unwrap();
        assert!(pipelined(r).read_to_end(&mut Vec::new()).is_err());
    }
}
