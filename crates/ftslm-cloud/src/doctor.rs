//! `ftslm cloud doctor`: before anything costs money, check who we are, that
//! every configured resource exists, and that the permissions AWS lets us probe
//! without side effects are granted — and for each problem, the command that
//! fixes it.

use serde::Serialize;

use crate::aws::{call_error, Aws, AwsError, CloudTarget};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    Ok,
    /// The resource or permission is missing; `fix` says how to create it.
    Missing,
    /// The check itself could not run (network, credentials).
    Failed,
    /// Not checked: it depends on a value that is not configured.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub state: CheckState,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            state: CheckState::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn missing(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            state: CheckState::Missing,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn failed(name: &str, error: &AwsError) -> Check {
        Check {
            name: name.to_string(),
            state: CheckState::Failed,
            detail: error.to_string(),
            fix: None,
        }
    }

    fn skipped(name: &str, error: &AwsError) -> Check {
        Check {
            name: name.to_string(),
            state: CheckState::Skipped,
            detail: error.to_string(),
            fix: None,
        }
    }
}

/// The checks' names, in the order [`run_doctor`] runs them.
const IDENTITY: &str = "identity (sts:GetCallerIdentity)";
const INSTANCE: &str = "EC2 instance (aws.ec2.instance_id)";
const VOLUME: &str = "EBS volume (aws.ebs.volume_id)";
const BUCKET: &str = "S3 bucket (aws.s3.bucket)";
const REPOSITORY: &str = "ECR repository (aws.ecr.repository)";
const LOG_GROUP: &str = "CloudWatch log group (aws.cloudwatch.log_group)";
const HUB_SECRET: &str = "Hub token secret (aws.secrets_manager.hf_token_secret)";
const START_PERMISSION: &str = "permission ec2:StartInstances (dry run)";
const CHECK_NAMES: [&str; 8] = [
    IDENTITY,
    INSTANCE,
    VOLUME,
    BUCKET,
    REPOSITORY,
    LOG_GROUP,
    HUB_SECRET,
    START_PERMISSION,
];

/// Every check, in the order a user would fix them.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub region: String,
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// All checks passed (skipped ones count as problems: something is unset).
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| c.state == CheckState::Ok)
    }
}

/// Runs every check; a failing check never stops the others.
pub fn run_doctor(aws: &Aws, target: &CloudTarget) -> DoctorReport {
    let region = target.region().to_string();
    // Without credentials every call fails the same way: say it once.
    if let Some(problem) = aws.credentials_problem() {
        let checks = CHECK_NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| Check {
                name: name.to_string(),
                state: if i == 0 {
                    CheckState::Failed
                } else {
                    CheckState::Skipped
                },
                detail: if i == 0 {
                    problem.clone()
                } else {
                    "needs AWS credentials".to_string()
                },
                fix: None,
            })
            .collect();
        return DoctorReport { region, checks };
    }
    let mut checks = vec![identity(aws)];
    checks.push(instance(aws, target));
    checks.push(volume(aws, target));
    checks.push(bucket(aws, target));
    checks.push(repository(aws, target));
    checks.push(log_group(aws, target));
    checks.push(secret(aws, target));
    checks.push(start_permission(aws, target));
    DoctorReport { region, checks }
}

fn identity(aws: &Aws) -> Check {
    const NAME: &str = IDENTITY;
    let client = aws.sts();
    match aws
        .block_on(client.get_caller_identity().send())
        .and_then(|r| r.map_err(|e| call_error("sts:GetCallerIdentity", e)))
    {
        Ok(id) => Check::ok(
            NAME,
            format!(
                "account {} as {}",
                id.account().unwrap_or("?"),
                id.arn().unwrap_or("?")
            ),
        ),
        Err(e) => Check {
            fix: Some(
                "configure credentials: `aws configure` or `aws sso login --profile P` and \
                 AWS_PROFILE=P"
                    .to_string(),
            ),
            ..Check::failed(NAME, &e)
        },
    }
}

