//! A `training.yml` through the configuration loader (YAML, the schema,
//! `ssm_param` references, typed sections), as every command loads it.
#![no_main]

use ftslm_config::ConfigLoader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = ftslm_fuzz::scratch().join("config");
    std::fs::create_dir_all(&dir).expect("scratch");
    std::fs::write(dir.join("training.yml"), data).expect("scratch");
    let loader = ConfigLoader::new()
        .config_dir(Some(&dir))
        .env_vars(Vec::<(String, String)>::new());
    let Ok(config) = loader.load() else {
        return;
    };
    let _ = config.training();
    let _ = config.dataset();
    let _ = config.lora();
    let _ = config.quantization();
    let _ = config.compute();
    let _ = config.render_table();
});
