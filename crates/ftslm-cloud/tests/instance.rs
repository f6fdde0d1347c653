//! Instance lifecycle and volume attachment against moto's EC2 on loopback:
//! real StartInstances/StopInstances/AttachVolume calls and the waits on their
//! states. moto has no DescribeInstanceInformation (it answers 500), so the SSM
//! agent wait is tested against a stand-in in `ssm_online_stand_in.rs`.

mod common;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{InstanceType, Placement};
use common::sdk_config;
use ftslm_cloud::aws::{Aws, AwsError};
use ftslm_cloud::instance::{
    describe, start, stop, wait_for_state, InstanceState, SsmAgent, StartOptions,
};
use ftslm_cloud::pricing::{table_price, PriceSource};
use ftslm_cloud::volume::ensure_attached;
use ftslm_testkit::moto::MotoServer;

const REGION: &str = "us-east-1";
/// One of the AMIs moto ships with.
const AMI: &str = "ami-12c6146b";
const LIMIT: Duration = Duration::from_secs(30);

fn aws(moto: &MotoServer) -> Aws {
    Aws::from_sdk_config(sdk_config(&moto.endpoint_url(), REGION))
        .unwrap()
        .with_poll_interval(Duration::from_millis(20))
}

/// Progress lines, collected.
#[derive(Default)]
struct Lines(RefCell<Vec<String>>);

impl Lines {
    fn sink(&self) -> impl Fn(&str) + '_ {
        |line: &str| self.0.borrow_mut().push(line.to_string())
    }
    fn any(&self, needle: &str) -> bool {
        self.0.borrow().iter().any(|l| l.contains(needle))
    }
    fn all(&self) -> Vec<String> {
        self.0.borrow().clone()
    }
}

fn quiet(_: &str) {}

/// Launches one instance in `zone` and returns its id.
fn launch(aws: &Aws, instance_type: &str, zone: &str) -> String {
    let ec2 = aws.ec2();
    let output = aws
        .block_on(async {
            ec2.run_instances()
                .image_id(AMI)
                .instance_type(InstanceType::from(instance_type))
                .placement(Placement::builder().availability_zone(zone).build())
                .min_count(1)
                .max_count(1)
                .send()
                .await
        })
        .unwrap()
        .unwrap();
    output.instances()[0].instance_id().unwrap().to_string()
}

/// Stops it behind ftslm's back, as the console or the idle shutdown would.
fn stop_directly(aws: &Aws, instance_id: &str) {
    let ec2 = aws.ec2();
    aws.block_on(async { ec2.stop_instances().instance_ids(instance_id).send().await })
        .unwrap()
        .unwrap();
}

fn terminate_directly(aws: &Aws, instance_id: &str) {
    let ec2 = aws.ec2();
    aws.block_on(async {
        ec2.terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await
    })
    .unwrap()
    .unwrap();
}

/// The state EC2 reports, asked without ftslm's code.
fn state_of(aws: &Aws, instance_id: &str) -> String {
    let ec2 = aws.ec2();
    let output = aws
        .block_on(async {
            ec2.describe_instances()
                .instance_ids(instance_id)
                .send()
                .await
        })
        .unwrap()
        .unwrap();
    output.reservations()[0].instances()[0]
        .state()
        .unwrap()
        .name()
        .unwrap()
        .as_str()
        .to_string()
}

fn create_volume(aws: &Aws, zone: &str) -> String {
    let ec2 = aws.ec2();
    let output = aws
        .block_on(async {
            ec2.create_volume()
                .availability_zone(zone)
                .size(50)
                .send()
                .await
        })
        .unwrap()
        .unwrap();
    output.volume_id().unwrap().to_string()
}

/// (instance id, state) of each attachment, asked without ftslm's code.
fn attachments_of(aws: &Aws, volume_id: &str) -> Vec<(String, String)> {
    let ec2 = aws.ec2();
    let output = aws
        .block_on(async { ec2.describe_volumes().volume_ids(volume_id).send().await })
        .unwrap()
        .unwrap();
    output.volumes()[0]
        .attachments()
        .iter()
        .map(|a| {
            (
                a.instance_id().unwrap().to_string(),
                a.state().unwrap().as_str().to_string(),
            )
        })
        .collect()
}

