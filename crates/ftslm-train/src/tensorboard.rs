//! TensorBoard event files, written directly.
//!
//! The one crate that writes them (tensorboard-rs) is unmaintained and pulls in
//! protobuf 2 (with a published advisory) and an old `image`; scalars need only
//! three small protobuf messages, so they are encoded here by hand:
//!
//! - record framing (TFRecord): `u64 length | u32 masked crc32c(length) | data |
//!   u32 masked crc32c(data)`, little-endian, where masked(c) =
//!   ((c >> 15) | (c << 17)) + 0xa282ead8;
//! - `Event { double wall_time = 1; int64 step = 2; string file_version = 3;
//!   Summary summary = 5; }`, `Summary { repeated Value value = 1; }`,
//!   `Summary.Value { string tag = 1; float simple_value = 2; }`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::atomic::write_atomic;
use crate::error::TrainError;
use crate::metrics::MetricRecord;

const MASK_DELTA: u32 = 0xa282_ead8;

pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// One TFRecord around `data`.
pub fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// Splits a file into record payloads, checking both CRCs of each; `Err` names
/// the offset of the first bad record.
pub fn read_records(bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let head = bytes
            .get(at..at + 12)
            .ok_or(format!("truncated header at byte {at}"))?;
        let (len_bytes, len_crc) = head.split_at(8);
        if masked_crc(len_bytes).to_le_bytes() != len_crc {
            return Err(format!("bad length CRC at byte {at}"));
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(len_bytes);
        let len = usize::try_from(u64::from_le_bytes(len8))
            .map_err(|_| format!("huge record at byte {at}"))?;
        let body_end = len
            .checked_add(at + 12)
            .filter(|&e| e <= bytes.len().saturating_sub(4))
            .ok_or(format!("truncated record at byte {at}"))?;
        let data = &bytes[at + 12..body_end];
        if masked_crc(data).to_le_bytes() != bytes[body_end..body_end + 4] {
            return Err(format!("bad data CRC at byte {at}"));
        }
        out.push(data);
        at = body_end + 4;
    }
    Ok(out)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(field: u64, data: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

fn event_header(wall_time: f64, step: u64, out: &mut Vec<u8>) {
    out.push(1 << 3 | 1);
    out.extend_from_slice(&wall_time.to_le_bytes());
    if step != 0 {
        out.push(2 << 3);
        varint(step, out);
    }
}

/// The first event of every file, which TensorBoard uses to recognise it.
pub fn file_version_event(wall_time: f64) -> Vec<u8> {
    let mut out = Vec::new();
    event_header(wall_time, 0, &mut out);
    bytes_field(3, b"brain.Event:2", &mut out);
    out
}

/// An event holding scalar summaries at `step`.
pub fn scalars_event(wall_time: f64, step: u64, scalars: &[(&str, f64)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, value) in scalars {
        let mut v = Vec::new();
        bytes_field(1, tag.as_bytes(), &mut v);
        v.push(2 << 3 | 5);
        v.extend_from_slice(&(*value as f32).to_le_bytes());
        bytes_field(1, &v, &mut summary);
    }
    let mut out = Vec::new();
    event_header(wall_time, step, &mut out);
    bytes_field(5, &summary, &mut out);
    out
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "localhost".to_string())
}

/// Appends scalar events to one file under `logs/`. A record is written with a
/// single `write_all`, so a kill leaves at most a truncated last record, which
/// TensorBoard ignores; on resume the file is rebuilt from the history anyway.
pub struct EventWriter {
    path: PathBuf,
    file: File,
}

impl EventWriter {
    /// Replaces the event files in `dir` with one holding `history`, then keeps
    /// it open for appending. Starting from the checkpointed history means a
    /// resumed run never shows steps that the checkpoint did not reach.
    pub fn create(dir: &Path, history: &[MetricRecord]) -> Result<EventWriter, TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io("cannot create", dir, e))?;
        let old = std::fs::read_dir(dir).map_err(|e| TrainError::io("cannot read", dir, e))?;
        let mut stale = Vec::new();
        for entry in old {
            let entry = entry.map_err(|e| TrainError::io("cannot read", dir, e))?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
            {
                stale.push(entry.path());
            }
        }
        let now = now_seconds();
        let name = format!(
            "events.out.tfevents.{}.{}.{}.0",
            now as u64,
            hostname(),
            std::process::id()
        );
        let path = dir.join(name);
        let mut bytes = frame_record(&file_version_event(now));
        for r in history {
            bytes.extend(frame_record(&scalars_event(now, r.step, &r.scalars())));
        }
        write_atomic(&path, &bytes)?;
        for p in stale.into_iter().filter(|p| *p != path) {
            std::fs::remove_file(&p)
                .map_err(|e| TrainError::io("cannot remove old event file", &p, e))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io("cannot open", &path, e))?;
        Ok(EventWriter { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, record: &MetricRecord) -> Result<(), TrainError> {
        let bytes = frame_record(&scalars_event(
            now_seconds(),
            record.step,
            &record.scalars(),
        ));
        self.file
            .write_all(&bytes)
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io("cannot append to", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow_reference() {
        // crc32c("123456789") = 0xE3069283 (the CRC-32C check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let expected = 0xE306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc(b"123456789"), expected);
    }

    #[test]
    fn records_frame_and_unframe_with_checked_crcs() {
        let payloads: [&[u8]; 3] = [b"", b"abc", &[7u8; 300]];
        let mut file = Vec::new();
        for p in payloads {
            file.extend(frame_record(p));
        }
        assert_eq!(&file[..8], &0u64.to_le_bytes());
        assert_eq!(file.len(), 3 * 16 + 3 + 300);
        assert_eq!(read_records(&file).unwrap(), payloads.to_vec());
        let mut corrupt = file.clone();
        corrupt[12 + 16 + 1] ^= 1; // a byte of "abc"
        assert!(read_records(&corrupt).unwrap_err().contains("bad data CRC"));
        assert!(read_records(&file[..file.len() - 1])
            .unwrap_err()
            .contains("truncated"));
    }

    #[test]
    fn scalar_event_encodes_the_protobuf_fields() {
        let ev = scalars_event(1.5, 300, &[("eval/loss", 0.25)]);
        let mut expect = vec![0x09];
        expect.extend(1.5f64.to_le_bytes());
        expect.extend([0x10, 0xac, 0x02]); // step 300 as a varint
        let mut value = vec![0x0a, 9];
        value.extend(b"eval/loss");
        value.push(0x15);
        value.extend(0.25f32.to_le_bytes());
        expect.extend([0x2a, value.len() as u8 + 2, 0x0a, value.len() as u8]);
        expect.extend(value);
        assert_eq!(ev, expect);
    }
}
