//! The write-ahead log: numbered segment files of checksummed records.
//!
//! ```text
//! segment  = magic "SCWAL001" record*
//! record   = len:u32le crc:u32le kind:u8 payload[len-1]
//! ```
//! `len` counts `kind` and `payload`; `crc` is CRC-32 (IEEE) of `kind` and
//! `payload`. A record whose length runs past the end of the file, or whose
//! checksum does not match, marks a torn tail: [`read_segment`] returns the
//! records before it and the offset where the valid part ends, and
//! [`repair_segment`] truncates the file there. A torn tail is the expected
//! result of a crash during a write, so it is logged and not fatal.
//!
//! Segments are named `{seq:020}.wal` so that lexical order is log order.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoResultExt, Result};

/// File magic at the start of every segment.
pub const MAGIC: &[u8; 8] = b"SCWAL001";
/// Record kind: a snappy-compressed remote-write `WriteRequest`.
pub const KIND_WRITE_REQUEST: u8 = 1;
/// Largest record accepted when reading (guards against a corrupt length).
pub const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

/// Path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Lists segment sequence numbers in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in rd {
        let entry = entry.with_path(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".wal")
            && let Ok(seq) = stem.parse::<u64>()
        {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Appends one framed record to `buf`.
pub fn encode_record(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let len = (payload.len() + 1) as u32;
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(payload);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&h.finalize().to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
}

/// One record read back from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Record kind.
    pub kind: u8,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// Result of reading a segment.
#[derive(Debug)]
pub struct SegmentContents {
    /// Valid records in order.
    pub records: Vec<Record>,
    /// Byte offset where the valid prefix ends.
    pub valid_len: u64,
    /// Total file length.
    pub file_len: u64,
    /// Why reading stopped early, if it did.
    pub torn: Option<String>,
}

/// Reads every valid record of a segment file, stopping at the first torn or
/// corrupt record.
pub fn read_segment(path: &Path) -> Result<SegmentContents> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .with_path(path)?;
    Ok(parse_segment(&data))
}

/// Parses segment bytes (see [`read_segment`]).
pub fn parse_segment(data: &[u8]) -> SegmentContents {
    let file_len = data.len() as u64;
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        return SegmentContents {
            records: Vec::new(),
            valid_len: 0,
            file_len,
            torn: Some("missing or bad segment header".into()),
        };
    }
    let mut pos = MAGIC.len();
    let mut records = Vec::new();
    let mut torn = None;
    while pos < data.len() {
        if data.len() - pos < 9 {
            torn = Some(format!("truncated record header at offset {pos}"));
            break;
        }
        let len =
            u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        if len == 0 || len > MAX_RECORD_BYTES {
            torn = Some(format!("invalid record length {len} at offset {pos}"));
            break;
        }
        let body_start = pos + 8;
        if data.len() - body_start < len {
            torn = Some(format!(
                "record at offset {pos} needs {len} bytes, only {} remain",
                data.len() - body_start
            ));
            break;
        }
        let body = &data[body_start..body_start + len];
        if crc32fast::hash(body) != crc {
            torn = Some(format!("checksum mismatch in record at offset {pos}"));
            break;
        }
        records.push(Record {
            kind: body[0],
            payload: body[1..].to_vec(),
        });
        pos = body_start + len;
    }
    SegmentContents {
        records,
        valid_len: if torn.is_some() { pos as u64 } else { file_len },
        file_len,
        torn,
    }
}

/// Truncates a segment to its valid prefix (or rewrites a bad header).
pub fn repair_segment(path: &Path, contents: &SegmentContents) -> Result<()> {
    if contents.valid_len == 0 {
        let mut f = File::create(path).with_path(path)?;
        f.write_all(MAGIC).with_path(path)?;
        f.sync_all().with_path(path)?;
        return Ok(());
    }
    let f = OpenOptions::new().write(true).open(path).with_path(path)?;
    f.set_len(contents.valid_len).with_path(path)?;
    f.sync_all().with_path(path)
}

