#!/usr/bin/env bash
# Integration tests with every nginx process (master and workers) under
# valgrind memcheck, then a verdict from the logs.
#
# Usage: scripts/memcheck.sh [--quick] [TEST-FILE[:FILTER]...]
#   (default)   the representative set below: long-poll hold / deliver /
#               abort / timeout / reload / quit, cross-worker wake-ups,
#               sender GET / PUT / POST / DELETE, message/http, 507,
#               EventSource and WebSocket (bad frames, slow readers,
#               pings, close), HTTP/2, the fault-injection paths, every
#               directive's refusals (nginx -t), load across workers with
#               a reload in the middle, several servers through Redis
#               (real redis-servers: restarts, kills, stalls), push_stats,
#               workers killed inside the zone's lock and the recovery
#   --quick     a subset of it, about 1.5 minutes (scripts/test.sh runs it)
#   TEST-FILE   tests/TEST-FILE.rs instead, optionally only the tests whose
#               names contain FILTER (e.g. websocket:bad_frames)
#   --report D  only the verdict on the valgrind logs (vg.*.log) in D
# MEMCHECK_OPTS: more valgrind options (e.g. --track-origins=yes).
#
# The harness starts nginx as `scripts/memcheck-nginx.sh nginx ...`, which
# execs valgrind (PUSH_NGINX_WRAPPER, tests/common/mod.rs), with its
# deadlines scaled (PUSH_TEST_SLOWDOWN).
# Forked workers stay under valgrind by themselves (fork, no exec), each
# with its own log: target/memcheck/vg.<pid>.log. nginx's own and libc's
# known reports are suppressed by scripts/memcheck.supp, each with why.
#
# Fails if a test fails, or if any log has an error that is not
# suppressed: invalid reads/writes/frees, uses of uninitialised values
# (checked where nginx runs one worker, see memcheck-nginx.sh), and blocks
# "definitely lost" at exit. Errors with a frame of the module
# (libngx_http_push.so, push_relay, ngx_http_push, its sources) are listed
# as the module's. A process that died on a signal valgrind saw (SIGSEGV,
# SIGABRT...) is an error; one killed with SIGKILL (a test that kills a
# worker) leaves a log without a summary: counted, not an error.
set -euo pipefail
cd "$(dirname "$0")/.."

# Chosen to reach every code path of the module at least once with one
# and with four workers. An entry `~FILE:FILTER` is a test whose assertions
# are about wall-clock time at a scale valgrind changes (a 1 s message or
# channel timeout, a 500 ms idle timeout, a ping gap measured from when the
# client saw an answer): they pass without valgrind. They run here for the
# paths they reach (expiry, timers), one at a time, and their valgrind logs
# are judged like all others, but not their own pass or fail.
full=(
    listener sender lifecycle delivery cursor msghttp memory
    eventsource websocket http2 failure_paths concurrency aliases
    conf peers stress servers stats crash
    ~memory:message_timeout:: ~memory:zone_full_recovers_after_expiry::
    ~eventsource:pings_when_idle ~eventsource:idle_timeout_ends_cleanly
    ~websocket:server_pings ~websocket:idle_timeout_closes_with_1001
    ~listener:listener_timeout:: ~sender:channel_timeout::
    ~aliases:subscriber_timeout::
)
# One of each kind of path (hold, deliver, wake-up across workers, abort,
# timeout, reload, 507, message/http, streams with bad frames, HTTP/2,
# Redis, stats, recovery after a worker died holding the lock).
quick=(
    lifecycle:abort_while_held lifecycle:reload_answers_held
    delivery:hold_and_deliver delivery:many_rounds_cross_worker
    sender:get_put::workers_1 sender:delete_reaches_all::workers_4
    msghttp:delivers_status_headers_body::workers_1
    memory:zone_full_507::workers_1
    eventsource:a_slow_reader eventsource:headers_and_hello::workers_4
    websocket:bad_client_frames websocket:pings_data_and_close
    http2:workers_4 ~listener:listener_timeout::workers_4
    servers:across_servers::workers_4 stats:counters_and_gauges_follow_the_traffic::workers_4
    crash:killed_with_the_message_stored_but_nobody_told
)
sel=("${full[@]}")
report_only=
case "${1:-}" in
    --quick) sel=("${quick[@]}"); shift ;;
    --report) report_only=$2; shift 2 ;;
    -h | --help) sed -n '2,33p' "$0"; exit 0 ;;
esac
[ $# -gt 0 ] && sel=("$@")
[ -n "$report_only" ] && sel=()
# The timing tests are skipped in the runs of their whole file.
skip=()
for s in "${sel[@]}"; do
    case $s in ~*) skip+=(--skip "${s#*:}") ;; esac
done

export PATH="$HOME/.cargo/bin:$PATH"
logs="$PWD/target/memcheck"
if [ -n "$report_only" ]; then
    logs=$(cd "$report_only" && pwd)
else
    scripts/deps.sh valgrind
    cargo build
    cargo test --no-run 2>/dev/null
    rm -rf "$logs"
    mkdir -p "$logs"
