#!/usr/bin/env bash
# `ftslm cloud deploy`, on the instance: find the EBS volume by its id, format
# it only when it holds nothing, mount it at MOUNT_PATH (and in fstab); log in
# to ECR, pull the image, check that the GPU is visible inside it. Running it
# twice changes nothing the first run did.
#
# Inputs (readonly header): VOLUME_ID MOUNT_PATH REGION REGISTRY IMAGE
#   SKIP_VOLUME SKIP_IMAGE (true|false) IDLE_SHUTDOWN_MINUTES
# Test hooks (never set on a real instance): FTSLM_DEV_BY_ID, FTSLM_FSTAB,
#   FTSLM_DEVICE_WAIT_SECONDS.
# shellcheck disable=SC2154  # inputs come from the rendered header
set -euo pipefail

BY_ID_DIR="${FTSLM_DEV_BY_ID:-/dev/disk/by-id}"
FSTAB="${FTSLM_FSTAB:-/etc/fstab}"
DEVICE_WAIT_SECONDS="${FTSLM_DEVICE_WAIT_SECONDS:-60}"

# One field of `blkid -o export` output (on stdin).
export_value() { sed -n "s/^$1=//p" | head -n 1; }

volume() {
    local link dev probe rc fs_type uuid waited=0 existing source

    ftslm_begin volume-device
    # Nitro instances show an EBS volume as an NVMe disk whose serial is the
    # volume id without its dash; sizes or /dev/nvme1n1 can name the wrong disk.
    link="$BY_ID_DIR/nvme-Amazon_Elastic_Block_Store_${VOLUME_ID//-/}"
    # The link appears a few seconds after the attachment.
    while [[ ! -e $link ]]; do
        if ((waited >= DEVICE_WAIT_SECONDS)); then
            ftslm_die "volume $VOLUME_ID has no block device after ${waited}s ($link does not exist): check that it is attached to this instance (ftslm cloud deploy attaches it) and that the instance type is Nitro-based"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    dev=$(readlink -f "$link")
    ftslm_note "volume $VOLUME_ID is $dev"
    ftslm_step volume-device ok

    ftslm_begin volume-filesystem
    rc=0
    probe=$(blkid -p -o export "$dev") || rc=$?
    if ((rc == 2)); then
        # blkid found nothing at all: a new, empty volume.
        ftslm_note "$dev holds no filesystem: formatting it as xfs"
        mkfs -t xfs "$dev"
        probe=$(blkid -p -o export "$dev")
    elif ((rc != 0)); then
        ftslm_die "blkid could not probe $dev (exit $rc); nothing was formatted"
    fi
    fs_type=$(export_value TYPE <<<"$probe")
    uuid=$(export_value UUID <<<"$probe")
    if [[ -z $fs_type ]]; then
        ftslm_die "$dev (volume $VOLUME_ID) holds data but no filesystem blkid knows ($(tr '\n' ' ' <<<"$probe")); ftslm formats only blank volumes: inspect it, and wipe it yourself (wipefs -a $dev) only if its contents are expendable"
    fi
    ftslm_note "$dev has a $fs_type filesystem (UUID $uuid)"
    ftslm_step volume-filesystem ok

    ftslm_begin volume-mount
    mkdir -p "$MOUNT_PATH"
    if mountpoint -q "$MOUNT_PATH"; then
        source=$(findmnt -n -o SOURCE --mountpoint "$MOUNT_PATH" || true)
        if [[ -z $source || $(readlink -f "$source") != "$dev" ]]; then
            ftslm_die "$MOUNT_PATH already has ${source:-another filesystem} mounted, not volume $VOLUME_ID ($dev): unmount it (umount $MOUNT_PATH) or set aws.ebs.mount_path to another directory"
        fi
        ftslm_note "$dev is already mounted at $MOUNT_PATH"
    else
        if [[ -n $(ls -A "$MOUNT_PATH") ]]; then
            ftslm_warn "$MOUNT_PATH already holds files on the root disk; they stay hidden under the volume while it is mounted"
        fi
        mount "$dev" "$MOUNT_PATH"
        ftslm_note "mounted $dev at $MOUNT_PATH"
    fi
    ftslm_step volume-mount ok

    ftslm_begin volume-fstab
    if [[ -z $uuid ]]; then
        ftslm_die "blkid reports no UUID for $dev, so it cannot go into $FSTAB"
    fi
    existing=""
    if [[ -e $FSTAB ]]; then
        existing=$(awk -v m="$MOUNT_PATH" '$1 !~ /^#/ && $2 == m { print $1 }' "$FSTAB")
    fi
    if [[ -z $existing ]]; then
        # nofail: a boot without the volume attached must still come up for SSM.
        printf 'UUID=%s %s %s defaults,nofail 0 2\n' "$uuid" "$MOUNT_PATH" "$fs_type" >>"$FSTAB"
        ftslm_note "added UUID=$uuid at $MOUNT_PATH to $FSTAB"
        ftslm_step volume-fstab ok
    elif grep -qxF "UUID=$uuid" <<<"$existing"; then
        ftslm_note "$FSTAB already mounts UUID=$uuid at $MOUNT_PATH"
        ftslm_step volume-fstab ok
    else
        ftslm_warn "$FSTAB already mounts $(tr '\n' ' ' <<<"$existing")at $MOUNT_PATH; left unchanged, so after a reboot the volume is mounted by the next ftslm cloud deploy rather than at boot (edit $FSTAB to change that)"
        ftslm_step volume-fstab skipped
    fi

    ftslm_begin volume-dirs
    mkdir -p "$MOUNT_PATH/output" "$MOUNT_PATH/pulled"
    ftslm_step volume-dirs ok
}

