//! The EBS volume that holds checkpoints and outputs, attached to the training
//! instance before `cloud deploy` mounts it. Attaching is idempotent; a volume
//! attached to another instance is never taken from it, because that instance
//! may be writing to it.

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Volume, VolumeAttachmentState, VolumeState};
use serde::Serialize;

use crate::aws::wait_blocking;
use crate::aws::{call_error, Aws, AwsError};
use crate::instance::{describe_ec2, run};

/// Attaching takes seconds; the rest is room for a volume still detaching
/// from a stopped instance.
pub const DEFAULT_ATTACH_LIMIT: Duration = Duration::from_secs(3 * 60);

/// The volume's attachment to the instance after [`ensure_attached`].
#[derive(Debug, Clone, Serialize)]
pub struct VolumeAttachment {
    pub volume_id: String,
    pub instance_id: String,
    /// The device name the attachment uses (on Nitro instances the block
    /// device is an NVMe disk whose serial is the volume id, whatever this says).
    pub device: String,
    /// The attachment state, `attached` once done.
    pub state: String,
    /// Nothing was done: it was already attached to this instance.
    pub already_attached: bool,
}

/// Makes sure `volume_id` is attached to `instance_id`, attaching it as
/// `device` (e.g. `/dev/sdf`) when it is free and in the instance's
/// availability zone, and waiting within `limit` for the attachment.
pub fn ensure_attached(
    aws: &Aws,
    volume_id: &str,
    instance_id: &str,
    device: &str,
    limit: Duration,
    progress: &dyn Fn(&str),
) -> Result<VolumeAttachment, AwsError> {
    let started = Instant::now();
    let volume = describe_volume(aws, volume_id)?;
    if let Some(attachment) = attachment_to(&volume, instance_id) {
        let state = attachment_state(attachment);
        if state == "attached" {
            progress(&format!(
                "volume {volume_id} is already attached to {instance_id}"
            ));
            return Ok(VolumeAttachment {
                volume_id: volume_id.to_string(),
                instance_id: instance_id.to_string(),
                device: attachment.device().unwrap_or(device).to_string(),
                state,
                already_attached: true,
            });
        }
        if state == "attaching" {
            progress(&format!(
                "volume {volume_id} is being attached to {instance_id}"
            ));
            return wait_attached(
                aws,
                volume_id,
                instance_id,
                device,
                started,
                limit,
                progress,
            )
            .map(|a| VolumeAttachment {
                already_attached: true,
                ..a
            });
        }
    }
    refuse_if_elsewhere(&volume, volume_id, instance_id)?;

    // A volume still detaching from a (stopped) instance becomes free by itself.
    let volume = match volume.state() {
        Some(VolumeState::Available) => volume,
        Some(VolumeState::Creating | VolumeState::InUse) => {
            progress(&format!("waiting for volume {volume_id} to be available"));
            wait_blocking(
                aws,
                &format!("volume {volume_id} to be available"),
                started,
                limit,
                || {
                    let volume = describe_volume(aws, volume_id)?;
                    refuse_if_elsewhere(&volume, volume_id, instance_id)?;
                    Ok((volume.state() == Some(&VolumeState::Available)).then_some(volume))
                },
            )?
        }
        other => {
            return Err(AwsError::Refused(format!(
                "volume {volume_id} is {}, not usable: point aws.ebs.volume_id at a working \
                 volume (`aws ec2 describe-volumes` lists them)",
                other.map(|s| s.as_str()).unwrap_or("in an unknown state")
            )))
        }
    };

    let instance = describe_ec2(aws, instance_id)?;
    match (
        volume.availability_zone(),
        instance.availability_zone.as_deref(),
    ) {
        (Some(volume_zone), Some(instance_zone)) if volume_zone != instance_zone => {
            return Err(AwsError::Refused(format!(
                "volume {volume_id} is in {volume_zone} but instance {instance_id} is in \
                 {instance_zone}, and EBS volumes attach only within their availability zone: \
                 copy it over with `aws ec2 create-snapshot --volume-id {volume_id}` and \
                 `aws ec2 create-volume --snapshot-id snap-… --availability-zone {instance_zone}`, \
                 then set aws.ebs.volume_id to the new volume"
            )))
        }
        _ => {}
    }

    progress(&format!(
        "attaching volume {volume_id} to {instance_id} as {device}"
    ));
    let ec2 = aws.ec2();
    run(aws, async {
        ec2.attach_volume()
            .volume_id(volume_id)
            .instance_id(instance_id)
            .device(device)
            .send()
            .await
            .map_err(|e| call_error("ec2:AttachVolume", e))
    })?;
    wait_attached(
        aws,
        volume_id,
        instance_id,
        device,
        started,
        limit,
        progress,
    )
}

