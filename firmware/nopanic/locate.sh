#!/bin/sh
# Where are the panics? Links the no-panic check with a plain panic handler and line tables, then
# prints, for every call into `core::panicking` (or the panic handler), the inlined call chain
# that leads to it (innermost first).
#   firmware/nopanic/locate.sh [target]       (default thumbv7em-none-eabihf)
# Needs llvm-objdump and llvm-addr2line (Debian: llvm).
set -eu
cd "$(dirname "$0")/.."
target="${1:-thumbv7em-none-eabihf}"
case "$target" in
thumbv6m*) cpu=cortex-m0 ;;
thumbv7m*) cpu=cortex-m3 ;;
thumbv8m*) cpu=cortex-m33 ;;
*) cpu=cortex-m4 ;;
esac
var="CARGO_TARGET_$(echo "$target" | tr 'a-z.-' 'A-Z__')_RUSTFLAGS"
env "$var=-C target-cpu=$cpu --cfg nopanic_locate" CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    CARGO_TARGET_DIR=target/nopanic-locate \
    cargo build --quiet --release -p tinyvae-nopanic --target "$target"
elf="target/nopanic-locate/$target/release/nopanic"
objdump="$(command -v llvm-objdump || command -v llvm-objdump-14)"
a2l="$(command -v llvm-addr2line || command -v llvm-addr2line-14)"
"$objdump" -d --no-show-raw-insn -C "$elf" |
    awk '/^[0-9a-f]+ <.*>:$/ { fn = $2 }
         /\tb(l|\.w)?\t.*<(core::panicking|rust_begin_unwind|core::slice::index|core::option::|core::result::unwrap_failed)/ {
             sub(":", "", $1); print $1, fn, $NF }' |
    while read -r addr fn callee; do
        echo "== 0x$addr in $fn -> $callee"
        "$a2l" -f -i -C -e "$elf" "0x$addr" | paste - - | sed 's/^/    /'
    done
