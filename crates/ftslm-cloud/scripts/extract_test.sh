#!/usr/bin/env bash
# `ftslm cloud test`, on the instance: copies a run's adapter from S3 to
# MOUNT_PATH/pulled/RUN_TIMESTAMP/final_model (once; checked against the run's
# SHA256SUMS), then runs `ftslm extract --json` with it inside the image.
#
# Inputs (readonly header): IMAGE MOUNT_PATH REGION BUCKET PREFIX RUN_TIMESTAMP
#   TEXT BASE_MODEL (empty: the adapter's base_model_name_or_path)
#   IDLE_SHUTDOWN_MINUTES
# shellcheck disable=SC2154  # inputs come from the rendered header
set -euo pipefail

RUN_URI="s3://$BUCKET/${PREFIX:+$PREFIX/}$RUN_TIMESTAMP"
PULLED="$MOUNT_PATH/pulled"
ADAPTER="$PULLED/$RUN_TIMESTAMP/final_model"
ADAPTER_IN_IMAGE="/workspace/pulled/$RUN_TIMESTAMP/final_model"

# The adapter is assembled beside its final place and moved there only once
# complete and verified, so an existing final_model is always a whole one.
pull_adapter() {
    local staging="$PULLED/.partial-$RUN_TIMESTAMP"
    ftslm_begin adapter-pull
    if [[ -d $ADAPTER ]]; then
        ftslm_note "the adapter of run $RUN_TIMESTAMP is already in $ADAPTER"
        ftslm_step adapter-pull ok
        return 0
    fi
    rm -rf "$staging"
    mkdir -p "$staging"
    aws s3 cp --only-show-errors --region "$REGION" "$RUN_URI/SHA256SUMS" "$staging/SHA256SUMS" ||
        ftslm_die "cannot read $RUN_URI/SHA256SUMS: the run does not exist or its upload did not complete (ftslm runs list shows the complete runs)"
    aws s3 cp --recursive --only-show-errors --region "$REGION" "$RUN_URI/final_model/" "$staging/final_model/" ||
        ftslm_die "cannot copy $RUN_URI/final_model/ to $staging"
    if [[ ! -f $staging/final_model/adapter_config.json ]]; then
        ftslm_die "$RUN_URI/final_model/ holds no adapter_config.json"
    fi
    grep -E '^[0-9a-f]{64}  final_model/' "$staging/SHA256SUMS" >"$staging/final_model.sums" ||
        ftslm_die "$RUN_URI/SHA256SUMS lists no final_model files"
    (cd "$staging" && sha256sum --check --quiet --strict final_model.sums) ||
        ftslm_die "the copy of $RUN_URI/final_model/ does not match the run's SHA256SUMS"
    mkdir -p "$PULLED/$RUN_TIMESTAMP"
    mv "$staging/final_model" "$ADAPTER"
    rm -rf "$staging"
    ftslm_note "copied the adapter of run $RUN_TIMESTAMP to $ADAPTER"
    ftslm_step adapter-pull ok
}

ftslm_start

if ! mountpoint -q "$MOUNT_PATH"; then
    ftslm_die "$MOUNT_PATH is not a mounted volume: run ftslm cloud deploy first"
fi
pull_adapter

if [[ -n $BASE_MODEL ]]; then
    model=$BASE_MODEL
else
    # `ftslm extract` needs the base model; training recorded which one it used.
    model=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("base_model_name_or_path") or "")' \
        "$ADAPTER/adapter_config.json") ||
        ftslm_die "cannot read $ADAPTER/adapter_config.json"
    if [[ -z $model ]]; then
        ftslm_die "$ADAPTER/adapter_config.json names no base model (base_model_name_or_path): pass --model"
    fi
    ftslm_note "base model (from the adapter's adapter_config.json): $model"
fi

ftslm_begin extract
rc=0
docker run --rm --gpus all -v "$MOUNT_PATH:/workspace" "$IMAGE" \
    extract --model "$model" --adapter "$ADAPTER_IN_IMAGE" --text "$TEXT" --json || rc=$?
if ((rc != 0)); then
    ftslm_step extract failed
    exit "$rc"
fi
ftslm_step extract ok
