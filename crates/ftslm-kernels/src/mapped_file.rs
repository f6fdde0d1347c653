//! A weight file mapped read-only into memory, so that an 8B checkpoint is
//! read from the page cache as its tensors are converted instead of copied
//! whole into the heap first.

use std::fs::File;
use std::path::Path;

/// The bytes of a file, mapped read-only.
#[derive(Debug)]
pub struct MappedFile {
    map: memmap2::Mmap,
}

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        // SAFETY: the mapping is read-only and private to this process. As
        // every mmap-based checkpoint loader (safetensors, candle, PyTorch),
        // it relies on the file not being truncated or rewritten while it is
        // mapped; ftslm never writes a weight file it has open.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(MappedFile { map })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_file_reads_as_its_bytes() {
        let dir = std::env::temp_dir().join(format!("ftslm-kernels-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weights.bin");
        std::fs::write(&path, b"eight by").unwrap();
        assert_eq!(MappedFile::open(&path).unwrap().bytes(), b"eight by");
        assert!(MappedFile::open(&dir.join("absent")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
