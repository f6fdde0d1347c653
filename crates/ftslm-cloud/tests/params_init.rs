//! `params init` and `params list` against moto's Parameter Store: the repo's
//! config files as the plan, the SDK to read back what was written.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_sdk_ssm::types::{ParameterStringFilter, ParameterType};
use common::sdk_config;
use ftslm_cloud::aws::{Aws, AwsError};
use ftslm_cloud::param_init::{apply, Action, ParameterPlan, PlanError, MAX_DESCRIPTION_CHARS};
use ftslm_cloud::param_list::list;
use ftslm_config::{ConfigLoader, ResolvedConfig};
use ftslm_testkit::moto::MotoServer;

const REGION: &str = "us-east-1";
const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");

/// The values no file gives: the resource ids.
const REQUIRED_SETS: [&str; 5] = [
    "aws.s3.bucket=ftslm-test-bucket",
    "output.hf_repo=someone/llama-medical-ie",
    "aws.ec2.instance_id=i-0123456789abcdef0",
    "aws.ebs.volume_id=vol-0123456789abcdef0",
    "aws.ecr.registry=123456789012.dkr.ecr.us-east-1.amazonaws.com",
];

fn config(sets: &[&str]) -> ResolvedConfig {
    ConfigLoader::new()
        .config_dir(Some(Path::new(CONFIG_DIR)))
        .sets(sets)
        .env_vars(Vec::<(String, String)>::new())
        .parameter_source(None)
        .load()
        .unwrap()
}

fn plan(sets: &[&str]) -> ParameterPlan {
    ParameterPlan::from_config(&config(sets)).unwrap()
}

