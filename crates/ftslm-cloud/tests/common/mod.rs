// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

//! SDK configuration for a local moto server: explicit dummy credentials and
//! endpoint, so tests never read the developer's AWS setup.

pub mod world;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssm::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_ssm::types::ParameterType;

pub fn sdk_config(endpoint_url: &str, region: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint_url)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "ftslm-tests",
        )))
        .build()
}

pub async fn put_parameters_async(client: &aws_sdk_ssm::Client, params: &[(&str, &str)]) {
    for (name, value) in params {
        client
            .put_parameter()
            .name(*name)
            .value(*value)
            .r#type(ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .unwrap();
    }
}

/// Writes parameters with the SDK, as `ftslm params init` or the AWS CLI would.
pub fn put_parameters(endpoint_url: &str, region: &str, params: &[(&str, &str)]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = aws_sdk_ssm::Client::new(&sdk_config(endpoint_url, region));
        put_parameters_async(&client, params).await;
    });
}

pub fn delete_parameter(endpoint_url: &str, region: &str, name: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = aws_sdk_ssm::Client::new(&sdk_config(endpoint_url, region));
        client.delete_parameter().name(name).send().await.unwrap();
    });
}
