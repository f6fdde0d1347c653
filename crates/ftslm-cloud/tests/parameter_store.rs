//! Parameter Store resolution against moto's server on loopback.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use common::{delete_parameter, put_parameters, put_parameters_async, sdk_config};
use ftslm_cloud::SsmParameterSource;
use ftslm_config::{ConfigLoader, ParameterSource, Source};
use ftslm_testkit::moto::MotoServer;
use serde_json::json;

const REGION: &str = "us-east-1";

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn parameters_in_the_store_resolve_the_keys_that_reference_them() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let dir = ftslm_testkit::require_shared!("reference/config");
    let endpoint = moto.endpoint_url();
    put_parameters(
        &endpoint,
        REGION,
        &[
            ("/fine-tune-slm/ec2/instance-id", "i-0123456789abcdef0"),
            ("/fine-tune-slm/s3/bucket", "fine-tune-llama-models"),
            // Sorted names put this one in the second GetParameters batch of ten.
            (
                "/fine-tune-slm/output/hf-repo",
                "someone/llama-3.1-8b-medical-ie",
            ),
            ("/fine-tune-slm/ebs/size-gb", "250"),
        ],
    );
    let source = SsmParameterSource::from_sdk_config(&sdk_config(&endpoint, REGION)).unwrap();
    assert_eq!(source.endpoint_url(), Some(endpoint.as_str()));
    assert_eq!(source.region(), Some(REGION));
    let config = ConfigLoader::new()
        .config_dir(Some(&dir))
        .env_vars(no_env())
        .parameter_source(Some(&source))
        .load()
        .unwrap();

    let id = config.get("aws.ec2.instance_id").unwrap();
    assert_eq!(id.value, json!("i-0123456789abcdef0"));
    assert_eq!(id.source.to_string(), "ssm:/fine-tune-slm/ec2/instance-id");
    for key in ["aws.s3.bucket", "output.s3_bucket"] {
        let bucket = config.get(key).unwrap();
        assert_eq!(bucket.value, json!("fine-tune-llama-models"), "{key}");
        assert_eq!(
            bucket.source,
            Source::Ssm {
                path: "/fine-tune-slm/s3/bucket".into()
            }
        );
    }
    assert_eq!(
        config.str("output.hf_repo"),
        Some("someone/llama-3.1-8b-medical-ie")
    );
    assert_eq!(config.value("aws.ebs.size_gb"), Some(&json!(250)));
    // Parameters that are not in the store keep the file's defaults.
    let instance_type = config.get("aws.ec2.instance_type").unwrap();
    assert_eq!(instance_type.value, json!("g6.2xlarge"));
    assert_eq!(instance_type.source.to_string(), "aws_config.yml:17");

    let unset: Vec<&str> = config.required_unset().iter().map(|v| v.key()).collect();
    assert_eq!(unset, ["aws.ebs.volume_id", "aws.ecr.registry"]);
    assert!(
        config
            .notes()
            .iter()
            .any(|n| n.contains("no value for 13 of 17 referenced parameters")),
        "{:?}",
        config.notes()
    );
}

#[test]
fn values_are_fetched_once_per_run_and_then_served_from_memory() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let endpoint = moto.endpoint_url();
    put_parameters(&endpoint, REGION, &[("/t/a", "first"), ("/t/b", "second")]);
    let source = SsmParameterSource::from_sdk_config(&sdk_config(&endpoint, REGION)).unwrap();
    let names = vec!["/t/a".to_string(), "/t/missing".to_string()];
    let first = source.fetch(&names).unwrap();
    assert_eq!(first.get("/t/a").map(String::as_str), Some("first"));
    assert!(!first.contains_key("/t/missing"));

    delete_parameter(&endpoint, REGION, "/t/a");
    put_parameters(&endpoint, REGION, &[("/t/missing", "late")]);
    // Already-asked names, found or not, are not asked again.
    assert_eq!(source.fetch(&names).unwrap(), first);
    // A new name is.
    let b = source.fetch(&["/t/b".to_string()]).unwrap();
    assert_eq!(b.get("/t/b").map(String::as_str), Some("second"));
}

#[tokio::test]
async fn fetching_from_inside_an_async_runtime_works() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let endpoint = moto.endpoint_url();
    let config = sdk_config(&endpoint, REGION);
    put_parameters_async(&aws_sdk_ssm::Client::new(&config), &[("/t/async", "yes")]).await;
    let source = SsmParameterSource::from_sdk_config(&config).unwrap();
    let found = source.fetch(&["/t/async".to_string()]).unwrap();
    assert_eq!(found.get("/t/async").map(String::as_str), Some("yes"));
    // Dropping the source here must not panic although a runtime is running.
    drop(source);
}

#[test]
fn an_unreachable_endpoint_falls_back_to_defaults_quickly_with_a_note() {
    // A port that was just free and is now closed: connections are refused.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let source = SsmParameterSource::from_sdk_config(&sdk_config(&endpoint, REGION)).unwrap();
    // An empty config folder: only the built-in references are looked up.
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let config = ConfigLoader::new()
        .config_dir(Some(dir.path()))
        .env_vars(no_env())
        .parameter_source(Some(&source))
        .load()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    let note = config
        .notes()
        .iter()
        .find(|n| n.starts_with("SSM not reachable ("))
        .unwrap_or_else(|| panic!("{:?}", config.notes()));
    assert!(note.ends_with("; using defaults"), "{note}");
    assert!(!note.contains('\n'), "{note}");
    // The cause a user can act on, not the SDK's debug dump.
    assert!(note.contains("Connection refused"), "{note}");
    assert!(!note.contains("DispatchFailure {"), "{note}");
    assert_eq!(config.str("aws.ec2.instance_type"), Some("g6.2xlarge"));
    assert_eq!(config.get("aws.region").unwrap().source, Source::Default);
}
