//! The command-line contract (DESIGN.md, "Command line"): every command and
//! flag, declared with clap derive. Handlers live in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ftslm_config::LossOn;
use ftslm_cuda::DeviceChoice;

mod values;
use values::{at_least_one, loss_on, narrative, probability, temperature};

#[derive(Debug, Parser)]
#[command(
    name = "ftslm",
    version,
    about = "Fine-tune Llama-family models with QLoRA for structured information extraction",
    long_about = "Fine-tune Llama-family models with QLoRA for structured information extraction, \
measure how well they extract, and run the pipeline here or on an AWS GPU instance.",
    after_help = "Start with `ftslm quickstart`: demo model, synthetic data, a short QLoRA run and before/after scores."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Folder holding training_config.yml/aws_config.yml (or training.yml/aws.yml)
    #[arg(long, global = true, value_name = "DIR", env = "FTSLM_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    /// Override one configuration value, e.g. --set training.learning_rate=1e-4 (repeatable)
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Do not look up Parameter Store; `ssm_param` leaves take their defaults
    #[arg(long, global = true)]
    pub no_ssm: bool,
    /// More detail on stderr (repeatable)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Precision of the frozen weights' products, as torch.set_float32_matmul_precision:
    /// `high` multiplies 16-bit integers quantised per block of 64 (each value to 2^-13
    /// of its block's largest) where the CPU has AVX-512 VNNI, twice the f32 rate;
    /// `highest` multiplies in f32
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = MatmulPrecision::High,
        env = "FTSLM_MATMUL_PRECISION"
    )]
    pub matmul_precision: MatmulPrecision,
    /// Where to compute: auto (a CUDA GPU when one and its libraries load, else the
    /// CPU), cpu, cuda or cuda:N [default: compute.device, auto]
    #[arg(long, global = true, value_name = "DEVICE", env = "FTSLM_DEVICE")]
    pub device: Option<DeviceChoice>,
}

/// `--matmul-precision` values.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum MatmulPrecision {
    #[default]
    High,
    Highest,
}

