//! One JSONL line: a record in either form, or every problem found on it.

use std::path::Path;

use serde_json::{Map, Value};

use super::{Problem, Schema};
use crate::record::{Answer, ChatMessage, InstructionRecord, Record, MEDICAL_IE_FIELDS};

pub(super) fn problem(
    path: &Path,
    line: usize,
    what: impl Into<String>,
    fix: impl Into<String>,
) -> Problem {
    Problem {
        path: path.to_path_buf(),
        line,
        column: None,
        what: what.into(),
        fix: fix.into(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one line into a record, or every problem found on it.
pub fn parse_line(
    path: &Path,
    line: usize,
    content: &str,
    schema: Schema,
) -> Result<Record, Vec<Problem>> {
    if content.trim().is_empty() {
        return Err(vec![problem(
            path,
            line,
            "blank line",
            "remove it: JSONL has one record on every line",
        )]);
    }
    let value: Value = match serde_json::from_str(content) {
        Ok(v) => v,
        Err(e) => {
            return Err(vec![Problem {
                path: path.to_path_buf(),
                line,
                column: Some(e.column()),
                // serde's message ends in "at line 1 column N"; the column is reported above.
                what: format!(
                    "invalid JSON: {}",
                    e.to_string().split(" at line ").next().unwrap_or_default()
                ),
                fix: "each line must be one complete JSON object".into(),
            }]);
        }
    };
    let Value::Object(obj) = value else {
        return Err(vec![problem(
            path,
            line,
            format!("the line is {}, not a JSON object", type_name(&value)),
            "write one object per line: {\"instruction\": ..., \"input\": ..., \"output\": ...}",
        )]);
    };
    if obj.contains_key("messages") {
        parse_chat(path, line, &obj)
    } else {
        parse_instruction(path, line, &obj, schema)
    }
}

const INSTRUCTION_KEYS: [&str; 3] = ["instruction", "input", "output"];

fn unknown_keys(
    path: &Path,
    line: usize,
    obj: &Map<String, Value>,
    allowed: &[&str],
) -> Vec<Problem> {
    obj.keys()
        .filter(|k| !allowed.contains(&k.as_str()) && k.as_str() != "id")
        .map(|k| {
            problem(
                path,
                line,
                format!("unknown key \"{k}\""),
                format!(
                    "remove it; a record has only {} (and an optional id)",
                    allowed.join(", ")
                ),
            )
        })
        .collect()
}

fn parse_instruction(
    path: &Path,
    line: usize,
    obj: &Map<String, Value>,
    schema: Schema,
) -> Result<Record, Vec<Problem>> {
    let mut problems = unknown_keys(path, line, obj, &INSTRUCTION_KEYS);
    let mut text_field = |key: &str| -> Option<String> {
        match obj.get(key) {
            None => {
                problems.push(problem(
                    path,
                    line,
                    format!("missing required key \"{key}\""),
                    "every record needs instruction, input and output (or a chat \"messages\" list)",
                ));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                problems.push(problem(
                    path,
                    line,
                    format!("\"{key}\" is {}, expected a string", type_name(other)),
                    format!("write \"{key}\" as a JSON string"),
                ));
                None
            }
        }
    };
    let instruction = text_field("instruction");
    let input = text_field("input");
    if let Some(i) = &input {
        if i.trim().is_empty() {
            problems.push(problem(
                path,
                line,
                "\"input\" is empty",
                "fill in the narrative to extract from, or remove the record",
            ));
        }
    }
    let output = match obj.get("output") {
        None => {
            problems.push(problem(
                path,
                line,
                "missing required key \"output\"",
                "add the expected answer: an object of fields, or a string",
            ));
            None
        }
        Some(Value::Object(map)) => Some(Answer::Fields(map.clone())),
        Some(Value::String(s)) => Some(Answer::Text(s.clone())),
        Some(other) => {
            problems.push(problem(
                path,
                line,
                format!(
                    "\"output\" is {}, expected an object or a string",
                    type_name(other)
                ),
                "write the answer as a JSON object of fields (or a string)",
            ));
            None
        }
    };
    if schema == Schema::MedicalIe {
        check_medical_output(path, line, obj.get("output"), &mut problems);
    }
    match (instruction, input, output) {
        (Some(instruction), Some(input), Some(output)) if problems.is_empty() => {
            Ok(Record::Instruction(InstructionRecord {
                instruction,
                input,
                output,
            }))
        }
        _ => Err(problems),
    }
}

fn check_medical_output(
    path: &Path,
    line: usize,
    output: Option<&Value>,
    problems: &mut Vec<Problem>,
) {
    let Some(Value::Object(map)) = output else {
        if let Some(Value::String(_)) = output {
            problems.push(problem(
                path,
                line,
                "\"output\" is a string, but the medical-ie schema needs an object",
                format!(
                    "write an object with the fields {}",
                    MEDICAL_IE_FIELDS.join(", ")
                ),
            ));
        }
        return;
    };
    for field in MEDICAL_IE_FIELDS {
        match map.get(field) {
            None => problems.push(problem(
                path,
                line,
                format!("output is missing field \"{field}\""),
                "add it, with null when the text does not state it",
            )),
            Some(Value::String(_)) | Some(Value::Null) => {}
            Some(other) => problems.push(problem(
                path,
                line,
                format!(
                    "output.{field} is {}, expected a string or null",
                    type_name(other)
                ),
                "write the value as a string (join several with \"; \") or null",
            )),
        }
    }
    for key in map.keys() {
        if !MEDICAL_IE_FIELDS.contains(&key.as_str()) {
            problems.push(problem(
                path,
                line,
                format!("output has unexpected field \"{key}\""),
                format!(
                    "the medical-ie schema has exactly {}; remove it or use --schema generic",
                    MEDICAL_IE_FIELDS.join(", ")
                ),
            ));
        }
    }
}

fn parse_chat(path: &Path, line: usize, obj: &Map<String, Value>) -> Result<Record, Vec<Problem>> {
    let mut problems = unknown_keys(path, line, obj, &["messages"]);
    let Some(Value::Array(items)) = obj.get("messages") else {
        problems.push(problem(
            path,
            line,
            "\"messages\" is not a list",
            "write \"messages\": [{\"role\": \"user\", \"content\": ...}, {\"role\": \"assistant\", ...}]",
        ));
        return Err(problems);
    };
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let role = item.get("role").and_then(Value::as_str);
        let content = item.get("content").and_then(Value::as_str);
        match (role, content) {
            (Some(r @ ("system" | "user" | "assistant")), Some(c)) => {
                messages.push(ChatMessage::new(r, c))
            }
            (Some(r), Some(_)) => problems.push(problem(
                path,
                line,
                format!("messages[{i}].role is \"{r}\""),
                "use system, user or assistant",
            )),
            _ => problems.push(problem(
                path,
                line,
                format!("messages[{i}] needs string \"role\" and \"content\""),
                "write each message as {\"role\": \"user\", \"content\": \"...\"}",
            )),
        }
    }
    if problems.is_empty() {
        if messages.last().map(|m| m.role.as_str()) != Some("assistant") {
            problems.push(problem(
                path,
                line,
                "the last message is not from the assistant",
                "end the conversation with the assistant's answer, which is what the model learns",
            ));
        }
        match messages.iter().rev().find(|m| m.role == "user") {
            None => problems.push(problem(
                path,
                line,
                "no user message",
                "add the user turn holding the text to extract from",
            )),
            Some(u) if u.content.trim().is_empty() => problems.push(problem(
                path,
                line,
                "the user message is empty",
                "fill in the text to extract from, or remove the record",
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(Record::Chat(messages))
    } else {
        Err(problems)
    }
}