fn instance(aws: &Aws, target: &CloudTarget) -> Check {
    const NAME: &str = INSTANCE;
    let id = match target.instance_id() {
        Ok(id) => id.to_string(),
        Err(e) => return Check::skipped(NAME, &e),
    };
    let client = aws.ec2();
    let result = aws.block_on(client.describe_instances().instance_ids(&id).send());
    match result.and_then(|r| r.map_err(|e| call_error("ec2:DescribeInstances", e))) {
        Ok(out) => {
            let found = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(id.as_str()));
            match found {
                Some(i) => Check::ok(
                    NAME,
                    format!(
                        "{id} ({}, {})",
                        i.instance_type().map(|t| t.as_str()).unwrap_or("?"),
                        i.state()
                            .and_then(|s| s.name())
                            .map(|s| s.as_str())
                            .unwrap_or("?")
                    ),
                ),
                None => missing_instance(NAME, &id, target),
            }
        }
        Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidInstanceID")) => {
            missing_instance(NAME, &id, target)
        }
        Err(e) => Check::failed(NAME, &e),
    }
}

fn missing_instance(name: &str, id: &str, target: &CloudTarget) -> Check {
    Check::missing(
        name,
        format!("{id} not found in {}", target.region()),
        format!(
            "launch one (docs/aws-setup.md) and record it: ftslm params init --overwrite \
             --set aws.ec2.instance_id=i-…  (instance type {})",
            target.settings.ec2.instance_type
        ),
    )
}

fn volume(aws: &Aws, target: &CloudTarget) -> Check {
    const NAME: &str = VOLUME;
    let id = match target.volume_id() {
        Ok(id) => id.to_string(),
        Err(e) => return Check::skipped(NAME, &e),
    };
    let ebs = &target.settings.ebs;
    let fix = format!(
        "aws ec2 create-volume --availability-zone <the instance's AZ> --volume-type {} --size {} \
         then ftslm params init --overwrite --set aws.ebs.volume_id=vol-…",
        ebs.volume_type, ebs.size_gb
    );
    let client = aws.ec2();
    let result = aws.block_on(client.describe_volumes().volume_ids(&id).send());
    match result.and_then(|r| r.map_err(|e| call_error("ec2:DescribeVolumes", e))) {
        Ok(out) => match out.volumes().first() {
            Some(v) => {
                let attached = v
                    .attachments()
                    .iter()
                    .filter_map(|a| a.instance_id())
                    .collect::<Vec<_>>();
                Check::ok(
                    NAME,
                    format!(
                        "{id} ({} GiB, {}, {})",
                        v.size().unwrap_or(0),
                        v.availability_zone().unwrap_or("?"),
                        if attached.is_empty() {
                            "not attached".to_string()
                        } else {
                            format!("attached to {}", attached.join(", "))
                        }
                    ),
                )
            }
            None => Check::missing(NAME, format!("{id} not found"), fix),
        },
        Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidVolume")) => {
            Check::missing(NAME, format!("{id} not found"), fix)
        }
        Err(e) => Check::failed(NAME, &e),
    }
}

fn bucket(aws: &Aws, target: &CloudTarget) -> Check {
    const NAME: &str = BUCKET;
    let bucket = match target.bucket() {
        Ok(b) => b.to_string(),
        Err(e) => return Check::skipped(NAME, &e),
    };
    let client = aws.s3();
    // Listing one key of the prefix proves both that the bucket exists and that
    // s3:ListBucket is granted, which `runs list` needs.
    let result = aws.block_on(
        client
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(format!("{}/", target.prefix()))
            .max_keys(1)
            .send(),
    );
    match result.and_then(|r| r.map_err(|e| call_error("s3:ListObjectsV2", e))) {
        Ok(_) => Check::ok(NAME, format!("s3://{bucket}/{}/ listable", target.prefix())),
        Err(e) if e.code() == Some("NoSuchBucket") => Check::missing(
            NAME,
            format!("bucket {bucket} does not exist"),
            format!(
                "aws s3api create-bucket --bucket {bucket} --region {}{}",
                target.region(),
                if target.region() == "us-east-1" {
                    String::new()
                } else {
                    format!(
                        " --create-bucket-configuration LocationConstraint={}",
                        target.region()
                    )
                }
            ),
        ),
        Err(e) if e.code() == Some("AccessDenied") => Check::missing(
            NAME,
            format!("s3:ListBucket on {bucket} is denied"),
            "grant the operator policy of docs/aws-setup.md",
        ),
        Err(e) => Check::failed(NAME, &e),
    }
}

