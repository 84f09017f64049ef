#!/usr/bin/env bash
# Builds libnq and runs its whole test suite, installing what it needs first
# (Debian 12, as root or with sudo).  Stages, each in its own build tree:
#
#   main   build/       gcc, RelWithDebInfo: every test
#   asan   build-asan/  gcc with ASan+UBSan: every test not labelled
#                       no-sanitize
#   tsan   build-tsan/  gcc with ThreadSanitizer: the unit tests and the C
#                       communicator tests over TCP and MQTT (grpc's own libraries are not
#                       instrumented, so gRPC runs under ASan only)
#   fuzz   build-fuzz/  clang: the fuzz targets, replayed and run by libFuzzer
#   lean   build-lean/  gcc without MQTT and gRPC, their development files
#                       hidden: the TCP tests (tools/lean-test.sh, root)
#   abi    build-abi/   gcc with -g: the ABI checks against abi/libnq-*.abi
#                       (tools/abi-test.sh)
#   packages            build-deb/: the Debian source package and packages,
#                       built, checked by lintian, installed as root, used
#                       by consumers and removed again (tools/package-test.sh)
#   bazel  build-bazel/ Bazel 4, offline: bazel test //... (tools/bazel-test.sh;
#                       its cache is ~/.cache/bazel-nq)
#
# The last four are bounded in time: lean 10, abi 5, packages 10, bazel 15
# minutes.
#
# Build trees are reused, so running it again only rebuilds what changed.
#
# Environment:
#   NQ_TEST_STAGES     stages to run, in order (default
#                      "main asan tsan fuzz lean abi packages bazel")
#   NQ_TEST_SKIP_DEPS  1 skips tools/install-deps.sh
#   NQ_TEST_JOBS       parallel build and test jobs (default 2)
# Exits 0 only when every selected stage passed and no process a test
# started (a broker, a peer, a link emulator) outlived the suite; the last
# lines say how each stage went.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
stages=${NQ_TEST_STAGES:-main asan tsan fuzz lean abi packages bazel}
jobs=${NQ_TEST_JOBS:-2}

say() { printf '\n=== test.sh: %s\n' "$*"; }

for stage in $stages; do
    case $stage in
        main | asan | tsan | fuzz | lean | abi | packages | bazel) ;;
        *) echo "test.sh: unknown stage '$stage' (known: main asan tsan fuzz lean abi packages bazel)" >&2; exit 2 ;;
    esac
done

if [ "${NQ_TEST_SKIP_DEPS:-0}" != 1 ]; then
    say "installing dependencies (tools/install-deps.sh)"
    if ! bash "$root/tools/install-deps.sh"; then
        echo "test.sh: FAIL: tools/install-deps.sh failed" >&2
        exit 1
    fi
fi

# configure DIR CC ARGS...: the generator and compiler are chosen only when
# the tree is new (CMake reads CC only then), so an existing tree is
# reconfigured in place and only what changed is rebuilt.
configure() {
    local dir=$1 cc=$2
    shift 2
    local gen=()
    [ -f "$dir/CMakeCache.txt" ] || gen=(-G Ninja)
    CC=$cc cmake -S "$root" -B "$dir" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
}

run_main() {
    local dir=$root/build
    # build/ may come from tools/demo.sh, configured without tests.
    configure "$dir" gcc -DNQ_SANITIZE= -DBUILD_TESTING=ON &&
        cmake --build "$dir" -j "$jobs" &&
        (cd "$dir" && ctest --output-on-failure --no-tests=error -j "$jobs")
}

run_asan() {
    local dir=$root/build-asan
    configure "$dir" gcc -DNQ_SANITIZE=address,undefined &&
        cmake --build "$dir" -j "$jobs" &&
        (cd "$dir" && UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
            ctest --output-on-failure --no-tests=error -j "$jobs" -LE no-sanitize)
}

