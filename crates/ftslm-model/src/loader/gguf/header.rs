//! What candle's GGUF reader trusts and must not: `general.alignment`.
//! candle divides by it, so a file declaring 0 panicked the process (a
//! crafted 166-byte file was enough). This reads the header's metadata
//! itself — every length checked against the file's size — and refuses an
//! alignment that is not a positive power of two, before candle sees it.

use std::io::{BufReader, Read, Seek, SeekFrom};

/// The metadata key candle aligns the tensor data with.
const ALIGNMENT_KEY: &str = "general.alignment";
/// Deeper nesting than this is not a model's metadata.
const MAX_ARRAY_DEPTH: usize = 4;

/// Checks `general.alignment` in the header of the GGUF file behind
/// `reader` (`len` bytes long); Err(problem) names what is wrong.
pub(super) fn check_alignment<R: Read + Seek>(reader: R, len: u64) -> Result<(), String> {
    let mut header = Header {
        reader: BufReader::new(reader),
        len,
        wide: true,
    };
    header.reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut magic = [0u8; 4];
    header.read_exact(&mut magic)?;
    if &magic != b"GGUF" {
        return Err("it does not start with the GGUF magic".into());
    }
    let version = header.u32()?;
    header.wide = version >= 2;
    let _tensors = header.length()?;
    let entries = header.length()?;
    for _ in 0..entries {
        let key = header.string()?;
        let kind = header.u32()?;
        if key == ALIGNMENT_KEY {
            let alignment = match kind {
                0 | 1 => u64::from(header.u8()?),
                2 | 3 => u64::from(header.u16()?),
                4 | 5 => u64::from(header.u32()?),
                10 | 11 => header.u64()?,
                _ => return Err(format!("{ALIGNMENT_KEY} is not an integer (type {kind})")),
            };
            if alignment == 0 || !alignment.is_power_of_two() {
                return Err(format!(
                    "{ALIGNMENT_KEY} is {alignment}; it must be a power of two (GGUF's default is 32)"
                ));
            }
            return Ok(());
        }
        header.skip_value(kind, 0)?;
    }
    Ok(())
}

struct Header<R> {
    reader: BufReader<R>,
    len: u64,
    /// GGUF v2 and later count in u64, v1 in u32.
    wide: bool,
}

impl<R: Read + Seek> Header<R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.reader
            .read_exact(buf)
            .map_err(|_| "the header ends early; the file is truncated or not GGUF".to_string())
    }
    fn u8(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b)?;
        Ok(b[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let mut b = [0u8; 2];
        self.read_exact(&mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn length(&mut self) -> Result<u64, String> {
        if self.wide {
            self.u64()
        } else {
            self.u32().map(u64::from)
        }
    }
    /// Moves `count` bytes on, refusing to pass the end of the file.
    fn skip(&mut self, count: u64) -> Result<(), String> {
        let at = self.reader.stream_position().map_err(io)?;
        if at.checked_add(count).is_none_or(|end| end > self.len) {
            return Err("a metadata value runs past the end of the file; it is truncated (download it again) or not GGUF".into());
        }
        self.reader.seek_relative(count as i64).map_err(io)
    }
    fn string(&mut self) -> Result<String, String> {
        let len = self.length()?;
        let at = self.reader.stream_position().map_err(io)?;
        if at.checked_add(len).is_none_or(|end| end > self.len) {
            return Err("a metadata string runs past the end of the file; it is truncated (download it again) or not GGUF".into());
        }
        let mut bytes = vec![0u8; len as usize];
        self.read_exact(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
    fn skip_value(&mut self, kind: u32, depth: usize) -> Result<(), String> {
        match kind {
            0 | 1 | 7 => self.skip(1),
            2 | 3 => self.skip(2),
            4..=6 => self.skip(4),
            10..=12 => self.skip(8),
            8 => {
                let len = self.length()?;
                self.skip(len)
            }
            9 if depth < MAX_ARRAY_DEPTH => {
                let element = self.u32()?;
                let count = self.length()?;
                match element {
                    0 | 1 | 7 => self.skip(count),
                    2 | 3 => self.skip(count.saturating_mul(2)),
                    4..=6 => self.skip(count.saturating_mul(4)),
                    10..=12 => self.skip(count.saturating_mul(8)),
                    _ => {
                        for _ in 0..count {
                            self.skip_value(element, depth + 1)?;
                        }
                        Ok(())
                    }
                }
            }
            9 => Err("metadata arrays nest too deep".into()),
            other => Err(format!("a metadata value has unknown type {other}")),
        }
    }
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}
