//! A GGUF file as `ftslm` opens a model: the header walk, candle's parse,
//! the extent checks, then each small tensor read back as f32. Any input
//! must give a value or an error, never a panic or an allocation beyond
//! libFuzzer's -malloc_limit_mb.
#![no_main]

use ftslm_model::loader::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = ftslm_fuzz::write("model.gguf", data);
    let Ok(gguf) = GgufFile::open(&path) else {
        return;
    };
    let names: Vec<String> = gguf.tensor_names().map(str::to_string).collect();
    for name in names {
        let small = gguf
            .tensor_info(&name)
            .is_some_and(|(_, dims)| dims.iter().product::<usize>() <= 1 << 16);
        if small {
            let _ = gguf.read_f32(&name);
        }
    }
    let _ = gguf.dtype_counts();
});
