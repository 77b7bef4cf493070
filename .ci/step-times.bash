# Sourced by .ci/run before the README's test command: one line per step on stderr, e.g.
#   ci: pip took 4262 s
# for the steps apt (chromium), pip (the install, llama.cpp's compile included), ollama
# (bench ollama build), mypy and pytest, then `ci: total N s (exit RC)`. The command itself stays
# the README's, unchanged: bash's DEBUG trap sees each step's first command start (set -T: inside
# the ( ) subshells too), and a step ends where the next begins, or at exit. A step that does
# nothing (chromium already there, no go) gets no line. The steps' start times live in a file,
# because the subshells' variables never reach the shell that runs the next step.
set -T
_ci_steps_file=$(mktemp)
_ci_last_command=""

_ci_step_name() {
    case $1 in
        "apt-get update"*) _ci_name=apt ;;
        *"pip install "*) _ci_name=pip ;;
        "bench ollama build"*) _ci_name=ollama ;;
        "python -m mypy"*) _ci_name=mypy ;;
        "python -m pytest"*) _ci_name=pytest ;;
        *) _ci_name="" ;;
    esac
}

# The step that was running ends now: its line on stderr.
_ci_step_ended() {
    local started="" name=""
    read -r started name < "$_ci_steps_file" || true
    if [[ -n $name ]]; then
        printf 'ci: %s took %d s\n' "$name" $((SECONDS - started)) >&2
    fi
}

_ci_on_command() {
    # Inside a trap handler BASH_COMMAND stays the command the trap interrupted (the EXIT trap:
    # pytest's), so a command seen twice in a row is the same step.
    [[ $BASH_COMMAND == "$_ci_last_command" ]] && return 0
    _ci_last_command=$BASH_COMMAND
    _ci_step_name "$BASH_COMMAND"
    if [[ -n $_ci_name ]]; then
        _ci_step_ended
        printf '%d %s\n' "$SECONDS" "$_ci_name" > "$_ci_steps_file"
    fi
    return 0
}

_ci_on_exit() {
    local rc=$?
    trap - DEBUG
    _ci_step_ended
    printf 'ci: total %d s (exit %d)\n' "$SECONDS" "$rc" >&2
    rm -f "$_ci_steps_file"
    return "$rc"
}

trap _ci_on_command DEBUG
trap _ci_on_exit EXIT
