#!/usr/bin/env bash
# `ftslm checkpoints clean`, on the instance: frees the volume of the training
# checkpoints (checkpoint-*, and the backup_* directories `--no-resume` makes)
# and, unless KEEP_FINAL_MODEL, of final_model and best_model. A dry run lists
# what would go, with sizes, and removes nothing. Runs archived in S3 are not
# touched.
#
# Inputs (readonly header): MOUNT_PATH DRY_RUN KEEP_FINAL_MODEL (true|false)
#   IDLE_SHUTDOWN_MINUTES
# shellcheck disable=SC2154  # inputs come from the rendered header
set -euo pipefail

OUTPUT="$MOUNT_PATH/output"

ftslm_start

if ! mountpoint -q "$MOUNT_PATH"; then
    ftslm_die "$MOUNT_PATH is not a mounted volume, so it holds no checkpoints: run ftslm cloud deploy first"
fi
# Removing checkpoints under a running training would break its resume.
ftslm_running_others train
if [[ $DRY_RUN != true ]] && ((${#FTSLM_OTHERS[@]} > 0)); then
    ftslm_die "a training is running on this instance (${FTSLM_OTHERS[*]}): clean after it ends"
fi

shopt -s nullglob
targets=("$OUTPUT"/checkpoint-* "$OUTPUT"/backup_*)
if [[ $KEEP_FINAL_MODEL != true ]]; then
    for dir in final_model best_model; do
        if [[ -e $OUTPUT/$dir ]]; then
            targets+=("$OUTPUT/$dir")
        fi
    done
fi
shopt -u nullglob

if ((${#targets[@]} == 0)); then
    ftslm_note "nothing to clean in $OUTPUT"
    exit 0
fi

# Sizes are measured before anything is removed.
for path in "${targets[@]}"; do
    size=$(du -sh -- "$path" | cut -f 1)
    if [[ $DRY_RUN == true ]]; then
        printf 'would remove %s\t%s\n' "$size" "$path"
    else
        printf 'removing %s\t%s\n' "$size" "$path"
    fi
done
total=$(du -sch -- "${targets[@]}" | tail -n 1 | cut -f 1)

if [[ $DRY_RUN == true ]]; then
    ftslm_note "dry run: would free $total in ${#targets[@]} paths; nothing removed"
    exit 0
fi
rm -rf -- "${targets[@]}"
ftslm_note "freed $total in ${#targets[@]} paths"
