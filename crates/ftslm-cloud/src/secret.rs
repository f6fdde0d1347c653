//! The Hugging Face token from Secrets Manager, and the rule that a token never
//! reaches a log line, an error message, `--json` output or a process argument.

use std::fmt;

use crate::aws::{call_error, Aws, AwsError};

/// A Hub token. `Debug` and `Display` print `hf_***`; only [`HubToken::expose`]
/// gives the value, for the one place that needs it (an HTTP header, or a
/// file handed to a process through its environment).
#[derive(Clone, PartialEq, Eq)]
pub struct HubToken(String);

impl HubToken {
    pub fn new(value: impl Into<String>) -> HubToken {
        HubToken(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HubToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HubToken(hf_***)")
    }
}

impl fmt::Display for HubToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("hf_***")
    }
}

/// Reads the secret `name` and takes the token from it: the whole string, or
/// the `token` (also `hf_token`, `HF_TOKEN`) field of a JSON object.
pub fn fetch_hub_token(aws: &Aws, name: &str) -> Result<HubToken, AwsError> {
    let client = aws.secrets();
    let output = aws
        .block_on(client.get_secret_value().secret_id(name).send())?
        .map_err(|e| {
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception())
            {
                AwsError::NotFound {
                    what: format!("secret {name:?}"),
                    fix: format!(
                        "aws secretsmanager create-secret --name {name} --secret-string '{{\"token\":\"hf_…\"}}' \
                         (or set aws.secrets_manager.hf_token_secret to the secret's name)"
                    ),
                }
            } else {
                call_error("secretsmanager:GetSecretValue", e)
            }
        })?;
    let text = output.secret_string().ok_or_else(|| {
        AwsError::Refused(format!(
            "secret {name:?} holds binary data; store the token as a string or as {{\"token\": \"hf_…\"}}"
        ))
    })?;
    token_from_secret(name, text)
}

/// The token in a secret's text (see [`fetch_hub_token`]).
pub fn token_from_secret(name: &str, text: &str) -> Result<HubToken, AwsError> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| {
            AwsError::Refused(format!(
                "secret {name:?} looks like JSON but does not parse (line {}, column {}); \
                 store {{\"token\": \"hf_…\"}} or the bare token",
                e.line(),
                e.column()
            ))
        })?;
        for field in ["token", "hf_token", "HF_TOKEN"] {
            if let Some(token) = value.get(field).and_then(|v| v.as_str()) {
                if !token.trim().is_empty() {
                    return Ok(HubToken::new(token.trim()));
                }
            }
        }
        return Err(AwsError::Refused(format!(
            "secret {name:?} is a JSON object without a \"token\" field; store {{\"token\": \"hf_…\"}}"
        )));
    }
    if trimmed.is_empty() {
        return Err(AwsError::Refused(format!("secret {name:?} is empty")));
    }
    Ok(HubToken::new(trimmed))
}

/// `text` with every Hugging Face token (`hf_` followed by 8 or more letters and
/// digits) replaced by `hf_***`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("hf_") {
        let (before, from) = rest.split_at(at);
        let token_len = from[3..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(from.len() - 3);
        let boundary = before
            .chars()
            .last()
            .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
        out.push_str(before);
        if token_len >= 8 && boundary {
            out.push_str("hf_***");
        } else {
            out.push_str(&from[..3 + token_len]);
        }
        rest = &from[3 + token_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted_wherever_they_appear() {
        assert_eq!(
            redact("token=hf_abcDEF123456 and \"hf_ZZZZZZZZZZ\""),
            "token=hf_*** and \"hf_***\""
        );
        // Too short or glued to a word: not a token.
        assert_eq!(redact("hf_abc my_hf_abcdefghij"), "hf_abc my_hf_abcdefghij");
        assert_eq!(format!("{}", HubToken::new("hf_secretsecret")), "hf_***");
        assert_eq!(
            format!("{:?}", HubToken::new("hf_secretsecret")),
            "HubToken(hf_***)"
        );
    }

    #[test]
    fn a_secret_is_a_bare_token_or_a_json_object_with_one() {
        assert_eq!(
            token_from_secret("s", " hf_abcdefgh\n").unwrap().expose(),
            "hf_abcdefgh"
        );
        assert_eq!(
            token_from_secret("s", r#"{"token": "hf_abcdefgh"}"#)
                .unwrap()
                .expose(),
            "hf_abcdefgh"
        );
        assert_eq!(
            token_from_secret("s", r#"{"HF_TOKEN": "hf_abcdefgh"}"#)
                .unwrap()
                .expose(),
            "hf_abcdefgh"
        );
        let missing = token_from_secret("s", r#"{"user": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("without a \"token\" field"), "{missing}");
        let broken = token_from_secret("s", "{\"token\": ")
            .unwrap_err()
            .to_string();
        assert!(broken.contains("does not parse"), "{broken}");
        assert!(token_from_secret("s", "  ").is_err());
    }
}