impl From<MatmulPrecision> for ftslm_model::kernel::MatmulPrecision {
    fn from(precision: MatmulPrecision) -> Self {
        match precision {
            MatmulPrecision::High => Self::High,
            MatmulPrecision::Highest => Self::Highest,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Demo model, synthetic data, a short QLoRA run, before/after extraction scores
    #[command(after_help = "Example: ftslm quickstart --steps 60 --out runs/quickstart")]
    Quickstart(QuickstartArgs),
    /// Validate, inspect, render and synthesize training data
    #[command(subcommand)]
    Data(DataCommand),
    /// Show the resolved configuration and where each value came from
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect a model: architecture, parameter counts, QLoRA memory estimate
    #[command(subcommand)]
    Model(ModelCommand),
    /// Fine-tune with QLoRA
    #[command(
        after_help = "Example: ftslm train --model models/smollm2 --train-data train.jsonl --val-data validation.jsonl --max-steps 30"
    )]
    Train(TrainArgs),
    /// Generate text from a prompt (chat template applied)
    #[command(after_help = "Example: ftslm generate --model models/smollm2 --prompt 'Hello'")]
    Generate(GenerateArgs),
    /// Extract the task's fields from text as JSON
    #[command(
        after_help = "Example: ftslm extract --model models/smollm2 --adapter runs/q/final_model --text 'Stage IV melanoma...'"
    )]
    Extract(ExtractArgs),
    /// Score extraction quality field by field on a labelled file
    #[command(
        after_help = "Example: ftslm eval --model models/smollm2 --data validation.jsonl --limit 100"
    )]
    Eval(EvalArgs),
    /// Merge an adapter into full-precision weights (Hugging Face layout)
    #[command(
        after_help = "Example: ftslm merge --model models/Llama-3.1-8B --adapter runs/q/final_model --out models/llama-3.1-8b-medical-ie"
    )]
    Merge(MergeArgs),
    /// Benchmarks
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Parameter Store entries for the AWS pipeline
    #[command(subcommand)]
    Params(ParamsCommand),
    /// Drive the AWS training instance through Systems Manager
    #[command(subcommand)]
    Cloud(CloudCommand),
    /// Training runs archived in S3
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Checkpoints on the training instance's volume
    #[command(subcommand)]
    Checkpoints(CheckpointsCommand),
    /// Publish an adapter to the Hugging Face Hub
    Push(PushArgs),
    /// Show a run's metrics
    Metrics(MetricsArgs),
    /// This machine as ftslm sees it: CPU, GPUs, CUDA libraries
    #[command(after_help = "Example: ftslm env --json")]
    Env {
        #[arg(long)]
        json: bool,
    },
    /// Check the GPU kernels against the CPU engine (--device cuda[:N])
    #[command(
        after_help = "Compiles every CUDA kernel for the GPU, runs each on the shapes of SmolLM2 and \
Llama-3.1-8B and compares it with the CPU engine's result within a stated tolerance.\n\
Example: ftslm selftest --device cuda --json"
    )]
    Selftest {
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script
    #[command(after_help = "Example: ftslm completions bash > /etc/bash_completion.d/ftslm")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Optimizer steps of the demo run (4 records each)
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Validation records scored before and after training
    #[arg(long, default_value_t = 20)]
    pub eval_records: usize,
    /// Run directory
    #[arg(long, default_value = "runs/quickstart")]
    pub out: PathBuf,
    /// Model to use instead of the demo model (directory, .gguf file or Hub id)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Training data instead of synthetic records
    #[arg(long, requires = "val_data")]
    pub train_data: Option<PathBuf>,
    /// Validation data instead of synthetic records
    #[arg(long, requires = "train_data")]
    pub val_data: Option<PathBuf>,
    /// Start over in an --out that holds a finished quickstart (its data/, run/
    /// and eval_*.json are replaced; other files are left alone)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SchemaArg {
    /// medical-ie when the first record answers with any medical-IE field
    Auto,
    /// Exactly the seven medical-IE fields, each a string or null
    MedicalIe,
    /// Any instruction or chat record
    Generic,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Check every line; FILE:LINE: problem — fix; exit 1 if anything is invalid
    #[command(after_help = "Example: ftslm data validate data/train.jsonl data/validation.jsonl")]
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "auto")]
        schema: SchemaArg,
        #[arg(long)]
        json: bool,
    },
    /// Counts, null rate per field, and token lengths against max_seq_length
    #[command(after_help = "Example: ftslm data stats data/train.jsonl --model models/smollm2")]
    Stats {
        file: PathBuf,
        /// Model (or tokenizer) whose chat template and tokenizer measure token lengths
        #[arg(long)]
        model: Option<PathBuf>,
        /// Defaults to dataset.max_seq_length from the configuration
        #[arg(long)]
        max_seq_length: Option<usize>,
        /// Rows per batch for the padding comparison (defaults to per_device_train_batch_size)
        #[arg(long, value_parser = at_least_one)]
        batch_size: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Write deterministic synthetic medical-IE records (train.jsonl, validation.jsonl)
    #[command(after_help = "Example: ftslm data synth --out data/synthetic --seed 7")]
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 4500)]
        train: usize,
        #[arg(long, default_value_t = 500)]
        validation: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Replace train.jsonl and validation.jsonl where they exist
        #[arg(long)]
        force: bool,
    },
    /// Show one record as the model sees it: text, token ids, which tokens carry loss
    #[command(
        after_help = "Example: ftslm data render --model models/smollm2 data/train.jsonl --index 3"
    )]
    Render {
        file: PathBuf,
        #[arg(long)]
        model: PathBuf,
        /// 0-based record index
        #[arg(long, default_value_t = 0)]
        index: usize,
        #[arg(long)]
        max_seq_length: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every resolved value with its source (default, file:LINE, ssm:/path, env, cli)
    #[command(
        after_help = "Example: ftslm config show --config-dir ../shared/reference/config --no-ssm --json"
    )]
    Show {
        /// Kept for the original CLI's users: values are always resolved
        #[arg(long)]
        resolve: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Architecture, parameter counts and a QLoRA memory estimate
    #[command(
        after_help = "Works on a directory holding only config.json (size a model before downloading it).\nExample: ftslm model inspect models/Llama-3.1-8B --seq-len 512"
    )]
    Inspect {
        /// A Hugging Face model directory (config.json is enough) or a .gguf file
        model: PathBuf,
        /// Tokens per sequence for the memory estimate [default: dataset.max_seq_length]
        #[arg(long)]
        seq_len: Option<usize>,
        /// Sequences per micro-batch [default: training.per_device_train_batch_size]
        #[arg(long)]
        batch_size: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Write a random-weight checkpoint of a Llama config.json (Hugging Face layout)
    #[command(
        after_help = "Initialised as transformers' LlamaForCausalLM(config): N(0, initializer_range) weights, \
ones for the norms; safetensors shards of at most 5 GB. For tests and speed benchmarks at a real shape.\n\
Example: ftslm model random-init --config ../shared/models/llama-3.1-8b-config/config.json \
--out models/llama-8b-random --tokenizer-from ../shared/models/smollm2-135m-instruct"
    )]
    RandomInit(RandomInitArgs),
}

