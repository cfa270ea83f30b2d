#!/usr/bin/env bash
# The C face's checks: the header compiles as C99 and as C++ (and iobus.hpp
# as C++17) with -Wall -Wextra -Werror; the shared library exports iobus_*
# symbols only, exactly those the header declares; every function of the
# header is used by a test; then every C/C++ test program and the C chat
# host's input test run three ways: plain (linked to the shared library),
# under AddressSanitizer + UndefinedBehaviorSanitizer (linked to the static
# library, leak detection on), and under Valgrind memcheck (no errors, no
# definite or indirect leaks).
#
# No suppressions are used: the Rust runtime leaves nothing behind that
# LeakSanitizer or memcheck count as definite or indirect leaks (only the
# main thread's handle, which memcheck lists as "possibly lost").
#
# Usage: tests/c/run.sh [plain|asan|valgrind|checks ...]   (default: all)
# Env: IOBUS_LIB_DIR (default target/debug; the library must be built),
#      CC, CXX, VALGRIND, NODE. Needs what `make c-setup` installs (the
#      peers' npm packages, Valgrind, and libjansson-dev for the chat host).
# Prints "N passed, N failed" for the steps; exits non-zero on any failure.

set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

LIB_DIR=${IOBUS_LIB_DIR:-target/debug}
CC=${CC:-gcc}
CXX=${CXX:-g++}
VALGRIND=${VALGRIND:-valgrind}
NODE=${NODE:-node}
BUILD=tests/c/build
MODES=("$@")
[ ${#MODES[@]} -eq 0 ] && MODES=(checks plain asan valgrind)

CFLAGS=(-std=c99 -Wall -Wextra -Werror -pedantic -g -Iinclude -Itests/c)
CXXFLAGS=(-std=c++17 -Wall -Wextra -Werror -pedantic -g -Iinclude -Itests/c)
SAN=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
SHARED=(-L"$LIB_DIR" -Wl,-rpath,"$ROOT/$LIB_DIR" -liobus -lpthread)
# What the static library needs from the system (rustc --print native-static-libs).
STATIC=("$LIB_DIR/libiobus.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl)
VALGRIND_ARGS=(-q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --child-silent-after-fork=yes
    --fair-sched=yes)

C_TESTS=(test_basics test_events test_poll test_selection test_records test_recovery test_cluster)
CXX_TESTS=(test_cpp)

export IOBUS_PEER_JS="$ROOT/tests/c/peer.js"
export IOBUS_NODE="$NODE"
export IOBUS_TEST_CLIENT_DIR="$ROOT/tests/c/node_modules/socket.io-client/dist"

passed=0
failed=0
failures=()

step() { # name, command...
    local name=$1
    shift
    local log="$BUILD/logs/${name//[ \/]/_}.log"
    local start=$SECONDS
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        printf 'ok   %-44s %3ss  %s\n' "$name" $((SECONDS - start)) "$(grep -E ': [0-9]+ passed, [0-9]+ failed' "$log" | tail -1 | sed 's/^[^:]*: //')"
        grep -h 'KNOWN GAP' "$log" | cut -c1-160 | sort | uniq -c | sed 's/^/       /' | head -5
        return 0
    else
        failed=$((failed + 1))
        failures+=("$name")
        printf 'FAIL %-44s %3ss  (log: %s)\n' "$name" $((SECONDS - start)) "$log"
        grep -vE '^   [-*] ' "$log" | tail -40 | sed 's/^/     | /'
        return 1
    fi
}

mkdir -p "$BUILD/logs" "$BUILD/asan"
[ -f "$LIB_DIR/libiobus.so" ] && [ -f "$LIB_DIR/libiobus.a" ] || {
    echo "$LIB_DIR/libiobus.{so,a} missing: cargo build --lib (or set IOBUS_LIB_DIR)" >&2
    exit 2
}

# ---- checks on the header and the library ----------------------------------

header_c() {
    printf '#include "iobus.h"\nint main(void) { return iobus_version() == 0; }\n' >"$BUILD/header_c.c"
    "$CC" -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude -c "$BUILD/header_c.c" -o "$BUILD/header_c.o"
}

header_cxx() {
    printf '#include "iobus.h"\nint main() { return iobus_version() == nullptr; }\n' >"$BUILD/header_cxx.cpp"
    for std in c++11 c++17 c++20; do
        "$CXX" -std=$std -Wall -Wextra -Werror -pedantic -Iinclude -c "$BUILD/header_cxx.cpp" -o "$BUILD/header_cxx.o" || return 1
    done
}

header_hpp() {
    printf '#include "iobus.hpp"\n#include "iobus.hpp"\nint main() { return iobus::version().empty(); }\n' >"$BUILD/header_hpp.cpp"
    "$CXX" -std=c++17 -Wall -Wextra -Werror -pedantic -Wshadow -Wconversion -Iinclude -c "$BUILD/header_hpp.cpp" -o "$BUILD/header_hpp.o"
}

exports_only_iobus() {
    local all others declared exported
    all=$(nm -D --defined-only "$LIB_DIR/libiobus.so" | awk '{print $NF}' | sort -u)
    others=$(grep -v '^iobus_' <<<"$all")
    if [ -n "$others" ]; then
        echo "exported symbols without the iobus_ prefix:"
        echo "$others"
        return 1
    fi
    declared=$(grep -oE '\biobus_[a-z0-9_]+\(' include/iobus.h | tr -d '(' | sort -u)
    exported=$(grep '^iobus_' <<<"$all")
    if [ "$declared" != "$exported" ]; then
        echo "declared in iobus.h but not exported / exported but not declared:"
        diff <(echo "$declared") <(echo "$exported")
        return 1
    fi
    echo "$(wc -l <<<"$exported") iobus_* functions exported, nothing else"
}

every_function_tested() {
    local missing=0 fn
    for fn in $(grep -oE '\biobus_[a-z0-9_]+\(' include/iobus.h | tr -d '(' | sort -u); do
        if ! grep -qw "$fn" tests/c/test_*.c; then
            echo "no C test calls $fn"
            missing=1
        fi
    done
    return $missing
}

# ---- builds ----------------------------------------------------------------------

build_plain() {
    "$CC" "${CFLAGS[@]}" -c tests/c/harness.c -o "$BUILD/harness.o" || return 1
    for t in "${C_TESTS[@]}"; do
        "$CC" "${CFLAGS[@]}" "tests/c/$t.c" "$BUILD/harness.o" "${SHARED[@]}" -o "$BUILD/$t" || return 1
    done
    for t in "${CXX_TESTS[@]}"; do
        "$CXX" "${CXXFLAGS[@]}" "tests/c/$t.cpp" "$BUILD/harness.o" "${SHARED[@]}" -o "$BUILD/$t" || return 1
    done
    "$CC" "${CFLAGS[@]}" -O2 -DCHAT_SOURCE_DIR="\"$ROOT/examples/chat\"" examples/chat/chat.c "${SHARED[@]}" \
        -ljansson -o "$BUILD/chat"
}

build_asan() {
    "$CC" "${CFLAGS[@]}" "${SAN[@]}" -c tests/c/harness.c -o "$BUILD/asan/harness.o" || return 1
    for t in "${C_TESTS[@]}"; do
        "$CC" "${CFLAGS[@]}" "${SAN[@]}" "tests/c/$t.c" "$BUILD/asan/harness.o" "${STATIC[@]}" -o "$BUILD/asan/$t" || return 1
    done
    for t in "${CXX_TESTS[@]}"; do
        "$CXX" "${CXXFLAGS[@]}" "${SAN[@]}" "tests/c/$t.cpp" "$BUILD/asan/harness.o" "${STATIC[@]}" -o "$BUILD/asan/$t" || return 1
    done
    "$CC" "${CFLAGS[@]}" "${SAN[@]}" -DCHAT_SOURCE_DIR="\"$ROOT/examples/chat\"" examples/chat/chat.c "${STATIC[@]}" \
        -ljansson -o "$BUILD/asan/chat"
}

# ---- runs ------------------------------------------------------------------------

run_plain() { timeout -k 5 180 "$BUILD/$1"; }

run_asan() {
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        timeout -k 5 240 "$BUILD/asan/$1"
}

run_valgrind() {
    IOBUS_TEST_TIME_SCALE=4 timeout -k 5 480 "$VALGRIND" "${VALGRIND_ARGS[@]}" "$BUILD/$1"
}

# The C chat host under the input test (tests/c/chat_input.js); `$@` is the host command.
run_chat() { timeout -k 5 300 "$NODE" tests/c/chat_input.js "$@"; }
run_chat_asan() { ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 run_chat "$BUILD/asan/chat"; }
run_chat_valgrind() { IOBUS_TEST_TIME_SCALE=4 run_chat "$VALGRIND" "${VALGRIND_ARGS[@]}" "$BUILD/chat"; }

for mode in "${MODES[@]}"; do
    case $mode in
    checks)
        step "header compiles as C99" header_c
        step "header compiles as C++11/17/20" header_cxx
        step "iobus.hpp compiles as C++17" header_hpp
        step "exports: iobus_* only, as declared" exports_only_iobus
        step "every header function has a C test" every_function_tested
        ;;
    plain)
        step "build (shared library)" build_plain || continue
        for t in "${C_TESTS[@]}" "${CXX_TESTS[@]}"; do step "plain $t" run_plain "$t"; done
        step "plain chat input" run_chat "$BUILD/chat"
        ;;
    asan)
        step "build (static library, ASan+UBSan)" build_asan || continue
        for t in "${C_TESTS[@]}" "${CXX_TESTS[@]}"; do step "asan $t" run_asan "$t"; done
        step "asan chat input" run_chat_asan
        ;;
    valgrind)
        command -v "$VALGRIND" >/dev/null || { echo "valgrind missing (apt-get install -y valgrind)" >&2; failed=$((failed + 1)); continue; }
        [ -x "$BUILD/test_basics" ] || step "build (shared library)" build_plain || continue
        for t in "${C_TESTS[@]}" "${CXX_TESTS[@]}"; do step "valgrind $t" run_valgrind "$t"; done
        step "valgrind chat input" run_chat_valgrind
        ;;
    *)
        echo "unknown mode $mode (checks, plain, asan, valgrind)" >&2
        exit 2
        ;;
    esac
done

echo "tests/c: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || { printf 'failed: %s\n' "${failures[@]}"; exit 1; }