fn no_ssm_wait() -> StartOptions {
    StartOptions {
        limit: LIMIT,
        wait_for_checks: true,
        wait_for_ssm: false,
    }
}

#[test]
fn describe_shows_a_stopped_instance_and_the_agent_moto_cannot_report() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let id = launch(&aws, "g6.2xlarge", "us-east-1a");
    stop_directly(&aws, &id);

    let status = describe(&aws, &id).unwrap();
    assert_eq!(status.instance_id, id);
    assert_eq!(status.state, InstanceState::Stopped);
    assert_eq!(status.instance_type, "g6.2xlarge");
    assert_eq!(status.availability_zone.as_deref(), Some("us-east-1a"));
    assert!(status.launch_time.is_some());
    assert_eq!(status.system_status.as_deref(), Some("not-applicable"));
    assert_eq!(
        status.hours_since_launch, None,
        "a stopped instance bills no hours"
    );
    // moto lacks DescribeInstanceInformation: the status still comes back, saying why.
    match &status.ssm_agent {
        SsmAgent::Unknown(why) => assert!(why.contains("DescribeInstanceInformation"), "{why}"),
        other => panic!("moto cannot report the agent, got {other:?}"),
    }

    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["state"], "stopped");
    assert_eq!(json["instance_id"], id.as_str());
    assert!(json["launch_time"].as_str().unwrap().contains('T'));
    assert!(json["ssm_agent"].as_str().unwrap().starts_with("Unknown"));
}

#[test]
fn start_waits_for_running_and_the_status_checks_and_never_starts_twice() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let id = launch(&aws, "g6.2xlarge", "us-east-1a");
    stop_directly(&aws, &id);
    assert_eq!(state_of(&aws, &id), "stopped");

    let lines = Lines::default();
    let report = start(&aws, &id, &no_ssm_wait(), &lines.sink()).unwrap();
    assert_eq!(report.previous_state, InstanceState::Stopped);
    assert!(report.start_requested);
    assert!(!report.already_running());
    assert_eq!(report.status.state, InstanceState::Running);
    // moto reports both checks ok once running, so this wait ran for real.
    assert_eq!(report.status.system_status.as_deref(), Some("ok"));
    assert_eq!(report.status.instance_status.as_deref(), Some("ok"));
    assert!(report.status.hours_since_launch.is_some());
    assert_eq!(state_of(&aws, &id), "running");
    assert!(
        lines.any(&format!("starting instance {id} (g6.2xlarge)")),
        "{:?}",
        lines.all()
    );
    assert!(
        lines.any(&format!("instance {id}: running")),
        "{:?}",
        lines.all()
    );
    assert!(lines.any("system ok, instance ok"), "{:?}", lines.all());

    let again = Lines::default();
    let report = start(&aws, &id, &no_ssm_wait(), &again.sink()).unwrap();
    assert_eq!(report.previous_state, InstanceState::Running);
    assert!(!report.start_requested);
    assert!(report.already_running());
    assert!(again.any("already running"), "{:?}", again.all());
    assert!(!again.any("starting instance"), "{:?}", again.all());

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["previous_state"], "running");
    assert_eq!(json["start_requested"], false);
    assert_eq!(json["state"], "running", "status is flattened: {json}");
}

