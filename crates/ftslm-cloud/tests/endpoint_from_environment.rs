//! `load_config` builds its client the way the AWS CLI does: credentials and
//! `AWS_ENDPOINT_URL` from the environment, region from the configuration. That
//! can only be shown through the process environment, so this file holds one
//! test and its binary nothing else that reads or writes the environment.

mod common;

use ftslm_cloud::load_config;
use ftslm_config::ConfigLoader;
use ftslm_testkit::moto::MotoServer;

#[test]
fn load_config_honours_aws_endpoint_url_and_asks_in_the_configured_region() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let dir = ftslm_testkit::require_shared!("reference/config");
    // moto keeps parameters per region: finding this one proves the region used.
    common::put_parameters(
        &moto.endpoint_url(),
        "eu-west-1",
        &[("/fine-tune-slm/ec2/instance-id", "i-0fromeuwest1")],
    );
    std::env::set_var("AWS_ENDPOINT_URL", moto.endpoint_url());
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let nowhere = std::env::temp_dir().join("ftslm-no-such-aws-config");
    std::env::set_var("AWS_CONFIG_FILE", &nowhere);
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &nowhere);
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_ENDPOINT_URL_SSM");

    let loader = ConfigLoader::new()
        .config_dir(Some(&dir))
        .env_vars([("FTSLM_AWS__REGION", "eu-west-1")]);
    let config = load_config(&loader, true).unwrap();
    let id = config.get("aws.ec2.instance_id").unwrap();
    assert_eq!(id.value, "i-0fromeuwest1", "notes: {:?}", config.notes());
    assert_eq!(id.source.to_string(), "ssm:/fine-tune-slm/ec2/instance-id");

    // --no-ssm: the same loader never asks.
    let offline = load_config(&loader, false).unwrap();
    assert!(offline
        .get("aws.ec2.instance_id")
        .unwrap()
        .is_required_unset());
}