fn with_required(extra: &[&'static str]) -> Vec<&'static str> {
    REQUIRED_SETS
        .iter()
        .copied()
        .chain(extra.iter().copied())
        .collect()
}

fn aws(moto: &MotoServer) -> Aws {
    Aws::from_sdk_config(sdk_config(&moto.endpoint_url(), REGION))
        .unwrap()
        .with_poll_interval(Duration::from_millis(20))
}

/// What the store holds, read with the SDK: name -> (value, version, description).
fn stored(aws: &Aws) -> BTreeMap<String, (String, i64, Option<String>)> {
    let client = aws.ssm();
    aws.block_on(async {
        let mut values = BTreeMap::new();
        let mut token = None;
        loop {
            let page = client
                .get_parameters_by_path()
                .path("/")
                .recursive(true)
                .set_next_token(token)
                .send()
                .await
                .unwrap();
            for p in page.parameters() {
                values.insert(
                    p.name().unwrap().to_string(),
                    (p.value().unwrap().to_string(), p.version(), None),
                );
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        for (name, entry) in values.iter_mut() {
            let described = client
                .describe_parameters()
                .parameter_filters(
                    ParameterStringFilter::builder()
                        .key("Name")
                        .option("Equals")
                        .values(name.as_str())
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
            entry.2 = described
                .parameters()
                .first()
                .and_then(|m| m.description().map(str::to_string));
        }
        values
    })
    .unwrap()
}

fn put(aws: &Aws, name: &str, value: &str, kind: ParameterType) {
    let client = aws.ssm();
    aws.block_on(
        client
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(kind)
            .send(),
    )
    .unwrap()
    .unwrap();
}

#[test]
fn init_creates_each_distinct_parameter_once_and_a_second_init_changes_nothing() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let config = config(&with_required(&[]));
    let plan = ParameterPlan::from_config(&config).unwrap();
    assert!(plan.missing_required().is_empty());

    // One entry per parameter, each naming every key bound to it.
    let referencing: Vec<_> = config
        .values()
        .iter()
        .filter(|v| v.ssm_param.is_some())
        .collect();
    let mut distinct: Vec<&str> = referencing
        .iter()
        .filter_map(|v| v.ssm_param.as_deref())
        .collect();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() < referencing.len(), "no shared parameter");
    assert_eq!(plan.parameters().len(), distinct.len());
    for v in &referencing {
        let planned = plan.get(v.key()).unwrap();
        assert_eq!(Some(planned.name.as_str()), v.ssm_param.as_deref());
        assert!(planned.keys.contains(&v.key()));
    }
    let bucket = plan.get("/fine-tune-slm/s3/bucket").unwrap();
    assert_eq!(bucket.keys, ["output.s3_bucket", "aws.s3.bucket"]);
    // Set on one key only, the shared parameter still takes it.
    assert_eq!(bucket.value.as_deref(), Some("ftslm-test-bucket"));

    let outcomes = apply(&aws, &plan, false, false).unwrap();
    assert_eq!(outcomes.len(), plan.parameters().len());
    assert!(
        outcomes.iter().all(|o| o.action == Action::Created),
        "{outcomes:#?}"
    );

    let store = stored(&aws);
    assert_eq!(store.len(), plan.parameters().len(), "{store:#?}");
    for planned in plan.parameters() {
        let (value, version, description) = &store[&planned.name];
        assert_eq!(Some(value), planned.value.as_ref(), "{}", planned.name);
        assert_eq!(*version, 1, "{} written more than once", planned.name);
        assert_eq!(description.as_ref(), Some(&planned.description));
    }
    assert_eq!(store["/fine-tune-slm/ebs/size-gb"].0, "100");
    assert_eq!(
        store["/fine-tune-slm/ec2/instance-id"].0,
        "i-0123456789abcdef0"
    );
    assert_eq!(
        store["/fine-tune-slm/ec2/instance-id"].2.as_deref(),
        Some("EC2 instance ID for training (e.g., i-1234567890abcdef0)")
    );
    // The shared parameter describes both keys.
    let bucket_description = store["/fine-tune-slm/s3/bucket"].2.clone().unwrap();
    assert!(
        bucket_description.contains("S3 bucket that receives the trained model")
            && bucket_description.contains("S3 bucket for model artifacts"),
        "{bucket_description}"
    );
    assert!(bucket_description.chars().count() <= MAX_DESCRIPTION_CHARS);

    let again = apply(&aws, &plan, false, false).unwrap();
    assert!(
        again.iter().all(|o| o.action == Action::Unchanged),
        "{again:#?}"
    );
    let again_overwriting = apply(&aws, &plan, true, false).unwrap();
    assert!(again_overwriting
        .iter()
        .all(|o| o.action == Action::Unchanged));
    assert!(stored(&aws).values().all(|(_, version, _)| *version == 1));

    let json = serde_json::to_value(&again[0]).unwrap();
    assert_eq!(json["action"], "unchanged");
    assert_eq!(json["name"], again[0].name.as_str());
}

#[test]
fn a_changed_value_is_kept_unless_overwrite_is_given() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    apply(&aws, &plan(&with_required(&[])), false, false).unwrap();

    let changed = plan(&with_required(&["aws.ebs.size_gb=250"]));
    let kept = apply(&aws, &changed, false, false).unwrap();
    for outcome in &kept {
        if outcome.name == "/fine-tune-slm/ebs/size-gb" {
            assert_eq!(
                outcome.action,
                Action::Kept {
                    existing: "100".into()
                }
            );
            assert_eq!(outcome.value.as_deref(), Some("250"));
        } else {
            assert_eq!(outcome.action, Action::Unchanged, "{}", outcome.name);
        }
    }
    assert_eq!(stored(&aws)["/fine-tune-slm/ebs/size-gb"].0, "100");

    let preview = apply(&aws, &changed, true, true).unwrap();
    let size = preview
        .iter()
        .find(|o| o.name == "/fine-tune-slm/ebs/size-gb")
        .unwrap();
    assert_eq!(
        size.action,
        Action::WouldOverwrite {
            previous: "100".into()
        }
    );
    assert_eq!(stored(&aws)["/fine-tune-slm/ebs/size-gb"].1, 1);

    let overwritten = apply(&aws, &changed, true, false).unwrap();
    let size = overwritten
        .iter()
        .find(|o| o.name == "/fine-tune-slm/ebs/size-gb")
        .unwrap();
    assert_eq!(
        size.action,
        Action::Overwritten {
            previous: "100".into()
        }
    );
    assert_eq!(
        overwritten.iter().filter(|o| o.action.writes()).count(),
        1,
        "{overwritten:#?}"
    );
    let store = stored(&aws);
    assert_eq!(store["/fine-tune-slm/ebs/size-gb"].0, "250");
    assert_eq!(store["/fine-tune-slm/ebs/size-gb"].1, 2);
    let json = serde_json::to_value(size).unwrap();
    assert_eq!(json["action"], "overwritten");
    assert_eq!(json["previous"], "100");
    assert_eq!(json["value"], "250");
}

#[test]
fn a_dry_run_writes_nothing() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let plan = plan(&with_required(&[]));
    let outcomes = apply(&aws, &plan, true, true).unwrap();
    assert_eq!(outcomes.len(), plan.parameters().len());
    assert!(outcomes.iter().all(|o| o.action == Action::WouldCreate));
    assert!(stored(&aws).is_empty());
}

#[test]
fn missing_required_values_are_listed_and_nothing_is_written() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let mut plan = plan(&["aws.ec2.instance_id=i-0123456789abcdef0"]);
    let missing: Vec<String> = plan
        .missing_required()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(
        missing,
        [
            "/fine-tune-slm/s3/bucket",
            "/fine-tune-slm/output/hf-repo",
            "/fine-tune-slm/ebs/volume-id",
            "/fine-tune-slm/ecr/registry"
        ]
    );
    for dry_run in [false, true] {
        let error = apply(&aws, &plan, false, dry_run).unwrap_err();
        assert!(matches!(error, AwsError::Refused(_)), "{error:?}");
        let message = error.to_string();
        for p in plan.missing_required() {
            assert!(message.contains(&p.name), "{message}");
            assert!(
                message.contains(&format!("--set {}=VALUE", p.keys[0])),
                "{message}"
            );
        }
        assert!(message.contains("nothing was written"), "{message}");
        assert!(!message.contains("instance-id"), "{message}");
    }
    assert!(stored(&aws).is_empty());

    // Values typed at a prompt, by key or by parameter name.
    let bad = plan.fill("aws.ebs.size_gb", "lots").unwrap_err();
    assert!(matches!(bad, PlanError::BadValue { .. }), "{bad}");
    assert!(bad.to_string().contains("a positive integer"), "{bad}");
    assert!(matches!(
        plan.fill("aws.nothing", "x"),
        Err(PlanError::Unknown(_))
    ));
    plan.fill("aws.s3.bucket", " typed-bucket ").unwrap();
    plan.fill("/fine-tune-slm/output/hf-repo", "me/repo")
        .unwrap();
    plan.fill("aws.ebs.volume_id", "vol-1").unwrap();
    assert_eq!(plan.missing_required().len(), 1);
    plan.fill("/fine-tune-slm/ecr/registry", "registry.example")
        .unwrap();
    assert!(plan.missing_required().is_empty());
    apply(&aws, &plan, false, false).unwrap();
    let store = stored(&aws);
    assert_eq!(store["/fine-tune-slm/s3/bucket"].0, "typed-bucket");
    assert_eq!(store["/fine-tune-slm/output/hf-repo"].0, "me/repo");
}

