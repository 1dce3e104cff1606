#!/bin/sh
# Cargo runner for the QEMU machines: qemu-run.sh MACHINE ELF
# Runs the ELF with semihosting and the instruction counter on, decodes the defmt frames QEMU
# writes to stdout with `defmt-print` (`cargo install defmt-print`) and exits with QEMU's status
# (0 success, 1 failure reported by the firmware, 134 crash/lockup).
# `tinyvae firmware run` (host tool) does the same without defmt-print.
machine="$1"
elf="$2"
if ! command -v qemu-system-arm >/dev/null 2>&1; then
    echo "qemu-system-arm not found: install it (Debian/Ubuntu: apt-get install qemu-system-arm)" >&2
    exit 127
fi
run() {
    qemu-system-arm -machine "$machine" -nographic -monitor none -serial none \
        -semihosting-config enable=on,target=native \
        -icount shift=10,align=off,sleep=off -kernel "$elf" </dev/null
}
if command -v defmt-print >/dev/null 2>&1; then
    status_file=$(mktemp)
    { run; echo $? >"$status_file"; } | defmt-print -e "$elf"
    status=$(cat "$status_file")
    rm -f "$status_file"
    exit "$status"
else
    echo "defmt-print not found: output not decoded (cargo install defmt-print, or use" >&2
    echo "\`cargo run -p tinyvae-host-tools -- firmware run\` from the repository root)" >&2
    run >/dev/null
fi