#[test]
fn stop_waits_for_stopped_and_prices_the_hours_from_the_table() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let before_launch = Instant::now();
    let id = launch(&aws, "g6.2xlarge", "us-east-1a");
    assert_eq!(state_of(&aws, &id), "running");

    let lines = Lines::default();
    let report = stop(&aws, &id, None, LIMIT, &lines.sink()).unwrap();
    let elapsed = before_launch.elapsed();
    assert_eq!(state_of(&aws, &id), "stopped");
    assert_eq!(report.previous_state, InstanceState::Running);
    assert!(report.stop_requested);
    assert_eq!(report.instance_type, "g6.2xlarge");
    let hours = report.hours_run.unwrap();
    // From moto's launch time to the stop: at most the test's own time
    // (plus launch-time rounding to the second).
    assert!(hours >= 0.0, "{hours}");
    assert!(
        hours * 3600.0 <= elapsed.as_secs_f64() + 2.0,
        "{hours} h in {elapsed:?}"
    );
    let table = table_price("g6.2xlarge").unwrap();
    assert_eq!(report.hourly_price_usd, Some(table));
    assert_eq!(report.price_source, Some(PriceSource::Table));
    assert!((report.cost_usd.unwrap() - hours * table).abs() < 1e-9);
    assert!(
        lines.any(&format!("instance {id}: stopped")),
        "{:?}",
        lines.all()
    );
    assert!(lines.any(&format!("at ${table}/h")), "{:?}", lines.all());

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["price_source"], "table");
    assert_eq!(json["hours_run"].as_f64(), Some(hours));

    // A second stop sends nothing and claims no hours.
    let again = stop(&aws, &id, None, LIMIT, &quiet).unwrap();
    assert_eq!(again.previous_state, InstanceState::Stopped);
    assert!(!again.stop_requested);
    assert_eq!(again.hours_run, None);
    assert_eq!(again.cost_usd, None);
    assert!(
        again.summary().contains("already stopped"),
        "{}",
        again.summary()
    );
}

#[test]
fn configured_price_wins_and_an_unknown_type_says_how_to_price_it() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let priced = launch(&aws, "g6.2xlarge", "us-east-1a");
    let report = stop(&aws, &priced, Some(2.5), LIMIT, &quiet).unwrap();
    assert_eq!(report.hourly_price_usd, Some(2.5));
    assert_eq!(report.price_source, Some(PriceSource::Config));
    let hours = report.hours_run.unwrap();
    assert!((report.cost_usd.unwrap() - hours * 2.5).abs() < 1e-9);
    assert!(report.summary().contains("aws.ec2.hourly_price_usd"));

    let unpriced = launch(&aws, "m5.large", "us-east-1a");
    assert_eq!(table_price("m5.large"), None);
    let report = stop(&aws, &unpriced, None, LIMIT, &quiet).unwrap();
    assert_eq!(state_of(&aws, &unpriced), "stopped");
    assert!(report.hours_run.is_some());
    assert_eq!(report.hourly_price_usd, None);
    assert_eq!(report.cost_usd, None);
    assert!(
        report
            .summary()
            .contains("price unknown: set aws.ec2.hourly_price_usd"),
        "{}",
        report.summary()
    );
}

#[test]
fn an_unknown_instance_id_is_not_found_with_the_fix() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let missing = "i-0123456789abcdef0";
    for error in [
        describe(&aws, missing).unwrap_err(),
        start(&aws, missing, &no_ssm_wait(), &quiet).unwrap_err(),
        stop(&aws, missing, None, LIMIT, &quiet).unwrap_err(),
    ] {
        assert!(matches!(error, AwsError::NotFound { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(missing), "{message}");
        assert!(message.contains("aws.ec2.instance_id"), "{message}");
        assert!(message.contains("ftslm params list"), "{message}");
    }
}

#[test]
fn a_terminated_instance_is_refused_not_started() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let id = launch(&aws, "g6.2xlarge", "us-east-1a");
    terminate_directly(&aws, &id);

    let error = start(&aws, &id, &no_ssm_wait(), &quiet).unwrap_err();
    assert!(matches!(error, AwsError::Refused(_)), "{error:?}");
    assert!(error.to_string().contains("terminated"), "{error}");
    assert!(error.to_string().contains("aws.ec2.instance_id"), "{error}");
    assert_eq!(state_of(&aws, &id), "terminated");

    let error = stop(&aws, &id, None, LIMIT, &quiet).unwrap_err();
    assert!(matches!(error, AwsError::Refused(_)), "{error:?}");
}

