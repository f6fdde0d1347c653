#!/usr/bin/env bash
# `ftslm cloud train`, on the instance: `ftslm train` inside the image with the
# volume at /workspace (resuming from the checkpoints in MOUNT_PATH/output),
# then the run archived to s3://BUCKET/PREFIX/RUN_TIMESTAMP/ with SHA256SUMS
# written last, so its presence marks a complete upload. Exits with the
# training's exit code (or the upload's, when training succeeded).
#
# Inputs (readonly header): IMAGE MOUNT_PATH REGION RUN_TIMESTAMP BUCKET PREFIX
#   TRAIN_ARGS (array) HF_TOKEN_SECRET (a secret's name, never its value)
#   IDLE_SHUTDOWN_MINUTES MAX_RUNTIME_SECONDS (empty: no limit)
# shellcheck disable=SC2154  # inputs come from the rendered header
set -euo pipefail

OUTPUT="$MOUNT_PATH/output"
RUN_URI="s3://$BUCKET/${PREFIX:+$PREFIX/}$RUN_TIMESTAMP"
CONTAINER="ftslm-train-$RUN_TIMESTAMP"
# What a run archive holds; checkpoints stay on the volume.
RUN_ITEMS=(final_model best_model metrics.jsonl logs run_summary.json plots)

# The token from a secret's text on stdin: the bare string, or the "token"
# (also "hf_token", "HF_TOKEN") field of a JSON object, as ftslm reads it.
# Exit 3: JSON that does not parse; 4: no token field.
TOKEN_FROM_SECRET='
import json, sys
text = sys.stdin.read().strip()
if text.startswith("{"):
    try:
        value = json.loads(text)
    except ValueError:
        sys.exit(3)
    for field in ("token", "hf_token", "HF_TOKEN"):
        token = value.get(field) if isinstance(value, dict) else None
        if isinstance(token, str) and token.strip():
            sys.stdout.write(token.strip())
            sys.exit(0)
    sys.exit(4)
sys.stdout.write(text)
'

# HF_TOKEN, exported for `docker run -e HF_TOKEN` (the name only, so the value
# is in no process's arguments). Public models need no token, so a secret that
# cannot be read is a warning.
read_hub_token() {
    local secret token err rc
    ftslm_begin hub-token
    if [[ -z $HF_TOKEN_SECRET ]]; then
        ftslm_note "no Hub token secret configured (aws.secrets_manager.hf_token_secret): training without HF_TOKEN"
        ftslm_step hub-token skipped
        return 0
    fi
    err=$(mktemp)
    if ! secret=$(aws secretsmanager get-secret-value --region "$REGION" --secret-id "$HF_TOKEN_SECRET" \
        --query SecretString --output text 2>"$err"); then
        ftslm_warn "cannot read the Hub token from Secrets Manager secret $HF_TOKEN_SECRET ($(tail -n 1 "$err")): training without HF_TOKEN, which only public models allow"
        rm -f "$err"
        ftslm_step hub-token skipped
        return 0
    fi
    rm -f "$err"
    rc=0
    token=$(printf '%s' "$secret" | python3 -c "$TOKEN_FROM_SECRET") || rc=$?
    secret=""
    if ((rc != 0)) || [[ -z $token ]]; then
        ftslm_warn "secret $HF_TOKEN_SECRET holds no token (store the bare token or {\"token\": \"hf_...\"}): training without HF_TOKEN"
        ftslm_step hub-token skipped
        return 0
    fi
    HF_TOKEN=$token
    export HF_TOKEN
    ftslm_note "Hub token read from secret $HF_TOKEN_SECRET"
    ftslm_step hub-token ok
}