fi
export MEMCHECK_VALGRIND="--tool=memcheck --log-file=$logs/vg.%p.log \
--num-callers=40 --leak-check=full --show-leak-kinds=definite \
--errors-for-leak-kinds=definite --suppressions=$PWD/scripts/memcheck.supp \
--gen-suppressions=all ${MEMCHECK_OPTS:-}"
# scripts/memcheck-nginx.sh runs valgrind (uninitialised-value checks only
# with one worker: see there why).
export PUSH_NGINX_WRAPPER="$PWD/scripts/memcheck-nginx.sh"
# valgrind runs nginx some 20-50 times slower; the harness waits that much
# longer for nginx to start, reload and stop.
export PUSH_TEST_SLOWDOWN=${PUSH_TEST_SLOWDOWN:-6}

start=$(date +%s)
failed=0
for s in "${sel[@]}"; do
    timed=
    case $s in ~*) timed=1 s=${s#\~} ;; esac
    file=${s%%:*}
    filter=
    [ "$file" != "$s" ] && filter=${s#*:}
    out="$logs/test-$file${filter:+-${filter//:/_}}.out"
    if [ -n "$timed" ]; then
        echo "=== memcheck: tests/$file.rs (only *$filter*; its timing is not judged under valgrind)"
        cargo test --test "$file" -- --test-threads=1 "$filter" 2>&1 |
            tee "$out" | grep -E "^test |test result" || true
        grep -q "^test result: ok. 0 passed" "$out" && {
            echo "memcheck: no test of tests/$file.rs matches $filter" >&2
            failed=1
        }
        continue
    fi
    echo "=== memcheck: tests/$file.rs ${filter:+(only *$filter*)}"
    # Two tests at a time: each nginx is 2-5 valgrind processes.
    cargo test --test "$file" -- --test-threads=2 "${skip[@]}" ${filter:+"$filter"} 2>&1 |
        tee "$out" | grep -E "^test |test result|panicked" || true
    if ! grep -q "^test result: ok" "$out"; then
        echo "memcheck: tests/$file.rs failed under valgrind" >&2
        failed=1
    elif grep -q "^test result: ok. 0 passed" "$out"; then
        echo "memcheck: no test of tests/$file.rs matches ${filter:-anything}" >&2
        failed=1
    fi
done
secs=$(($(date +%s) - start))

python3 - "$logs" "$secs" "$failed" <<'EOF'
import glob, os, re, sys

logs, secs, failed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# A frame of the module: its .so, its crates, its source paths.
MODULE = re.compile(r"libngx_http_push\.so|push_relay|ngx_http_push|/relay/src/|"
                    r"/src/(handler|runtime|transport|http|conf)/|/src/(module|slots|lib)\.rs")
HEADER = re.compile(r"^(Memcheck|Copyright|Using Valgrind|Command|Parent PID|HEAP SUMMARY|LEAK SUMMARY|"
                    r"ERROR SUMMARY|For lists|For counts|Rerun with|in use at exit|total heap usage|"
                    r"(definitely|indirectly|possibly) lost:|still reachable:|suppressed:|Reachable blocks|"
                    r"To see them|All heap blocks|Warning: |Searching for|"
                    r"\{|\}|<insert_a_suppression_name_here>|Memcheck:|fun:|obj:|\.\.\.|match-leak-kinds)")
procs = errors = killed = 0
module_errors, other_errors = [], []
for path in sorted(glob.glob(os.path.join(logs, "vg.*.log"))):
    procs += 1
    text = open(path, errors="replace").read()
    if "ERROR SUMMARY" not in text:
        killed += 1
    lines = [re.sub(r"^==\d+== ?", "", l) for l in text.splitlines()]
    # Blocks are separated by empty lines; an error block starts with its
    # description and goes on with "at"/"by" frames (and the frames of the
    # allocation or free it refers to).
    blocks, cur = [], []
    for l in lines:
        if l.strip() == "":
            if cur:
                blocks.append(cur)
            cur = []
        else:
            cur.append(l)
    if cur:
        blocks.append(cur)
    for b in blocks:
        first = b[0].strip()
        if HEADER.match(first) or not any(l.lstrip().startswith(("at 0x", "by 0x")) for l in b):
            continue
        errors += 1
        entry = f"{os.path.basename(path)}: " + "\n    ".join(b[:24])
        (module_errors if any(MODULE.search(l) for l in b) else other_errors).append(entry)
    m = re.findall(r"ERROR SUMMARY: (\d+) errors", text)
    if m and int(m[-1]) and not any(os.path.basename(path) in e for e in module_errors + other_errors):
        other_errors.append(f"{os.path.basename(path)}: ERROR SUMMARY {m[-1]} (see the log)")
        errors += 1

print(f"=== memcheck summary: {procs} nginx processes under valgrind ({killed} killed by tests, no summary), {secs} s")
for title, errs in (("in the module's frames", module_errors), ("elsewhere (nginx, libc: understand, then fix or suppress)", other_errors)):
    print(f"unsuppressed errors {title}: {len(errs)}")
    for e in errs[:20]:
        print("  " + e)
if procs == 0:
    print("memcheck: no valgrind log at all (was nginx started under valgrind?)")
    sys.exit(1)
if failed:
    print("memcheck: FAILED (a test failed under valgrind)")
    sys.exit(1)
if module_errors or other_errors:
    print(f"memcheck: FAILED (logs in {logs})")
    sys.exit(1)
print("memcheck: OK (0 errors in the module's frames, 0 unsuppressed elsewhere)")
EOF