#[test]
fn a_wait_for_a_state_that_never_comes_times_out_naming_it() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let id = launch(&aws, "g6.2xlarge", "us-east-1a");
    assert_eq!(state_of(&aws, &id), "running");

    let limit = Duration::from_millis(300);
    let began = Instant::now();
    let error = wait_for_state(&aws, &id, &InstanceState::Stopped, limit, &quiet).unwrap_err();
    let took = began.elapsed();
    match &error {
        AwsError::Timeout { what, waited } => {
            assert!(what.contains(&id), "{what}");
            assert!(what.contains("stopped"), "{what}");
            assert!(*waited >= limit, "{waited:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(took < limit + Duration::from_secs(5), "{took:?}");
    assert!(error.to_string().starts_with("timed out after"), "{error}");
}

#[test]
fn the_volume_is_attached_once_and_then_reported_as_already_attached() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let id = launch(&aws, "g6.2xlarge", "us-east-1a");
    let volume = create_volume(&aws, "us-east-1a");

    let lines = Lines::default();
    let attached = ensure_attached(&aws, &volume, &id, "/dev/sdf", LIMIT, &lines.sink()).unwrap();
    assert_eq!(attached.volume_id, volume);
    assert_eq!(attached.instance_id, id);
    assert_eq!(attached.device, "/dev/sdf");
    assert_eq!(attached.state, "attached");
    assert!(!attached.already_attached);
    assert_eq!(
        attachments_of(&aws, &volume),
        vec![(id.clone(), "attached".to_string())]
    );
    assert!(lines.any(&format!("attaching volume {volume} to {id} as /dev/sdf")));

    let again = Lines::default();
    let second = ensure_attached(&aws, &volume, &id, "/dev/sdf", LIMIT, &again.sink()).unwrap();
    assert!(second.already_attached);
    assert_eq!(second.state, "attached");
    assert!(again.any("already attached"), "{:?}", again.all());
    assert!(!again.any("attaching volume"), "{:?}", again.all());
    assert_eq!(attachments_of(&aws, &volume).len(), 1);
}

#[test]
fn a_volume_attached_to_another_instance_is_refused_naming_both() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let owner = launch(&aws, "g6.2xlarge", "us-east-1a");
    let ours = launch(&aws, "g6.2xlarge", "us-east-1a");
    let volume = create_volume(&aws, "us-east-1a");
    ensure_attached(&aws, &volume, &owner, "/dev/sdf", LIMIT, &quiet).unwrap();

    let error = ensure_attached(&aws, &volume, &ours, "/dev/sdf", LIMIT, &quiet).unwrap_err();
    assert!(matches!(error, AwsError::Refused(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&owner), "{message}");
    assert!(message.contains(&ours), "{message}");
    assert!(
        message.contains(&format!("aws ec2 detach-volume --volume-id {volume}")),
        "{message}"
    );
    // Nothing was taken from the owner.
    assert_eq!(
        attachments_of(&aws, &volume),
        vec![(owner, "attached".to_string())]
    );
}

#[test]
fn a_volume_in_another_availability_zone_is_refused() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let id = launch(&aws, "g6.2xlarge", "us-east-1a");
    let volume = create_volume(&aws, "us-east-1b");

    let error = ensure_attached(&aws, &volume, &id, "/dev/sdf", LIMIT, &quiet).unwrap_err();
    assert!(matches!(error, AwsError::Refused(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("us-east-1a") && message.contains("us-east-1b"),
        "{message}"
    );
    assert!(message.contains("create-snapshot"), "{message}");
    assert!(attachments_of(&aws, &volume).is_empty());
}

#[test]
fn an_unknown_volume_is_not_found_with_the_fix() {
    let Some(moto) = MotoServer::start() else {
        return;
    };
    let aws = aws(&moto);
    let id = launch(&aws, "g6.2xlarge", "us-east-1a");
    let missing = "vol-0123456789abcdef0";
    let error = ensure_attached(&aws, missing, &id, "/dev/sdf", LIMIT, &quiet).unwrap_err();
    assert!(matches!(error, AwsError::NotFound { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(missing), "{message}");
    assert!(message.contains("aws.ebs.volume_id"), "{message}");
}