run_tsan() {
    local dir=$root/build-tsan
    configure "$dir" gcc -DNQ_SANITIZE=thread -DNQ_BUILD_BINDINGS=OFF -DNQ_BUILD_BENCH=OFF &&
        cmake --build "$dir" -j "$jobs" --target test_units test_loop test_session test_comm test_mqtt \
            test_reconnect test_delivery &&
        (cd "$dir" && TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1} \
            ctest --output-on-failure --no-tests=error -j "$jobs" \
            -R '^test_(units|loop|session|comm\.(tcp|mqtt)|mqtt|reconnect\.(tcp|tls)|delivery\.(tcp|tls|mqtt))\.')
}

# Only the fuzz executables are built here: the gcc stages cover the rest.
run_fuzz() {
    local dir=$root/build-fuzz
    configure "$dir" clang -DNQ_SANITIZE= || return 1
    local listed
    listed=$(cd "$dir" && ctest -N -R '^fuzz_.*_short$' 2>/dev/null)
    if ! printf '%s\n' "$listed" | grep -q 'Test *#'; then
        echo "test.sh: clang built no libFuzzer target (is libclang-rt-14-dev installed?)" >&2
        return 1
    fi
    cmake --build "$dir" -j "$jobs" --target fuzzers &&
        (cd "$dir" && ctest --output-on-failure --no-tests=error -j "$jobs" -R '^fuzz_')
}

# bounded SECONDS COMMAND...: runs COMMAND, stopping it (and what it
# started) after SECONDS.
bounded() {
    local limit=$1 rc=0
    shift
    timeout --kill-after=30 "$limit" "$@" || rc=$?
    [ "$rc" -ne 124 ] || echo "test.sh: stopped after ${limit}s: $*" >&2
    return "$rc"
}

run_lean() {
    bounded 600 bash "$root/tools/lean-test.sh"
}

run_abi() {
    bounded 300 bash "$root/tools/abi-test.sh"
}

run_packages() {
    bounded 600 bash "$root/tools/package-test.sh"
}

run_bazel() {
    bounded 900 bash "$root/tools/bazel-test.sh"
}

# Processes the tests start (by executable name); none may outlive the
# suite.  Those running before it are left alone.
suite_processes() {
    ps -eo pid=,stat=,comm=,args= | awk '$2 !~ /^Z/ &&
        ($3 ~ /^(mosquitto|haproxy|nginx|nq_trial_peer|nq_load_peer|nq_hostile_peer|nq_linkem|nq_conformance|nq_peer|nq_bench|nq_deploy_peer)/ ||
         ($3 == "nq" && ($5 == "serve" || $5 == "send"))) {print $1}'
}
before=" $(suite_processes | tr '\n' ' ') "

summary=()
failed=0
for stage in $stages; do
    say "stage $stage"
    start=$SECONDS
    if "run_$stage"; then
        result=PASS
    else
        result=FAIL
        failed=1
    fi
    summary+=("$(printf 'test.sh: %-5s %s (%ds)' "$stage" "$result" $((SECONDS - start)))")
done

left=()
for pid in $(suite_processes); do
    case $before in *" $pid "*) ;; *) [ "$pid" != $$ ] && left+=("$pid") ;; esac
done
if [ ${#left[@]} -gt 0 ]; then
    echo "test.sh: FAIL: processes outlived the suite:" >&2
    ps -o pid=,etime=,args= -p "${left[@]}" >&2 || true
    kill -KILL "${left[@]}" 2>/dev/null || true
    summary+=("test.sh: leftovers FAIL (${#left[@]} processes)")
    failed=1
fi
if ip netns list 2>/dev/null | grep -q '^nqf-'; then
    echo "test.sh: FAIL: network namespaces outlived the suite: $(ip netns list | grep '^nqf-' | tr '\n' ' ')" >&2
    summary+=("test.sh: leftovers FAIL (network namespaces)")
    failed=1
fi

say "summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
