#!/bin/sh
# Start one TaskFlow function: FUNCTION_TARGET is the folder under functions/ (and the target name).
# With arguments, run them instead (e.g. `python -m taskflow.cli migrate` for the migration Job).
set -eu

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

: "${FUNCTION_TARGET:?set FUNCTION_TARGET to one of tasks_api, event_fanout, reminder_dispatch, notifier, recurrence, audit}"
case "$FUNCTION_TARGET" in
    *[!a-z_]* | "")
        echo "entrypoint: invalid FUNCTION_TARGET '$FUNCTION_TARGET'" >&2
        exit 64
        ;;
esac

FUNCTIONS_DIR="${TASKFLOW_FUNCTIONS_DIR:-/app/functions}"
SOURCE="$FUNCTIONS_DIR/$FUNCTION_TARGET/main.py"
if [ ! -f "$SOURCE" ]; then
    echo "entrypoint: no function at $SOURCE" >&2
    exit 66
fi

exec functions-framework --source "$SOURCE" --target "$FUNCTION_TARGET" --port "${PORT:-8080}"
