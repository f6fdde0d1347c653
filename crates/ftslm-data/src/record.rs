//! One training example as the original system stored it, and the answer text it
//! trains on.
//!
//! The answer of an instruction record is `json.dumps(output, ensure_ascii=False)`
//! of the Python original: one line, keys in their given order, `", "` between
//! items and `": "` after keys. The PyTorch goldens were rendered that way, so
//! token ids only match if we write it byte for byte the same.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The seven fields of the medical information-extraction task, in answer order.
pub const MEDICAL_IE_FIELDS: [&str; 7] = [
    "cancer_type",
    "stage",
    "gene_mutation",
    "biomarker",
    "treatment",
    "response",
    "metastasis_site",
];

/// The system prompt the original system trained with; training and inference share it.
pub const SYSTEM_PROMPT: &str = "You are a medical information extraction assistant. Extract structured cancer-related entities from clinical text.";

/// What the model should answer: a JSON object (the extraction) or free text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    Fields(Map<String, Value>),
    Text(String),
}

impl Answer {
    /// The exact assistant text the model is trained to produce.
    pub fn to_text(&self) -> String {
        match self {
            Answer::Fields(map) => {
                let mut out = String::new();
                write_python_json(&Value::Object(map.clone()), &mut out);
                out
            }
            Answer::Text(text) => text.clone(),
        }
    }
}

/// `{"instruction", "input", "output"}`: the original record format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstructionRecord {
    pub instruction: String,
    pub input: String,
    pub output: Answer,
}

impl InstructionRecord {
    /// The user turn: instruction, a blank line, then the narrative.
    pub fn user_message(&self) -> String {
        user_message(&self.instruction, &self.input)
    }
}

/// The user turn the original system built from an instruction and a narrative.
pub fn user_message(instruction: &str, input: &str) -> String {
    format!("{instruction}\n\nText: {input}")
}

/// One turn of a chat record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

/// A training example in either accepted form.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Instruction(InstructionRecord),
    /// `{"messages": [...]}`; the last message is the assistant's answer.
    Chat(Vec<ChatMessage>),
}

impl Record {
    /// The conversation to render: system prompt (unless a chat record brings its
    /// own), user turn, and the assistant's answer when `with_answer`.
    pub fn messages(&self, system_prompt: &str, with_answer: bool) -> Vec<ChatMessage> {
        match self {
            Record::Instruction(r) => {
                let mut m = vec![
                    ChatMessage::new("system", system_prompt),
                    ChatMessage::new("user", r.user_message()),
                ];
                if with_answer {
                    m.push(ChatMessage::new("assistant", r.output.to_text()));
                }
                m
            }
            Record::Chat(messages) => {
                let mut m = Vec::with_capacity(messages.len() + 1);
                if messages.first().map(|x| x.role.as_str()) != Some("system") {
                    m.push(ChatMessage::new("system", system_prompt));
                }
                let end = if with_answer
                    || messages.last().map(|x| x.role.as_str()) != Some("assistant")
                {
                    messages.len()
                } else {
                    messages.len() - 1
                };
                m.extend(messages[..end].iter().cloned());
                m
            }
        }
    }

    /// The narrative text: what duplicate and overlap checks compare.
    pub fn input_text(&self) -> &str {
        match self {
            Record::Instruction(r) => &r.input,
            Record::Chat(messages) => messages
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| m.content.as_str())
                .unwrap_or(""),
        }
    }

    /// The answer text the model is trained to produce.
    pub fn answer_text(&self) -> String {
        match self {
            Record::Instruction(r) => r.output.to_text(),
            Record::Chat(messages) => messages
                .last()
                .filter(|m| m.role == "assistant")
                .map(|m| m.content.clone())
                .unwrap_or_default(),
        }
    }

    /// The extraction as a JSON object, when the answer is one.
    pub fn answer_fields(&self) -> Option<Map<String, Value>> {
        match self {
            Record::Instruction(InstructionRecord {
                output: Answer::Fields(map),
                ..
            }) => Some(map.clone()),
            Record::Instruction(_) => None,
            Record::Chat(_) => match serde_json::from_str::<Value>(&self.answer_text()) {
                Ok(Value::Object(map)) => Some(map),
                _ => None,
            },
        }
    }
}

/// Python's `json.dumps(value, ensure_ascii=False)` with default separators.
pub fn write_python_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_python_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(v, out);
            }
            out.push(']');
        }
        Value::Null => out.push_str("null"),
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_text_matches_python_json_dumps() {
        let rec: InstructionRecord = serde_json::from_str(
            r#"{"instruction":"i","input":"x","output":{"b":"é \"q\"","a":null,"c":["x",1]}}"#,
        )
        .unwrap();
        assert_eq!(
            rec.output.to_text(),
            r#"{"b": "é \"q\"", "a": null, "c": ["x", 1]}"#
        );
    }

    #[test]
    fn chat_record_without_system_gets_the_default_one() {
        let r = Record::Chat(vec![
            ChatMessage::new("user", "hi"),
            ChatMessage::new("assistant", "{}"),
        ]);
        let m = r.messages("SYS", false);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].content, "SYS");
        assert_eq!(r.answer_text(), "{}");
        assert_eq!(r.input_text(), "hi");
    }
}
