//! The sandbox a script runs in: a temp directory standing for the instance,
//! PATH = stand-ins (standin.sh under each name) + links to harmless real tools,
//! the stand-ins' argv log and state, and a local directory for S3.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ftslm_cloud::scripts::{parse_step_line, StepStatus};

use crate::{BUCKET, PREFIX, TOKEN, TS};

/// Tools the scripts may use for real: they only read and write in the sandbox.
const REAL_TOOLS: &[&str] = &[
    "bash",
    "cat",
    "cp",
    "cut",
    "dirname",
    "basename",
    "du",
    "find",
    "grep",
    "head",
    "ls",
    "mkdir",
    "mktemp",
    "mv",
    "readlink",
    "rm",
    "sed",
    "sha256sum",
    "sleep",
    "sort",
    "tail",
    "timeout",
    "tr",
    "xargs",
    "awk",
    "touch",
    "env",
];

/// Every stand-in is this one script, dispatching on its name.
const STANDIN: &str = include_str!("standin.sh");

const STANDINS: &[&str] = &[
    "blkid",
    "mkfs",
    "mount",
    "mountpoint",
    "findmnt",
    "chown",
    "shutdown",
    "aws",
    "docker",
];

pub fn bash() -> &'static Path {
    static BASH: OnceLock<PathBuf> = OnceLock::new();
    BASH.get_or_init(|| which("bash"))
}

/// The real path of `tool` on the test's PATH (python3 through its interpreter,
/// since version-manager shims need their own environment).
pub fn which(tool: &str) -> PathBuf {
    if tool == "python3" {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs");
        return PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    }
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not on PATH"))
}

