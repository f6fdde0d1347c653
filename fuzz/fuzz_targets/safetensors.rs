//! A model folder holding one `model.safetensors`, opened as `ftslm` opens
//! a Hugging Face checkpoint, every tensor then loaded.
#![no_main]

use candle_core::Device;
use ftslm_model::loader::SafetensorsCheckpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = ftslm_fuzz::scratch().join("st");
    std::fs::create_dir_all(&dir).expect("scratch");
    std::fs::write(dir.join("model.safetensors"), data).expect("scratch");
    let Ok(checkpoint) = SafetensorsCheckpoint::open(&dir) else {
        return;
    };
    let names: Vec<String> = checkpoint.tensor_names().map(str::to_string).collect();
    for name in names {
        let _ = checkpoint.load_raw(&name, &Device::Cpu);
    }
});