fn wait_attached(
    aws: &Aws,
    volume_id: &str,
    instance_id: &str,
    device: &str,
    started: Instant,
    limit: Duration,
    progress: &dyn Fn(&str),
) -> Result<VolumeAttachment, AwsError> {
    let mut last = String::new();
    wait_blocking(
        aws,
        &format!("volume {volume_id} to be attached to instance {instance_id}"),
        started,
        limit,
        || {
            let volume = describe_volume(aws, volume_id)?;
            let Some(attachment) = attachment_to(&volume, instance_id) else {
                // EC2 is eventually consistent: the attachment may not show yet,
                // but one to another instance means someone else won the race.
                refuse_if_elsewhere(&volume, volume_id, instance_id)?;
                return Ok(None);
            };
            let state = attachment_state(attachment);
            if state != last {
                progress(&format!("volume {volume_id}: {state}"));
                last.clone_from(&state);
            }
            let done = state == "attached" && volume.state() == Some(&VolumeState::InUse);
            Ok(done.then(|| VolumeAttachment {
                volume_id: volume_id.to_string(),
                instance_id: instance_id.to_string(),
                device: attachment.device().unwrap_or(device).to_string(),
                state,
                already_attached: false,
            }))
        },
    )
}

fn describe_volume(aws: &Aws, volume_id: &str) -> Result<Volume, AwsError> {
    let ec2 = aws.ec2();
    let region = aws.region().unwrap_or("the configured region").to_string();
    let not_found = || AwsError::NotFound {
        what: format!("EBS volume {volume_id} (region {region})"),
        fix: "check aws.ebs.volume_id and aws.region (`ftslm params list`); \
              `aws ec2 describe-volumes` lists the volumes of the region"
            .to_string(),
    };
    run(aws, async {
        let output = ec2
            .describe_volumes()
            .volume_ids(volume_id)
            .send()
            .await
            .map_err(|e| {
                let error = call_error("ec2:DescribeVolumes", e);
                match error.code() {
                    Some("InvalidVolume.NotFound" | "InvalidVolume.Malformed") => not_found(),
                    _ => error,
                }
            })?;
        output
            .volumes()
            .iter()
            .find(|v| v.volume_id() == Some(volume_id))
            .cloned()
            .ok_or_else(not_found)
    })
}

fn attachment_to<'a>(
    volume: &'a Volume,
    instance_id: &str,
) -> Option<&'a aws_sdk_ec2::types::VolumeAttachment> {
    volume
        .attachments()
        .iter()
        .find(|a| a.instance_id() == Some(instance_id))
}

fn attachment_state(attachment: &aws_sdk_ec2::types::VolumeAttachment) -> String {
    attachment
        .state()
        .map(VolumeAttachmentState::as_str)
        .unwrap_or("unknown")
        .to_string()
}

/// A volume attached (or attaching) to another instance is that instance's.
fn refuse_if_elsewhere(
    volume: &Volume,
    volume_id: &str,
    instance_id: &str,
) -> Result<(), AwsError> {
    let elsewhere = volume.attachments().iter().find(|a| {
        a.instance_id() != Some(instance_id)
            && matches!(
                a.state(),
                Some(VolumeAttachmentState::Attached | VolumeAttachmentState::Attaching)
            )
    });
    match elsewhere {
        Some(other) => {
            let other_id = other.instance_id().unwrap_or("another instance");
            Err(AwsError::Refused(format!(
                "volume {volume_id} is attached to instance {other_id}, not to {instance_id}; \
                 ftslm does not take it away (that instance may be writing to it): unmount it \
                 there and detach it first with `aws ec2 detach-volume --volume-id {volume_id}`, \
                 or point aws.ec2.instance_id at {other_id}"
            )))
        }
        None => Ok(()),
    }
}
