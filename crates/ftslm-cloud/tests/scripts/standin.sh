#!/usr/bin/env bash
# A stand-in for a command that touches the machine or AWS, for the script
# tests; installed under each name it stands for, it dispatches on $0. Logs its
# argv to $FAKE_LOG (fields \x1f, records \x1e) and keeps state in $FAKE_STATE.
# The test rewrites the first line to the real bash, since PATH holds only
# the sandbox.
set -u
name=${0##*/}
{ printf '%s\x1f' "$name" "$@"; printf '\x1e'; } >>"$FAKE_LOG"
state=$FAKE_STATE
case $name in
blkid)
    dev=${!#}
    if [[ -f $state/fs_type ]]; then
        printf 'DEVNAME=%s\nUUID=%s\nTYPE=%s\n' "$dev" "$(cat "$state/fs_uuid")" "$(cat "$state/fs_type")"
    elif [[ -n ${FAKE_BLKID_PTTYPE:-} ]]; then
        printf 'DEVNAME=%s\nPTTYPE=%s\n' "$dev" "$FAKE_BLKID_PTTYPE"
    else
        exit 2
    fi
    ;;
mkfs)
    [[ $1 == -t ]] || exit 64
    printf '%s' "$2" >"$state/fs_type"
    printf '%s' 8f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b >"$state/fs_uuid"
    ;;
mount)
    printf '%s' "$1" >"$state/mounted_source"
    printf '%s' "$2" >"$state/mounted_target"
    ;;
mountpoint)
    [[ -f $state/mounted_target && $(cat "$state/mounted_target") == "${!#}" ]]
    ;;
findmnt)
    cat "$state/mounted_source"
    ;;
chown) ;;
shutdown)
    exit "${FAKE_SHUTDOWN_RC:-0}"
    ;;
aws)
    case "$1 $2" in
    "ecr get-login-password")
        echo fake-ecr-password
        ;;
    "secretsmanager get-secret-value")
        if [[ -n ${FAKE_SECRET_FILE:-} ]]; then
            cat "$FAKE_SECRET_FILE"
            echo
        else
            echo "An error occurred (ResourceNotFoundException) when calling the GetSecretValue operation: Secrets Manager can't find the specified secret." >&2
            exit 254
        fi
        ;;
    "s3 cp")
        shift 2
        recursive=false
        pos=()
        while (($#)); do
            case $1 in
            --recursive) recursive=true ;;
            --only-show-errors) ;;
            --region) shift ;;
            *) pos+=("$1") ;;
            esac
            shift
        done
        if [[ -n ${FAKE_S3_FAIL:-} && ${pos[1]} == *"$FAKE_S3_FAIL"* ]]; then
            echo "upload failed: An error occurred (AccessDenied)" >&2
            exit 1
        fi
        local_path() { if [[ $1 == s3://* ]]; then printf '%s/%s' "$FAKE_S3" "${1#s3://}"; else printf '%s' "$1"; fi; }
        src=$(local_path "${pos[0]}")
        dst=$(local_path "${pos[1]}")
        if $recursive; then
            # Like S3: a prefix with no objects copies nothing and succeeds.
            [[ -d $src ]] || exit 0
            mkdir -p "$dst"
            cp -R "$src/." "$dst/"
        else
            if [[ ! -f $src ]]; then
                echo "fatal error: An error occurred (404) when calling the HeadObject operation: Key \"${pos[0]}\" does not exist" >&2
                exit 1
            fi
            mkdir -p "$(dirname "$dst")"
            cp "$src" "$dst"
        fi
        ;;
    *)
        echo "aws stand-in: unexpected $*" >&2
        exit 99
        ;;
    esac
    ;;
docker)
    case $1 in
    login)
        pw=$(cat)
        [[ $pw == fake-ecr-password ]] || { echo "wrong password on stdin" >&2; exit 1; }
        echo "Login Succeeded"
        ;;
    pull) exit "${FAKE_PULL_RC:-0}" ;;
    kill) ;;
    run)
        shift
        entry=""
        while (($#)); do
            case $1 in
            --rm) ;;
            --gpus | --name | -e | -v) shift ;;
            --entrypoint) entry=$2; shift ;;
            *) break ;;
            esac
            shift
        done
        shift # the image
        if [[ $entry == nvidia-smi ]]; then
            if [[ -n ${FAKE_NO_GPU:-} ]]; then
                echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver" >&2
                exit 9
            fi
            echo "NVIDIA L4, 23034 MiB"
            exit 0
        fi
        if [[ $entry == id ]]; then
            if [[ $1 == -u ]]; then echo 1000; else echo 1001; fi
            exit 0
        fi
        case $1 in
        train)
            if [[ -z ${HF_TOKEN+set} ]]; then
                echo absent >"$state/hf_token"
            elif [[ $HF_TOKEN == "${FAKE_EXPECTED_TOKEN:-}" ]]; then
                echo match >"$state/hf_token"
            else
                echo other >"$state/hf_token"
            fi
            echo "step 10/10 loss 0.61"
            if [[ -n ${FAKE_TRAIN_SLEEP:-} ]]; then exec sleep "$FAKE_TRAIN_SLEEP"; fi
            exit "${FAKE_TRAIN_RC:-0}"
            ;;
        extract)
            echo '{"line":1,"cancer_type":"melanoma"}'
            exit "${FAKE_EXTRACT_RC:-0}"
            ;;
        esac
        ;;
    esac
    ;;
esac