#[test]
fn keys_sharing_a_parameter_must_agree() {
    let config = config(&with_required(&["output.s3_bucket=another-bucket"]));
    let error = ParameterPlan::from_config(&config).unwrap_err();
    let message = error.to_string();
    for part in [
        "output.s3_bucket",
        "\"another-bucket\"",
        "aws.s3.bucket",
        "\"ftslm-test-bucket\"",
        "/fine-tune-slm/s3/bucket",
        "(cli)",
    ] {
        assert!(message.contains(part), "{part} missing: {message}");
    }
    // The same value twice is one value.
    let agreeing = plan(&with_required(&["output.s3_bucket=ftslm-test-bucket"]));
    assert_eq!(
        agreeing.get("output.s3_bucket").unwrap().value.as_deref(),
        Some("ftslm-test-bucket")
    );
}

#[test]
fn list_shows_stored_values_unset_ones_and_parameters_the_config_does_not_know() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    put(
        &aws,
        "/fine-tune-slm/ec2/instance-id",
        "i-0fedcba9876543210",
        ParameterType::String,
    );
    put(
        &aws,
        "/fine-tune-slm/extra",
        "left over",
        ParameterType::String,
    );
    put(
        &aws,
        "/fine-tune-slm/deep/secret",
        "hf_notForDisplay123",
        ParameterType::SecureString,
    );
    // More than a page of GetParametersByPath.
    for i in 0..12 {
        put(
            &aws,
            &format!("/fine-tune-slm/many/p{i:02}"),
            &i.to_string(),
            ParameterType::String,
        );
    }
    put(&aws, "/elsewhere/x", "not ours", ParameterType::String);

    let config = config(&[]);
    let listed = list(&aws, &config).unwrap();
    let by_name: BTreeMap<&str, _> = listed.iter().map(|l| (l.name.as_str(), l)).collect();
    assert_eq!(by_name.len(), listed.len(), "a name listed twice");

    let plan_names: Vec<String> = ParameterPlan::from_config(&config)
        .unwrap()
        .parameters()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let known: Vec<&str> = listed
        .iter()
        .filter(|l| !l.unknown_to_config)
        .map(|l| l.name.as_str())
        .collect();
    assert_eq!(known, plan_names);

    let id = by_name["/fine-tune-slm/ec2/instance-id"];
    assert_eq!(id.value.as_deref(), Some("i-0fedcba9876543210"));
    assert_eq!(id.keys, ["aws.ec2.instance_id"]);
    assert_eq!(id.version, Some(1));
    assert!(id.last_modified.is_some());
    assert!(id.is_set());

    let bucket = by_name["/fine-tune-slm/s3/bucket"];
    assert!(!bucket.is_set());
    assert_eq!(bucket.value, None);
    assert_eq!(bucket.display_value(), "(not set)");
    assert_eq!(bucket.keys, ["output.s3_bucket", "aws.s3.bucket"]);

    let extra = by_name["/fine-tune-slm/extra"];
    assert!(extra.unknown_to_config);
    assert!(extra.keys.is_empty());
    assert_eq!(extra.value.as_deref(), Some("left over"));

    let secret = by_name["/fine-tune-slm/deep/secret"];
    assert!(secret.unknown_to_config);
    assert_eq!(secret.value, None);
    assert_eq!(secret.display_value(), "(SecureString)");
    assert_eq!(secret.parameter_type.as_deref(), Some("SecureString"));

    let many = listed
        .iter()
        .filter(|l| l.name.starts_with("/fine-tune-slm/many/"))
        .count();
    assert_eq!(many, 12);
    assert!(!by_name.contains_key("/elsewhere/x"));
    assert_eq!(
        listed.iter().filter(|l| l.unknown_to_config).count(),
        1 + 1 + 12
    );

    let json = serde_json::to_string(&listed).unwrap();
    assert!(!json.contains("notForDisplay"), "{json}");
    assert!(!format!("{listed:?}").contains("notForDisplay"));
}