fn repository(aws: &Aws, target: &CloudTarget) -> Check {
    const NAME: &str = REPOSITORY;
    let name = target.settings.ecr.repository.clone();
    let client = aws.ecr();
    let result = aws.block_on(
        client
            .describe_repositories()
            .repository_names(&name)
            .send(),
    );
    match result.and_then(|r| r.map_err(|e| call_error("ecr:DescribeRepositories", e))) {
        Ok(out) => Check::ok(
            NAME,
            out.repositories()
                .first()
                .and_then(|r| r.repository_uri())
                .unwrap_or(&name)
                .to_string(),
        ),
        Err(e) if e.code() == Some("RepositoryNotFoundException") => Check::missing(
            NAME,
            format!("repository {name} does not exist"),
            format!(
                "aws ecr create-repository --repository-name {name} --region {}",
                target.region()
            ),
        ),
        Err(e) => Check::failed(NAME, &e),
    }
}

fn log_group(aws: &Aws, target: &CloudTarget) -> Check {
    const NAME: &str = LOG_GROUP;
    let group = target.settings.cloudwatch.log_group.clone();
    let client = aws.logs();
    let result = aws.block_on(
        client
            .describe_log_groups()
            .log_group_name_prefix(&group)
            .send(),
    );
    match result.and_then(|r| r.map_err(|e| call_error("logs:DescribeLogGroups", e))) {
        Ok(out)
            if out
                .log_groups()
                .iter()
                .any(|g| g.log_group_name() == Some(group.as_str())) =>
        {
            Check::ok(NAME, group)
        }
        Ok(_) => Check::missing(
            NAME,
            format!("log group {group} does not exist"),
            format!(
                "aws logs create-log-group --log-group-name {group} --region {}",
                target.region()
            ),
        ),
        Err(e) => Check::failed(NAME, &e),
    }
}

fn secret(aws: &Aws, target: &CloudTarget) -> Check {
    const NAME: &str = HUB_SECRET;
    let name = target.settings.secrets_manager.hf_token_secret.clone();
    let client = aws.secrets();
    // DescribeSecret, not GetSecretValue: the laptop only needs to know the
    // secret is there; the instance reads it.
    let result = aws.block_on(client.describe_secret().secret_id(&name).send());
    match result.and_then(|r| r.map_err(|e| call_error("secretsmanager:DescribeSecret", e))) {
        Ok(_) => Check::ok(NAME, name),
        Err(e) if e.code() == Some("ResourceNotFoundException") => Check::missing(
            NAME,
            format!("secret {name} does not exist"),
            format!(
                "aws secretsmanager create-secret --name {name} --secret-string \
                 '{{\"token\":\"hf_…\"}}' --region {}",
                target.region()
            ),
        ),
        Err(e) => Check::failed(NAME, &e),
    }
}

/// EC2 answers a dry run with `DryRunOperation` when the call would be
/// allowed and `UnauthorizedOperation` when not, without touching the instance.
fn start_permission(aws: &Aws, target: &CloudTarget) -> Check {
    const NAME: &str = START_PERMISSION;
    let id = match target.instance_id() {
        Ok(id) => id.to_string(),
        Err(e) => return Check::skipped(NAME, &e),
    };
    let client = aws.ec2();
    let result = aws.block_on(
        client
            .start_instances()
            .instance_ids(&id)
            .dry_run(true)
            .send(),
    );
    match result.and_then(|r| r.map_err(|e| call_error("ec2:StartInstances", e))) {
        Ok(_) => Check::ok(NAME, "allowed"),
        Err(e) if e.code() == Some("DryRunOperation") => Check::ok(NAME, "allowed"),
        Err(e) if e.code() == Some("UnauthorizedOperation") => Check::missing(
            NAME,
            format!("ec2:StartInstances on {id} is denied"),
            "grant the operator policy of docs/aws-setup.md",
        ),
        Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidInstanceID")) => Check {
            detail: format!("not probed: {id} does not exist"),
            ..Check::skipped(NAME, &e)
        },
        Err(e) => Check::failed(NAME, &e),
    }
}
