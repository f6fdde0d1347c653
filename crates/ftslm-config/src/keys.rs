//! Every configuration key ftslm knows: those of the original `training_config.yml`
//! and `aws_config.yml` (so they load unchanged) and ftslm's own additions. The
//! order here is the order of `ftslm config show`.

use crate::schema::{KeyDef, Lit, ValueKind};

const POSITIVE: ValueKind = ValueKind::Int { min: 1 };
const NON_NEGATIVE: ValueKind = ValueKind::Int { min: 0 };

/// The medical task's prompt is defined once, beside its fields and instruction.
pub use ftslm_data::SYSTEM_PROMPT as DEFAULT_SYSTEM_PROMPT;

/// The table of known keys.
pub static SCHEMA: &[KeyDef] = &[
    // model
    KeyDef::new(
        "model.name",
        ValueKind::Str,
        Lit::Str("meta-llama/Meta-Llama-3.1-8B"),
        "Base model: a Hugging Face id, a directory in HF layout, or a .gguf file",
    ),
    // dataset
    KeyDef::new(
        "dataset.train_path",
        ValueKind::Str,
        Lit::Str("/workspace/data/train.jsonl"),
        "Training records (JSON Lines)",
    ),
    KeyDef::new(
        "dataset.validation_path",
        ValueKind::Str,
        Lit::Str("/workspace/data/validation.jsonl"),
        "Validation records (JSON Lines), used for eval loss and best-model selection",
    ),
    KeyDef::new(
        "dataset.max_seq_length",
        POSITIVE,
        Lit::Int(2048),
        "Longest training sequence in tokens (prompt + answer)",
    ),
    KeyDef::new(
        "dataset.packing",
        ValueKind::Bool,
        Lit::Bool(false),
        "Pack several examples into one row of up to max_seq_length tokens (no attention \
         across them); a batch is then per_device_train_batch_size such rows, not that many \
         records. Off (as in TRL and the original system): records are grouped by length",
    ),
    KeyDef::new(
        "dataset.loss_on",
        ValueKind::OneOf(&["answer", "all"]),
        Lit::Str("answer"),
        "Tokens the loss counts: the answer and end-of-turn only, or all tokens",
    ),
    KeyDef::new(
        "dataset.max_eval_samples",
        POSITIVE,
        Lit::Null,
        "Evaluate on at most this many validation records; null = all",
    )
    .nullable(),
    KeyDef::new(
        "dataset.system_prompt",
        ValueKind::Str,
        Lit::Str(DEFAULT_SYSTEM_PROMPT),
        "System message of the chat prompt, identical in training and inference",
    ),
    // lora
    KeyDef::new("lora.r", POSITIVE, Lit::Int(16), "LoRA rank"),
    KeyDef::new(
        "lora.lora_alpha",
        ValueKind::Float,
        Lit::Int(32),
        "LoRA scaling numerator: the update is scaled by alpha / r",
    ),
    KeyDef::new(
        "lora.lora_dropout",
        ValueKind::Float,
        Lit::Float(0.1),
        "Dropout on the LoRA input during training",
    ),
    KeyDef::new(
        "lora.target_modules",
        ValueKind::StrList,
        Lit::StrList(&["q_proj", "v_proj", "k_proj", "o_proj"]),
        "Linear layers that get adapters (q/k/v/o_proj, gate/up/down_proj)",
    ),
    KeyDef::new(
        "lora.bias",
        ValueKind::Str,
        Lit::Str("none"),
        "PEFT bias training; ftslm never trains biases",
    )
    .unused(),
    KeyDef::new(
        "lora.task_type",
        ValueKind::Str,
        Lit::Str("CAUSAL_LM"),
        "PEFT task type, written to adapter_config.json",
    )
    .unused(),
    KeyDef::new(
        "lora.use_rslora",
        ValueKind::Bool,
        Lit::Bool(false),
        "Rank-stabilized LoRA: scale by alpha / sqrt(r) instead of alpha / r",
    ),
    // training
    KeyDef::new(
        "training.output_dir",
        ValueKind::Str,
        Lit::Str("/mnt/training/checkpoints"),
        "Run directory: checkpoints, final_model, best_model, metrics.jsonl, logs",
    ),
    KeyDef::new(
        "training.num_train_epochs",
        ValueKind::Float,
        Lit::Int(5),
        "Passes over the training data (ignored when max_steps > 0)",
    ),
    KeyDef::new(
        "training.per_device_train_batch_size",
        POSITIVE,
        Lit::Int(4),
        "Sequences per micro-batch in training",
    ),
    KeyDef::new(
        "training.per_device_eval_batch_size",
        POSITIVE,
        Lit::Int(4),
        "Sequences per batch in evaluation",
    ),
    KeyDef::new(
        "training.gradient_accumulation_steps",
        POSITIVE,
        Lit::Int(4),
        "Micro-batches summed into one optimizer step",
    ),
    KeyDef::new(
        "training.learning_rate",
        ValueKind::Float,
        Lit::Float(2.0e-4),
        "Peak AdamW learning rate",
    ),
    KeyDef::new(
        "training.warmup_steps",
        NON_NEGATIVE,
        Lit::Int(100),
        "Optimizer steps of linear warm-up from 0 to learning_rate",
    ),
    KeyDef::new(
        "training.logging_steps",
        POSITIVE,
        Lit::Int(10),
        "Log train loss and learning rate every this many steps",
    ),
    KeyDef::new(
        "training.save_steps",
        POSITIVE,
        Lit::Int(200),
        "Write checkpoint-<step>/ every this many steps",
    ),
    KeyDef::new(
        "training.eval_steps",
        POSITIVE,
        Lit::Int(100),
        "Compute eval loss every this many steps",
    ),
    KeyDef::new(
        "training.save_total_limit",
        POSITIVE,
        Lit::Int(3),
        "Keep at most this many checkpoints (oldest deleted first); null = all",
    )
    .nullable(),
    KeyDef::new(
        "training.fp16",
        ValueKind::Bool,
        Lit::Bool(true),
        "transformers' half-precision switch; ftslm follows quantization.base",
    )
    .unused(),
    KeyDef::new(
        "training.optim",
        ValueKind::Str,
        Lit::Str("paged_adamw_8bit"),
        "transformers' optimizer name; ftslm uses AdamW with f32 states",
    )
    .unused(),
    KeyDef::new(
        "training.evaluation_strategy",
        ValueKind::Str,
        Lit::Str("steps"),
        "transformers' evaluation switch; ftslm evaluates every eval_steps",
    )
    .unused(),
    KeyDef::new(
        "training.load_best_model_at_end",
        ValueKind::Bool,
        Lit::Bool(true),
        "Keep the checkpoint with the best metric as best_model/",
    ),
    KeyDef::new(
        "training.metric_for_best_model",
        ValueKind::Str,
        Lit::Str("eval_loss"),
        "Metric that picks best_model/",
    ),
    KeyDef::new(
        "training.greater_is_better",
        ValueKind::Bool,
        Lit::Bool(false),
        "Whether a higher metric_for_best_model is better",
    ),
    KeyDef::new(
        "training.gradient_checkpointing",
        ValueKind::Bool,
        Lit::Bool(true),
        "Recompute layer activations in the backward pass to save memory",
    ),
    KeyDef::new(
        "training.lr_scheduler_type",
        ValueKind::OneOf(&["cosine", "linear", "constant"]),
        Lit::Str("cosine"),
        "Learning-rate decay after warm-up",
    ),
    KeyDef::new(
        "training.max_grad_norm",
        ValueKind::Float,
        Lit::Float(1.0),
        "Clip the global gradient norm to this; 0 = no clipping",
    ),
    KeyDef::new(
        "training.weight_decay",
        ValueKind::Float,
        Lit::Float(0.0),
        "Decoupled AdamW weight decay on the LoRA weights",
    ),
    KeyDef::new(
        "training.seed",
        NON_NEGATIVE,
        Lit::Int(42),
        "Seed for LoRA init, shuffling and dropout",
    ),
    KeyDef::new(
        "training.early_stopping_patience",
        POSITIVE,
        Lit::Null,
        "Stop after this many evaluations without improvement; null = never",
    )
    .nullable(),
    KeyDef::new(
        "training.max_steps",
        ValueKind::Int { min: -1 },
        Lit::Int(-1),
        "Stop after this many optimizer steps; -1 = run num_train_epochs",
    ),
    KeyDef::new(
        "training.adam_beta1",
        ValueKind::Float,
        Lit::Float(0.9),
        "AdamW first-moment decay",
    ),
    KeyDef::new(
        "training.adam_beta2",
        ValueKind::Float,
        Lit::Float(0.999),
        "AdamW second-moment decay",
    ),
    KeyDef::new(
        "training.adam_epsilon",
        ValueKind::Float,
        Lit::Float(1e-8),
        "AdamW denominator epsilon",
    ),
    // quantization
    KeyDef::new(
        "quantization.load_in_4bit",
        ValueKind::Bool,
        Lit::Bool(true),
        "bitsandbytes' 4-bit switch; ftslm follows quantization.base",
    )
    .unused(),
    KeyDef::new(
        "quantization.bnb_4bit_compute_dtype",
        ValueKind::Str,
        Lit::Str("float16"),
        "bitsandbytes' compute dtype; ftslm computes in f32 on CPU",
    )
    .unused(),
    KeyDef::new(
        "quantization.bnb_4bit_quant_type",
        ValueKind::OneOf(&["nf4"]),
        Lit::Str("nf4"),
        "4-bit code book of the frozen weights (bitsandbytes-compatible NF4)",
    ),
    KeyDef::new(
        "quantization.bnb_4bit_use_double_quant",
        ValueKind::Bool,
        Lit::Bool(true),
        "Quantize the NF4 block scales again (saves about 0.4 bit per weight)",
    ),
    KeyDef::new(
        "quantization.base",
        ValueKind::OneOf(&["auto", "nf4", "gguf", "f32", "bf16"]),
        Lit::Str("auto"),
        "How frozen base weights are held: auto = as stored, else converted",
    ),
    // compute
    KeyDef::new(
        "compute.device",
        ValueKind::Str,
        Lit::Str("auto"),
        "Where to compute: auto (a CUDA GPU when one and its libraries load, else the CPU), \
         cpu, cuda or cuda:N; --device overrides it",
    ),
    // output (references into Parameter Store, as in the original)
    KeyDef::new(
        "output.s3_bucket",
        ValueKind::Str,
        Lit::Null,
        "S3 bucket that receives the trained model",
    )
    .ssm("/fine-tune-slm/s3/bucket"),
    KeyDef::new(
        "output.s3_prefix",
        ValueKind::Str,
        Lit::Str("models/llama-3.1-8b-medical-ie"),
        "S3 key prefix; each run goes under <prefix>/<YYYYmmdd_HHMMSS>/",
    )
    .ssm("/fine-tune-slm/s3/prefix"),
    KeyDef::new(
        "output.hf_repo",
        ValueKind::Str,
        Lit::Null,
        "HuggingFace repo (e.g., username/llama-3.1-8b-medical-ie)",
    )
    .ssm("/fine-tune-slm/output/hf-repo"),
    // aws
    KeyDef::new(
        "aws.region",
        ValueKind::Str,
        Lit::Str("us-east-1"),
        "AWS region of every AWS call, Parameter Store included",
    )
    .ssm("/fine-tune-slm/aws/region"),
    KeyDef::new(
        "aws.ec2.instance_id",
        ValueKind::Str,
        Lit::Null,
        "EC2 instance ID for training (e.g., i-1234567890abcdef0)",
    )
    .ssm("/fine-tune-slm/ec2/instance-id"),
    KeyDef::new(
        "aws.ec2.instance_type",
        ValueKind::Str,
        Lit::Str("g6.2xlarge"),
        "EC2 instance type of the training machine",
    )
    .ssm("/fine-tune-slm/ec2/instance-type"),
    KeyDef::new(
        "aws.ec2.hourly_price_usd",
        ValueKind::Float,
        Lit::Null,
        "On-demand price per hour, for the cost `cloud stop` prints; null = ftslm's table",
    )
    .nullable(),
    KeyDef::new(
        "aws.ec2.idle_shutdown_minutes",
        ValueKind::Int { min: 0 },
        Lit::Int(30),
        "The instance shuts itself down after this long without an ftslm command (0 = never)",
    ),
    KeyDef::new(
        "aws.ebs.volume_id",
        ValueKind::Str,
        Lit::Null,
        "EBS volume ID for checkpoints (e.g., vol-1234567890abcdef0)",
    )
    .ssm("/fine-tune-slm/ebs/volume-id"),
    KeyDef::new(
        "aws.ebs.mount_path",
        ValueKind::Str,
        Lit::Str("/mnt/training"),
        "Where the EBS volume is mounted on the instance",
    )
    .ssm("/fine-tune-slm/ebs/mount-path"),
    KeyDef::new(
        "aws.ebs.volume_type",
        ValueKind::Str,
        Lit::Str("gp3"),
        "EBS volume type",
    )
    .ssm("/fine-tune-slm/ebs/volume-type"),
    KeyDef::new(
        "aws.ebs.size_gb",
        POSITIVE,
        Lit::Int(100),
        "EBS volume size in GiB",
    )
    .ssm("/fine-tune-slm/ebs/size-gb"),
    KeyDef::new(
        "aws.s3.bucket",
        ValueKind::Str,
        Lit::Null,
        "S3 bucket for model artifacts (e.g., fine-tune-llama-models)",
    )
    .ssm("/fine-tune-slm/s3/bucket"),
    KeyDef::new(
        "aws.s3.prefix",
        ValueKind::Str,
        Lit::Str("models/llama-3.1-8b-medical-ie"),
        "S3 key prefix of the runs",
    )
    .ssm("/fine-tune-slm/s3/prefix"),
    KeyDef::new(
        "aws.ecr.repository",
        ValueKind::Str,
        Lit::Str("fine-tune-llama"),
        "ECR repository of the training image",
    )
    .ssm("/fine-tune-slm/ecr/repository"),
    KeyDef::new(
        "aws.ecr.registry",
        ValueKind::Str,
        Lit::Null,
        "ECR registry URL (e.g., 123456789012.dkr.ecr.us-east-1.amazonaws.com)",
    )
    .ssm("/fine-tune-slm/ecr/registry"),
    KeyDef::new(
        "aws.ecr.image_tag",
        ValueKind::Str,
        Lit::Str("latest"),
        "Tag of the training image pulled from the repository",
    ),
    KeyDef::new(
        "aws.secrets_manager.hf_token_secret",
        ValueKind::Str,
        Lit::Str("huggingface/api-token"),
        "Secrets Manager secret holding the Hugging Face token",
    )
    .ssm("/fine-tune-slm/secrets/hf-token-name"),
    KeyDef::new(
        "aws.secrets_manager.aws_credentials_secret",
        ValueKind::Str,
        Lit::Str("aws/credentials"),
        "Secrets Manager secret holding AWS credentials for the instance",
    )
    .ssm("/fine-tune-slm/secrets/aws-credentials-name"),
    KeyDef::new(
        "aws.secrets_manager.docker_token_secret",
        ValueKind::Str,
        Lit::Str("docker/token"),
        "Secrets Manager secret holding the Docker registry token",
    )
    .ssm("/fine-tune-slm/secrets/docker-token-name"),
    KeyDef::new(
        "aws.cloudwatch.log_group",
        ValueKind::Str,
        Lit::Str("/aws/ssm/fine-tune-llama"),
        "CloudWatch Logs group that receives command output",
    )
    .ssm("/fine-tune-slm/cloudwatch/log-group"),
    KeyDef::new(
        "aws.cloudwatch.log_stream_prefix",
        ValueKind::Str,
        Lit::Str("training"),
        "Prefix of the CloudWatch log streams",
    )
    .ssm("/fine-tune-slm/cloudwatch/log-stream-prefix"),
];
