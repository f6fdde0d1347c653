//! The Hub token from moto's Secrets Manager: both shapes of secret, the missing
//! secret's message, and no token text in any error or debug output.

mod common;

use std::time::Duration;

use aws_sdk_secretsmanager::primitives::Blob;
use common::sdk_config;
use ftslm_cloud::aws::{Aws, AwsError};
use ftslm_cloud::secret::fetch_hub_token;
use ftslm_testkit::moto::MotoServer;

const REGION: &str = "us-east-1";

fn aws(moto: &MotoServer) -> Aws {
    Aws::from_sdk_config(sdk_config(&moto.endpoint_url(), REGION))
        .unwrap()
        .with_poll_interval(Duration::from_millis(20))
}

fn create_secret(aws: &Aws, name: &str, text: &str) {
    let client = aws.secrets();
    aws.block_on(client.create_secret().name(name).secret_string(text).send())
        .unwrap()
        .unwrap();
}

/// The result, as `{:?}` and, for an error, as `{}`, shows no part of `secret`.
fn assert_hidden<T: std::fmt::Debug>(result: &Result<T, AwsError>, secret: &str) {
    let debug = format!("{result:?}");
    assert!(!debug.contains(secret), "{debug}");
    if let Err(e) = result {
        let display = e.to_string();
        assert!(!display.contains(secret), "{display}");
    }
}

#[test]
fn a_plain_string_secret_is_the_token() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let token = "hf_PlainSecretToken0123456789";
    create_secret(&aws, "huggingface/api-token", &format!("{token}\n"));
    let result = fetch_hub_token(&aws, "huggingface/api-token");
    assert_hidden(&result, token);
    let fetched = result.unwrap();
    assert_eq!(fetched.expose(), token);
    assert_eq!(fetched.to_string(), "hf_***");
}

#[test]
fn a_json_secret_gives_its_token_field() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let token = "hf_JsonSecretToken0123456789";
    create_secret(
        &aws,
        "team/hf",
        &format!(r#"{{"token": "{token}", "owner": "ml-team"}}"#),
    );
    let result = fetch_hub_token(&aws, "team/hf");
    assert_hidden(&result, token);
    assert_eq!(result.unwrap().expose(), token);
}

#[test]
fn a_missing_secret_names_itself_and_the_command_that_creates_it() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    // Another secret exists; the one asked for does not.
    create_secret(&aws, "huggingface/api-token", "hf_ExistingToken0123456789");
    let result = fetch_hub_token(&aws, "team/missing-token");
    assert_hidden(&result, "hf_ExistingToken0123456789");
    let error = result.unwrap_err();
    assert!(matches!(error, AwsError::NotFound { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("\"team/missing-token\""), "{message}");
    assert!(
        message.contains("aws secretsmanager create-secret --name team/missing-token"),
        "{message}"
    );
    assert!(
        message.contains("aws.secrets_manager.hf_token_secret"),
        "{message}"
    );
}

#[test]
fn secrets_without_a_usable_token_fail_without_echoing_their_content() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let hidden = "hf_WrongFieldToken0123456789";
    create_secret(&aws, "wrong-field", &format!(r#"{{"hf": "{hidden}"}}"#));
    let result = fetch_hub_token(&aws, "wrong-field");
    assert_hidden(&result, hidden);
    let message = result.unwrap_err().to_string();
    assert!(message.contains("without a \"token\" field"), "{message}");

    let broken = "hf_BrokenJsonToken0123456789";
    create_secret(&aws, "broken-json", &format!(r#"{{"token": "{broken}""#));
    let result = fetch_hub_token(&aws, "broken-json");
    assert_hidden(&result, broken);
    assert!(result.unwrap_err().to_string().contains("does not parse"));

    let client = aws.secrets();
    aws.block_on(
        client
            .create_secret()
            .name("binary")
            .secret_binary(Blob::new(b"hf_BinaryToken0123456789".to_vec()))
            .send(),
    )
    .unwrap()
    .unwrap();
    let result = fetch_hub_token(&aws, "binary");
    assert_hidden(&result, "hf_BinaryToken0123456789");
    let error = result.unwrap_err();
    assert!(matches!(error, AwsError::Refused(_)), "{error:?}");
    assert!(error.to_string().contains("binary data"), "{error}");
}
