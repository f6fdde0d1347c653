//! A training-data file through `data validate` (line reader, UTF-8 and BOM
//! handling, record parsing, duplicate/overlap check) and through the
//! record reader training uses.
#![no_main]

use ftslm_data::validate::{read_records, validate_files, Schema};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = ftslm_fuzz::write("train.jsonl", data);
    let _ = validate_files(std::slice::from_ref(&path), Schema::Auto);
    let _ = validate_files(std::slice::from_ref(&path), Schema::MedicalIe);
    if let Ok(records) = read_records(&path) {
        for r in &records {
            let _ = r.record.input_text();
        }
    }
});