# Uploads the run's archive items that exist, then SHA256SUMS. Called in an
# `||` list, where `set -e` does not act, so every failure returns explicitly.
upload_run() {
    local items=() item staging rc
    for item in "${RUN_ITEMS[@]}"; do
        if [[ -e $OUTPUT/$item ]]; then
            items+=("$item")
        fi
    done
    staging=$(mktemp -d) || return
    (cd "$OUTPUT" && find "${items[@]}" -type f -print0 | LC_ALL=C sort -z |
        xargs -0 --no-run-if-empty sha256sum) >"$staging/SHA256SUMS" || {
        rc=$?
        ftslm_warn "cannot checksum the run in $OUTPUT"
        rm -rf "$staging"
        return "$rc"
    }
    for item in "${items[@]}"; do
        if [[ -d $OUTPUT/$item ]]; then
            aws s3 cp --recursive --only-show-errors --region "$REGION" "$OUTPUT/$item" "$RUN_URI/$item/" || {
                rc=$?
                ftslm_warn "uploading $item/ to $RUN_URI/$item/ failed; the run stays in $OUTPUT"
                rm -rf "$staging"
                return "$rc"
            }
        else
            aws s3 cp --only-show-errors --region "$REGION" "$OUTPUT/$item" "$RUN_URI/$item" || {
                rc=$?
                ftslm_warn "uploading $item to $RUN_URI/$item failed; the run stays in $OUTPUT"
                rm -rf "$staging"
                return "$rc"
            }
        fi
        ftslm_note "uploaded $item"
    done
    aws s3 cp --only-show-errors --region "$REGION" "$staging/SHA256SUMS" "$RUN_URI/SHA256SUMS" || {
        rc=$?
        ftslm_warn "uploading SHA256SUMS to $RUN_URI/ failed, so the run counts as incomplete; the run stays in $OUTPUT"
        rm -rf "$staging"
        return "$rc"
    }
    rm -rf "$staging"
    printf 'ftslm-run: %s/\n' "$RUN_URI"
}

ftslm_start

if ! mountpoint -q "$MOUNT_PATH"; then
    ftslm_die "$MOUNT_PATH is not a mounted volume: run ftslm cloud deploy first"
fi
# Two trainings writing one output directory would corrupt each other's checkpoints.
ftslm_running_others train
if ((${#FTSLM_OTHERS[@]} > 0)); then
    ftslm_die "another training is running on this instance (${FTSLM_OTHERS[*]}): wait for it (ftslm cloud logs --follow) or stop it before starting one"
fi
mkdir -p "$OUTPUT"

# A token inherited from the agent's environment would bypass the secret.
unset HF_TOKEN
read_hub_token

ftslm_begin train
docker_cmd=(docker run --rm --name "$CONTAINER" --gpus all -e HF_TOKEN -v "$MOUNT_PATH:/workspace"
    "$IMAGE" train --output-dir /workspace/output ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"})
if [[ -n $MAX_RUNTIME_SECONDS ]]; then
    # timeout signals the docker client, which passes the signal on to ftslm.
    docker_cmd=(timeout --kill-after=120 "$MAX_RUNTIME_SECONDS" "${docker_cmd[@]}")
fi
ftslm_note "training run $RUN_TIMESTAMP in $IMAGE (output $OUTPUT)"
train_rc=0
"${docker_cmd[@]}" || train_rc=$?
if [[ -n $MAX_RUNTIME_SECONDS ]] && ((train_rc == 124 || train_rc == 137)); then
    ftslm_warn "training ran past its limit of ${MAX_RUNTIME_SECONDS}s and was stopped; the checkpoints in $OUTPUT let a re-run resume"
    docker kill "$CONTAINER" >/dev/null 2>&1 || true
fi
if ((train_rc == 0)); then
    ftslm_step train ok
else
    ftslm_warn "training ended with exit code $train_rc"
    ftslm_step train failed
fi

ftslm_begin upload
if [[ ! -d $OUTPUT/final_model ]]; then
    if ((train_rc == 0)); then
        ftslm_note "no final_model in $OUTPUT (a --dry-run writes none): nothing uploaded"
    else
        ftslm_warn "no final_model in $OUTPUT: nothing uploaded; the checkpoints there let a re-run resume"
    fi
    ftslm_step upload skipped
    exit "$train_rc"
fi
if ((train_rc != 0)); then
    ftslm_warn "uploading the final_model already in $OUTPUT anyway; it may come from an earlier run (run_summary.json says which steps it saw)"
fi
upload_rc=0
upload_run || upload_rc=$?
if ((upload_rc == 0)); then
    ftslm_step upload ok
else
    ftslm_step upload failed
fi
if ((train_rc != 0)); then
    exit "$train_rc"
fi
exit "$upload_rc"