image() {
    local uid gid

    ftslm_begin ecr-login
    # The password goes through a pipe, never through an argument list.
    aws ecr get-login-password --region "$REGION" |
        docker login --username AWS --password-stdin "$REGISTRY" ||
        ftslm_die "cannot log in to the ECR registry $REGISTRY: the instance role needs ecr:GetAuthorizationToken (docs/aws-setup.md)"
    ftslm_step ecr-login ok

    ftslm_begin image-pull
    docker pull "$IMAGE" ||
        ftslm_die "cannot pull $IMAGE: check that the tag was pushed (ftslm cloud doctor) and that the instance role may read the repository"
    ftslm_step image-pull ok

    ftslm_begin gpu-check
    docker run --rm --gpus all --entrypoint nvidia-smi "$IMAGE" ||
        ftslm_die "no GPU visible inside the image $IMAGE (nvidia-smi failed): check the NVIDIA driver (nvidia-smi on the instance) and the NVIDIA Container Toolkit"
    ftslm_step gpu-check ok

    ftslm_begin output-owner
    if [[ -d $MOUNT_PATH/output ]]; then
        # The image runs as a non-root user, which must be able to write the
        # training output the host created as root.
        uid=$(docker run --rm --entrypoint id "$IMAGE" -u)
        gid=$(docker run --rm --entrypoint id "$IMAGE" -g)
        if [[ ! $uid =~ ^[0-9]+$ || ! $gid =~ ^[0-9]+$ ]]; then
            ftslm_die "cannot tell which user $IMAGE runs as (id printed '$uid' '$gid')"
        fi
        chown "$uid:$gid" "$MOUNT_PATH/output"
        ftslm_note "$MOUNT_PATH/output belongs to the image's user ($uid:$gid)"
        ftslm_step output-owner ok
    else
        ftslm_note "$MOUNT_PATH/output does not exist yet (volume skipped and never deployed)"
        ftslm_step output-owner skipped
    fi
}

ftslm_start

if [[ $SKIP_VOLUME == true ]]; then
    for step in volume-device volume-filesystem volume-mount volume-fstab volume-dirs; do
        ftslm_step "$step" skipped
    done
else
    volume
fi

if [[ $SKIP_IMAGE == true ]]; then
    for step in ecr-login image-pull gpu-check output-owner; do
        ftslm_step "$step" skipped
    done
else
    image
fi