#[derive(Debug, Args)]
pub struct RandomInitArgs {
    /// A Llama config.json
    #[arg(long)]
    pub config: PathBuf,
    /// The checkpoint directory to create
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = MergeDtype::Bf16)]
    pub dtype: MergeDtype,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Copy the tokenizer files of this model directory into the checkpoint
    #[arg(long, value_name = "DIR")]
    pub tokenizer_from: Option<PathBuf>,
    /// Replace --out when it exists
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A training YAML file (the original training_config.yml format)
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long)]
    pub train_data: Option<PathBuf>,
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Load everything, run one step, print the plan, write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Start over: move existing checkpoints to backup_<timestamp>/ first
    #[arg(long)]
    pub no_resume: bool,
    /// Resume although KEY differs from the checkpoint's run (only when to
    /// log, evaluate and save, and how long to train: training.max_steps,
    /// training.num_train_epochs, training.logging_steps, training.eval_steps,
    /// training.save_steps, training.save_total_limit,
    /// training.early_stopping_patience); repeatable
    #[arg(long, value_name = "KEY")]
    pub allow_changed: Vec<String>,
}

/// The model a command runs: base, adapter, and how the base is held.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A Hugging Face model directory or a .gguf file
    #[arg(long)]
    pub model: PathBuf,
    /// A PEFT LoRA adapter directory, applied unmerged (e.g. RUN/final_model)
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// How to hold the frozen base: in its stored precision, or re-quantized to NF4
    #[arg(long, value_enum, default_value_t = QuantizeArg::Stored)]
    pub quantize: QuantizeArg,
    /// Use --adapter with a base other than the one its ftslm_task.json names
    #[arg(long, requires = "adapter")]
    pub allow_other_base: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum QuantizeArg {
    /// f32 for safetensors, the file's own blocks for GGUF
    Stored,
    /// NF4 with double quantization, as QLoRA trains
    Nf4,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A system turn before the prompt (else the chat template's default)
    #[arg(long)]
    pub system: Option<String>,
    /// The user turn
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// 0 or absent: greedy
    #[arg(long, value_parser = temperature)]
    pub temperature: Option<f32>,
    /// Nucleus sampling: the smallest set of tokens whose probability reaches this, in (0, 1]
    #[arg(long, value_parser = probability)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Decoding settings shared by extract and eval.
#[derive(Debug, Args)]
pub struct ExtractionArgs {
    /// Decode freely instead of constraining the answer to the task's JSON object
    #[arg(long)]
    pub unconstrained: bool,
    /// Token budget of one answer (the grammar caps each value at 200 characters)
    #[arg(long, default_value_t = 512, value_parser = at_least_one)]
    pub max_new_tokens: usize,
    /// Records decoded together
    #[arg(long, default_value_t = 8, value_parser = at_least_one)]
    pub batch_size: usize,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// One narrative
    #[arg(
        long,
        conflicts_with = "file",
        required_unless_present = "file",
        value_parser = narrative
    )]
    pub text: Option<String>,
    /// JSONL, one object per line with "input" (and optional "id", "instruction")
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// One JSON object per input, with its id/line, on stdout
    #[arg(long)]
    pub json: bool,
    /// The instruction before each narrative [default: the adapter's
    /// ftslm_task.json, else the medical task's]
    #[arg(long)]
    pub instruction: Option<String>,
    /// The system prompt [default: the adapter's ftslm_task.json, else the
    /// medical task's]
    #[arg(long)]
    pub system_prompt: Option<String>,
    #[command(flatten)]
    pub decoding: ExtractionArgs,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Records with reference answers (the training format)
    #[arg(long)]
    pub data: PathBuf,
    /// Only the first N records
    #[arg(long)]
    pub limit: Option<usize>,
    /// The report as JSON on stdout instead of the table
    #[arg(long)]
    pub json: bool,
    /// Write the report (summary and per-record details) to this file
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the --out file where it exists
    #[arg(long, requires = "out")]
    pub force: bool,
    /// An earlier report to print before/after deltas against
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Longest reference example, in tokens, for the answer loss
    #[arg(long, default_value_t = 2048)]
    pub max_seq_length: usize,
    /// The system prompt [default: the adapter's ftslm_task.json, else the
    /// medical task's]
    #[arg(long)]
    pub system_prompt: Option<String>,
    #[command(flatten)]
    pub decoding: ExtractionArgs,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The base: a Hugging Face model directory or a .gguf file
    #[arg(long)]
    pub model: PathBuf,
    /// A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors)
    #[arg(long)]
    pub adapter: PathBuf,
    /// A new (or empty) directory for the merged model
    #[arg(long)]
    pub out: PathBuf,
    /// Precision of the merged weights
    #[arg(long, value_enum, default_value_t = MergeDtype::Bf16)]
    pub dtype: MergeDtype,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MergeDtype {
    Bf16,
    F32,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Training throughput and peak memory on the bench settings
    Train {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 4)]
        steps: usize,
        #[arg(long, default_value_t = 4)]
        batch_size: usize,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value = "all", value_parser = loss_on)]
        loss_on: LossOn,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ParamsCommand {
    /// Create every ssm_param of the configuration in Parameter Store
    Init {
        /// Replace parameters that exist with a different value
        #[arg(long)]
        overwrite: bool,
        /// Show what would be written; write nothing
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation (needed when not on a terminal)
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the parameters and their values
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CloudCommand {
    /// Identity, resources and permissions, with the command that fixes what is missing
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Instance state, status checks and SSM agent
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Start the instance and wait until it is running
    Start {
        #[arg(long)]
        json: bool,
    },
    /// Stop the instance, print hours run and cost
    Stop {
        #[arg(long)]
        verify_s3: bool,
        #[arg(long)]
        json: bool,
    },
    /// Attach and mount the volume, pull the image, check the GPU
    Deploy {
        /// Leave the volume as it is (attached and mounted earlier)
        #[arg(long)]
        skip_volume: bool,
        /// Do not log in to ECR or pull the image
        #[arg(long)]
        skip_image: bool,
    },
    /// Run `ftslm train` on the instance, stream its output, archive the run in S3
    #[command(
        after_help = "Example: ftslm cloud train --test\n         ftslm cloud train --max-steps 500 --background"
    )]
    Train {
        /// Remote `ftslm train --dry-run`: load everything, one step, write nothing
        #[arg(long, conflicts_with_all = ["test", "max_steps"])]
        dry_run: bool,
        /// A short run (10 steps, saves and evals every 5) that exercises every part
        #[arg(long, conflicts_with = "max_steps")]
        test: bool,
        #[arg(long)]
        max_steps: Option<usize>,
        /// Start over instead of resuming from the checkpoints on the volume
        #[arg(long)]
        no_resume: bool,
        /// Print the command id and return; follow it with `ftslm cloud logs --follow`
        #[arg(long)]
        background: bool,
        /// Longest the run may take, e.g. 90m or 10h (default 24h)
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
    },
    /// Command output from CloudWatch Logs (the latest ftslm command by default)
    Logs {
        /// Keep printing until the command ends
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        command_id: Option<String>,
    },
    /// Run `ftslm extract` on the instance against a run's adapter
    Test {
        /// The run's timestamp (YYYYmmdd_HHMMSS) or `latest`
        #[arg(long)]
        run: String,
        #[arg(long)]
        text: String,
    },
    /// start → deploy → train → verify S3 → pull → stop; the instance is stopped whatever fails
    Run {
        #[arg(long)]
        max_steps: Option<usize>,
        /// A short test run instead of the configured one
        #[arg(long, conflicts_with = "max_steps")]
        test: bool,
        /// Stop the instance at the end (the default; kept for the original scripts' flag)
        #[arg(long, conflicts_with = "keep_running")]
        stop_after: bool,
        /// Leave the instance running at the end and after a failure
        #[arg(long)]
        keep_running: bool,
        /// Where the run is pulled to (a folder per run)
        #[arg(long, default_value = "runs/cloud")]
        out: PathBuf,
        #[arg(long)]
        no_resume: bool,
        /// Longest the training may take, e.g. 90m or 10h (default 24h)
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Runs in S3, newest first
    List {
        #[arg(long)]
        json: bool,
    },
    /// Download a run (TIMESTAMP or latest), checksums verified; resumes an interrupted pull
    Pull {
        run: String,
        #[arg(long)]
        out: PathBuf,
        /// Parallel downloads
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Replace files in --out that are not this run's (another run's, or changed)
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CheckpointsCommand {
    /// Remove checkpoints on the instance's volume
    Clean {
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        keep_final_model: bool,
    },
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// An adapter directory, a run directory (its final_model/) or a
    /// quickstart folder (its run/final_model/)
    pub adapter: PathBuf,
    /// Hub repository OWNER/NAME, defaults to output.hf_repo
    #[arg(long)]
    pub repo: Option<String>,
    /// The base model's Hub id, when the adapter was trained from a local path
    #[arg(long, value_name = "OWNER/NAME")]
    pub base_model: Option<String>,
    /// An `ftslm eval --out` report of this adapter, for the card's scores
    /// (a quickstart folder's eval_after.json is found without it)
    #[arg(long, value_name = "FILE")]
    pub eval_report: Option<PathBuf>,
    /// Show the files and the model card that would be sent, send nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan as JSON (with --dry-run)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// A run directory (or a quickstart folder holding run/), or a run in S3:
    /// its timestamp or `latest`
    pub run: String,
    /// More runs to compare with (directories or S3 timestamps): summarised
    /// side by side and overlaid in the charts
    #[arg(long, num_args = 1.., value_name = "RUN")]
    pub compare: Vec<String>,
    /// Write one row per logged step as CSV (with a `run` column when comparing)
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Write PNG and SVG charts (loss, learning rate, grad norm, tokens/s) into DIR
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    /// Replace an existing --csv file or charts in --plot
    #[arg(long)]
    pub force: bool,
}
