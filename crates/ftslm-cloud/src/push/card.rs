//! The model card (`README.md`) the Hub renders for a pushed adapter: YAML
//! front matter in the Hub's model-card metadata (`base_model`,
//! `library_name: peft`, `pipeline_tag`, `tags`, `license`, `datasets`,
//! `model-index` with the evaluation results) and a body with the task, the
//! training settings and results, the extraction scores when an `ftslm eval`
//! report is there, and snippets that load it with PEFT and with ftslm.
//!
//! Front matter values are written as JSON scalars and flow sequences, which
//! are YAML too, so no value (a system prompt with a colon or a quote) can
//! change the document's structure.

use minijinja::Environment;
use serde::Serialize;
use serde_json::json;
use serde_json::Value;

use super::source::PushSource;

/// What the card says, gathered from the run before it is rendered.
#[derive(Debug, Clone, Serialize)]
pub struct CardFacts {
    /// `OWNER/NAME` the card is pushed to.
    pub repo: String,
    /// The base model's Hub id, when known.
    pub base_model: Option<String>,
    pub license: Option<String>,
    pub datasets: Vec<String>,
    pub system_prompt: Option<String>,
    pub instruction: Option<String>,
    pub fields: Vec<String>,
    /// LoRA settings from `adapter_config.json`.
    pub lora: Option<LoraFacts>,
    /// `run_summary.json`, when the adapter came with its run.
    pub summary: Option<Value>,
    /// The `summary` of an `ftslm eval` report of the trained adapter.
    pub eval: Option<Value>,
    /// The same for the base model, for a before/after table.
    pub eval_before: Option<Value>,
    /// Whether the merged model is pushed instead of the adapter.
    pub merged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoraFacts {
    pub r: Option<u64>,
    /// As written (an integer alpha stays an integer).
    pub alpha: Option<Value>,
    pub dropout: Option<Value>,
    pub target_modules: Vec<String>,
}

impl CardFacts {
    /// The facts of `source` for a push to `repo`.
    pub fn gather(source: &PushSource, repo: &str, base_model: Option<&str>) -> CardFacts {
        let task = source.task.as_ref();
        let text = |key: &str| task.and_then(|t| t.get(key)?.as_str().map(str::to_string));
        let a = &source.adapter_config;
        let lora = Some(LoraFacts {
            r: a.get("r").and_then(Value::as_u64),
            alpha: a.get("lora_alpha").cloned(),
            dropout: a.get("lora_dropout").cloned(),
            target_modules: strings(a.get("target_modules")),
        });
        CardFacts {
            repo: repo.to_string(),
            base_model: base_model.map(str::to_string),
            license: source.base_license.clone(),
            datasets: Vec::new(),
            system_prompt: text("system_prompt"),
            instruction: text("instruction"),
            fields: strings(task.and_then(|t| t.get("fields"))),
            lora,
            summary: source.summary.clone(),
            eval: source
                .eval_after
                .as_ref()
                .and_then(|r| r.get("summary").cloned()),
            eval_before: source
                .eval_before
                .as_ref()
                .and_then(|r| r.get("summary").cloned()),
            merged: false,
        }
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON value as a YAML scalar or flow collection.
fn yaml(value: impl Serialize) -> String {
    serde_json::to_string(&value).unwrap_or_else(|_| "null".to_string())
}

const TEMPLATE: &str = r#"---
{%- if base_model %}
base_model: {{ base_model | y }}
{%- endif %}
library_name: {{ (merged and "transformers" or "peft") | y }}
pipeline_tag: "text-generation"
{%- if license %}
license: {{ license | y }}
{%- endif %}
{%- if datasets %}
datasets: {{ datasets | y }}
{%- endif %}
tags: {{ tags | y }}
{%- if metrics %}
model-index:
- name: {{ repo_name | y }}
  results:
  - task:
      type: "text-generation"
      name: "Structured information extraction"
    dataset:
      type: {{ (datasets[0] if datasets else "local") | y }}
      name: "held-out validation records of the training data"
    metrics:
{%- for m in metrics %}
    - type: {{ m.type | y }}
      name: {{ m.name | y }}
      value: {{ m.value | y }}
{%- endfor %}
{%- endif %}
---

# {{ repo_name }}

{% if merged -%}
A fine-tune of [{{ base_model or "its base model" }}]({{ base_url }}) with its
LoRA adapter merged in, trained with QLoRA by ftslm for structured
information extraction. It loads with transformers alone.
{%- else -%}
A LoRA adapter for [{{ base_model or "its base model" }}]({{ base_url }}),
trained with QLoRA by ftslm for structured information extraction.
{%- endif %}
{% if system_prompt or fields %}
## Task

{% if system_prompt -%}
System prompt:

> {{ system_prompt }}
{% endif %}
{%- if instruction %}
Instruction before each text: *{{ instruction }}*
{% endif %}
{%- if fields %}
The answer is one JSON object with the keys {% for f in fields %}`{{ f }}`{% if not loop.last %}, {% endif %}{% endfor %}; a key whose value is not in the text is `null`.
{% endif %}
{%- endif %}
## Training
{% if lora %}
| setting | value |
| --- | --- |
{%- set base_format = summary and summary.frozen_base or "" %}
| method | {% if base_format in ["f32", "bf16", "f16"] %}LoRA on a frozen {{ base_format }} base{% else %}QLoRA: LoRA on a frozen {% if base_format %}{{ base_format }}-quantized {% endif %}base{% endif %} |
| LoRA rank / alpha / dropout | {{ lora.r }} / {{ lora.alpha }} / {{ lora.dropout }} |
| target modules | {% for t in lora.target_modules %}`{{ t }}`{% if not loop.last %}, {% endif %}{% endfor %} |
{%- if summary %}
| optimizer steps | {{ summary.steps }} ({{ "%.3f" | format(summary.epochs) }} epochs, {{ summary.tokens_seen }} tokens) |
| trainable parameters | {{ summary.adapter_parameters }} |
{%- endif %}
{% endif %}
{%- if summary %}
| result | value |
| --- | --- |
{%- if summary.initial_eval_loss is not none %}
| eval loss before training | {{ "%.4f" | format(summary.initial_eval_loss) }} |
{%- endif %}
{%- if summary.best_eval_loss is not none %}
| best eval loss | {{ "%.4f" | format(summary.best_eval_loss) }} (step {{ summary.best_step }}) |
{%- endif %}
{%- if summary.final_eval_loss is not none %}
| final eval loss | {{ "%.4f" | format(summary.final_eval_loss) }} |
{%- endif %}
{%- if summary.final_train_loss is not none %}
| final train loss | {{ "%.4f" | format(summary.final_train_loss) }} |
{%- endif %}
| wall time | {{ "%.1f" | format(summary.wall_time_seconds / 60) }} min{% if summary.train_tokens_per_second %}, {{ "%.0f" | format(summary.train_tokens_per_second) }} tokens/s{% endif %} |
{%- if summary.peak_rss_bytes %}
| peak memory (host) | {{ "%.2f" | format(summary.peak_rss_bytes / 1073741824) }} GiB |
{%- endif %}
{% endif %}
{%- if eval %}
## Extraction scores

On {{ eval.records }} validation records, constrained decoding: JSON valid {{ eval.json_valid }}/{{ eval.records }}, all fields exact {{ eval.all_fields_exact }}/{{ eval.records }}.

| field | exact{% if eval_before %} (base → adapter){% endif %} | F1{% if eval_before %} (base → adapter){% endif %} |
| --- | --- | --- |
{%- for f in eval.fields %}
| {{ f.field }} | {% if before_fields[f.field] %}{{ pct(before_fields[f.field].exact_rate) }} → {% endif %}{{ pct(f.exact_rate) }} | {% if before_fields[f.field] %}{{ pct(before_fields[f.field].f1) }} → {% endif %}{{ pct(f.f1) }} |
{%- endfor %}
| **micro** | {% if eval_before %}{{ pct(eval_before.exact_rate) }} → {% endif %}**{{ pct(eval.exact_rate) }}** | {% if eval_before %}{{ pct(eval_before.micro_f1) }} → {% endif %}**{{ pct(eval.micro_f1) }}** |
{% endif %}
## Use it
{% if merged %}
```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained({{ repo | y }})
tokenizer = AutoTokenizer.from_pretrained({{ repo | y }})
```
{%- else %}
```python
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

model = AutoPeftModelForCausalLM.from_pretrained({{ repo | y }})
tokenizer = AutoTokenizer.from_pretrained({{ repo | y }})
text = "..."  # the text to extract from
messages = [
{%- if system_prompt %}
    {"role": "system", "content": {{ system_prompt | y }}},
{%- endif %}
    {"role": "user", "content": {{ (instruction or "") | y }} + "\n\n" + text},
]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
print(tokenizer.decode(model.generate(inputs, max_new_tokens=256)[0][inputs.shape[1]:], skip_special_tokens=True))
```
{%- endif %}

With ftslm (the prompt and the fields come with the adapter; the answer is
constrained to valid JSON):

```bash
{% if merged -%}
ftslm extract --model {{ repo }} --text "..."
{%- else -%}
ftslm extract --model {{ base_model or "BASE_MODEL" }} --adapter {{ repo }} --text "..."
{%- endif %}
```
"#;

/// The card's Markdown, front matter first.
pub fn render(facts: &CardFacts) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    env.add_filter("y", |v: minijinja::Value| -> String {
        serde_json::to_value(&v).map_or_else(|_| "null".to_string(), yaml)
    });
    env.add_function("pct", |v: Option<f64>| -> String {
        v.map_or("–".to_string(), |v| format!("{:.1}%", v * 100.0))
    });
    env.add_template("card", TEMPLATE)?;
    let repo_name = facts
        .repo
        .rsplit('/')
        .next()
        .unwrap_or(&facts.repo)
        .to_string();
    let base_url = facts.base_model.as_ref().map_or_else(
        || "#".to_string(),
        |b| format!("https://huggingface.co/{b}"),
    );
    let mut tags = vec!["ftslm", "information-extraction", "json"];
    if facts.merged {
        tags.extend(["qlora", "merged"]);
    } else {
        tags.extend(["lora", "qlora", "peft"]);
    }
    let before_fields: serde_json::Map<String, Value> = facts
        .eval_before
        .as_ref()
        .and_then(|e| e.get("fields")?.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| Some((f.get("field")?.as_str()?.to_string(), f)))
        .collect();
    let context = minijinja::Value::from(minijinja::value::Serde(json!({
        "repo": facts.repo,
        "repo_name": repo_name,
        "base_url": base_url,
        "base_model": facts.base_model,
        "license": facts.license,
        "datasets": facts.datasets,
        "tags": tags,
        "metrics": card_metrics(facts),
        "system_prompt": facts.system_prompt,
        "instruction": facts.instruction,
        "fields": facts.fields,
        "lora": facts.lora,
        "summary": facts.summary,
        "eval": facts.eval,
        "eval_before": facts.eval_before,
        "before_fields": before_fields,
        "merged": facts.merged,
    })));
    env.get_template("card")?.render(context)
}

#[derive(Serialize)]
struct CardMetric {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'static str,
    value: f64,
}

/// The `model-index` results: eval loss, and the extraction scores when an
/// eval report is there.
fn card_metrics(facts: &CardFacts) -> Vec<CardMetric> {
    let number = |v: Option<&Value>, key: &str| v.and_then(|v| v.get(key)?.as_f64());
    let mut metrics = Vec::new();
    let summary = facts.summary.as_ref();
    if let Some(loss) = number(summary, "best_eval_loss") {
        metrics.push(CardMetric {
            kind: "loss",
            name: "Eval loss (best)",
            value: loss,
        });
    }
    let eval = facts.eval.as_ref();
    for (key, kind, name) in [
        ("micro_f1", "f1", "Micro F1 over fields"),
        ("exact_rate", "exact_match", "Field exact match"),
        ("json_valid_rate", "accuracy", "Valid JSON rate"),
    ] {
        if let Some(value) = number(eval, key) {
            metrics.push(CardMetric { kind, name, value });
        }
    }
    metrics
}
