//! `ftslm generate`: the chat template around one prompt, then the model's
//! continuation, printed alone on stdout.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;
use ftslm_data::ChatMessage;
use ftslm_model::generate::{GenerationOptions, Sampling, StopReason};

use crate::cli::{GenerateArgs, GlobalArgs};
use crate::inference::{describe_decoding, load_model};
use crate::output::note;

pub fn run(global: &GlobalArgs, args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let sampling = Sampling::from_flags(args.temperature, args.top_k, args.top_p, args.seed);
    if let Some(problem) = sampling.problem() {
        bail!("{problem}");
    }
    let loaded = load_model(
        global,
        &args.model,
        super::device::compute_policy(global)?,
        args.system.clone(),
        None,
    )?;
    // An adapter trained by ftslm answers best under the system prompt it was
    // trained with; without one the chat template's default applies.
    let recorded = loaded.task.recorded.as_ref();
    let system = args
        .system
        .clone()
        .or_else(|| recorded.map(|t| t.system_prompt.clone()));
    if recorded.is_some() {
        for n in &loaded.notes {
            note(global.quiet, n);
        }
    }
    let mut messages = Vec::new();
    if let Some(system) = &system {
        messages.push(ChatMessage::new("system", system.as_str()));
    }
    messages.push(ChatMessage::new("user", args.prompt.as_str()));
    let prompt = loaded.tokenizer.encode_prompt_messages(&messages)?;
    let options = GenerationOptions {
        max_new_tokens: args.max_new_tokens,
        sampling,
        stop_ids: loaded.stop_ids(),
    };
    let started = Instant::now();
    let out = loaded.generate(&[prompt], &options)?;
    let Some(generated) = out.into_iter().next() else {
        bail!("the model returned no sequence");
    };
    describe_decoding(
        global,
        "generated",
        generated.tokens.len(),
        started.elapsed().as_secs_f64(),
    );
    if let StopReason::NonFinite(why) = &generated.stop {
        bail!("{why}");
    }
    println!("{}", loaded.tokenizer.decode(&generated.tokens)?);
    if generated.stop == StopReason::MaxNewTokens {
        note(
            global.quiet,
            format!(
                "stopped at --max-new-tokens {} before the model ended its turn",
                args.max_new_tokens
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}