/// One call to a stand-in: its name, then its arguments.
pub type Call = Vec<String>;

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn steps(&self) -> Vec<(String, StepStatus)> {
        self.stdout
            .lines()
            .filter_map(parse_step_line)
            .map(|(s, st)| (s.to_string(), st))
            .collect()
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A temp directory standing for the instance.
pub struct Sandbox {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub s3: PathBuf,
    pub mount: PathBuf,
    pub by_id: PathBuf,
    pub device: PathBuf,
    pub fstab: PathBuf,
    pub run_dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let bin = root.join("bin");
        let tools = root.join("tools");
        let sb = Sandbox {
            state: root.join("state"),
            log: root.join("calls.log"),
            s3: root.join("s3"),
            mount: root.join("mnt/training"),
            by_id: root.join("dev/disk/by-id"),
            device: root.join("dev/nvme1n1"),
            fstab: root.join("etc/fstab"),
            run_dir: root.join("run/ftslm"),
            env: Vec::new(),
            root,
            _dir: dir,
        };
        for d in [
            &bin,
            &tools,
            &sb.state,
            &sb.s3,
            &sb.by_id,
            &sb.root.join("tmp"),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        fs::create_dir_all(sb.fstab.parent().unwrap()).unwrap();
        fs::write(
            &sb.fstab,
            "# /etc/fstab\nLABEL=cloudimg-rootfs / ext4 discard,errors=remount-ro 0 1\n",
        )
        .unwrap();
        fs::write(&sb.device, "").unwrap();
        fs::write(&sb.log, "").unwrap();
        let standin = bin.join("standin");
        fs::write(
            &standin,
            STANDIN.replacen("#!/usr/bin/env bash", &format!("#!{}", bash().display()), 1),
        )
        .unwrap();
        fs::set_permissions(&standin, fs::Permissions::from_mode(0o755)).unwrap();
        for name in STANDINS {
            symlink(&standin, bin.join(name)).unwrap();
        }
        for tool in REAL_TOOLS.iter().chain(["python3"].iter()) {
            symlink(which(tool), tools.join(tool)).unwrap();
        }
        sb
    }

    /// The volume's NVMe link, as udev makes it once the volume is attached.
    pub fn attach(&self) {
        symlink(
            &self.device,
            self.by_id
                .join("nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0"),
        )
        .unwrap();
    }

    /// The volume as `deploy` leaves it: formatted and mounted.
    pub fn deployed(&self) {
        fs::write(self.state.join("fs_type"), "xfs").unwrap();
        fs::write(self.state.join("fs_uuid"), "8f1c2a4e").unwrap();
        fs::write(
            self.state.join("mounted_source"),
            self.device.to_str().unwrap(),
        )
        .unwrap();
        fs::write(
            self.state.join("mounted_target"),
            self.mount.to_str().unwrap(),
        )
        .unwrap();
        fs::create_dir_all(self.mount.join("output")).unwrap();
        fs::create_dir_all(self.mount.join("pulled")).unwrap();
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    pub fn run(&self, script: &str) -> Outcome {
        let path = self.root.join("script.sh");
        fs::write(&path, script).unwrap();
        let out = Command::new(bash())
            .arg(&path)
            .current_dir(&self.root)
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.root.join("bin").display(),
                    self.root.join("tools").display()
                ),
            )
            .env("HOME", &self.root)
            .env("TMPDIR", self.root.join("tmp"))
            .env("LC_ALL", "C")
            .env("FAKE_LOG", &self.log)
            .env("FAKE_STATE", &self.state)
            .env("FAKE_S3", &self.s3)
            .env("FTSLM_DEV_BY_ID", &self.by_id)
            .env("FTSLM_FSTAB", &self.fstab)
            .env("FTSLM_RUN_DIR", &self.run_dir)
            .env("FTSLM_DEVICE_WAIT_SECONDS", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        fs::read_to_string(&self.log)
            .unwrap()
            .split('\x1e')
            .filter(|r| !r.is_empty())
            .map(|r| {
                r.trim_end_matches('\x1f')
                    .split('\x1f')
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    pub fn calls_to(&self, name: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c[0] == name).collect()
    }

    pub fn clear_log(&self) {
        fs::write(&self.log, "").unwrap();
    }

    pub fn mount_str(&self) -> String {
        self.mount.to_str().unwrap().to_string()
    }

    /// A run directory as `ftslm train` leaves it, checkpoints included.
    pub fn write_run(&self) {
        let out = self.mount.join("output");
        let files: &[(&str, &str)] = &[
            (
                "final_model/adapter_config.json",
                r#"{"base_model_name_or_path": "/workspace/models/llama-3.1-8b", "r": 16}"#,
            ),
            ("final_model/adapter_model.safetensors", "final weights"),
            ("final_model/tokenizer.json", "{}"),
            ("best_model/adapter_config.json", "{}"),
            ("best_model/adapter_model.safetensors", "best weights"),
            ("checkpoint-10/adapter_model.safetensors", "ckpt 10"),
            ("checkpoint-10/optimizer.safetensors", "opt 10"),
            ("checkpoint-20/adapter_model.safetensors", "ckpt 20"),
            (
                "backup_20261101_090000/checkpoint-5/adapter_model.safetensors",
                "old",
            ),
            ("metrics.jsonl", "{\"step\": 10, \"loss\": 0.61}\n"),
            ("logs/events.out.tfevents.1", "tb"),
            ("logs/eval/events with space", "tb eval"),
            ("run_summary.json", "{\"final_eval_loss\": 0.65}"),
        ];
        for (rel, content) in files {
            let p = out.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
    }

    pub fn archive(&self) -> PathBuf {
        self.s3.join(BUCKET).join(PREFIX).join(TS)
    }

    pub fn with_secret(&mut self, content: &str) {
        let p = self.root.join("secret.txt");
        fs::write(&p, content).unwrap();
        self.set("FAKE_SECRET_FILE", p.to_str().unwrap());
        self.set("FAKE_EXPECTED_TOKEN", TOKEN);
    }
}

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_str().unwrap().to_string());
            }
        }
    }
    out
}