/// An open segment being appended to.
pub struct SegmentWriter {
    /// Sequence number.
    pub seq: u64,
    path: PathBuf,
    file: File,
    len: u64,
}

impl SegmentWriter {
    /// Creates segment `seq` in `dir` (fsyncing the directory so the new file
    /// survives a crash).
    pub fn create(dir: &Path, seq: u64) -> Result<Self> {
        let path = segment_path(dir, seq);
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .with_path(&path)?;
        file.write_all(MAGIC).with_path(&path)?;
        file.sync_all().with_path(&path)?;
        sync_dir(dir)?;
        Ok(Self {
            seq,
            path,
            file,
            len: MAGIC.len() as u64,
        })
    }

    /// Writes already-framed bytes and fsyncs (data only) before returning.
    pub fn append_and_sync(&mut self, framed: &[u8]) -> Result<()> {
        self.file.write_all(framed).with_path(&self.path)?;
        self.file.sync_data().with_path(&self.path)?;
        self.len += framed.len() as u64;
        Ok(())
    }

    /// Bytes in the segment, header included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the segment holds no record.
    pub fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64
    }

    /// Path of the segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// fsyncs a directory so renames and new files in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).with_path(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_with(records: &[(u8, &[u8])]) -> Vec<u8> {
        let mut buf = MAGIC.to_vec();
        for (k, p) in records {
            encode_record(&mut buf, *k, p);
        }
        buf
    }

    #[test]
    fn reads_back_records() {
        let data = segment_with(&[(1, b"hello"), (1, b""), (2, b"world")]);
        let c = parse_segment(&data);
        assert!(c.torn.is_none());
        assert_eq!(c.records.len(), 3);
        assert_eq!(
            c.records[2],
            Record {
                kind: 2,
                payload: b"world".to_vec()
            }
        );
        assert_eq!(c.valid_len, data.len() as u64);
    }

    #[test]
    fn every_truncation_keeps_the_complete_prefix() {
        let data = segment_with(&[(1, b"first record"), (1, b"second record")]);
        let first_end = MAGIC.len() + 8 + 1 + b"first record".len();
        for cut in MAGIC.len()..data.len() {
            let c = parse_segment(&data[..cut]);
            let want = if cut >= first_end { 1 } else { 0 };
            assert_eq!(c.records.len(), want, "cut at {cut}");
            assert!(c.torn.is_some() || cut == MAGIC.len() || cut == first_end);
            assert_eq!(
                c.valid_len as usize,
                if want == 1 { first_end } else { MAGIC.len() }
            );
        }
    }

    #[test]
    fn detects_flipped_bits() {
        let mut data = segment_with(&[(1, b"abc"), (1, b"def")]);
        let n = data.len();
        data[n - 1] ^= 0x40;
        let c = parse_segment(&data);
        assert_eq!(c.records.len(), 1);
        assert!(c.torn.as_deref().is_some_and(|t| t.contains("checksum")));
    }

    #[test]
    fn repair_truncates_torn_tail_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = SegmentWriter::create(dir.path(), 7).expect("create");
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, b"durable");
        w.append_and_sync(&buf).expect("append");
        let path = w.path().to_path_buf();
        drop(w);
        // Simulate a crash in the middle of the next write.
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&[50, 0, 0, 0, 1, 2]).expect("write");
        drop(f);
        let c = read_segment(&path).expect("read");
        assert_eq!(c.records.len(), 1);
        assert!(c.torn.is_some());
        repair_segment(&path, &c).expect("repair");
        let c2 = read_segment(&path).expect("read again");
        assert!(c2.torn.is_none());
        assert_eq!(c2.records, c.records);
        assert_eq!(list_segments(dir.path()).expect("list"), vec![7]);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(mut data in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = parse_segment(&data);
            let mut with_magic = MAGIC.to_vec();
            with_magic.append(&mut data);
            let _ = parse_segment(&with_magic);
        }
    }
}
