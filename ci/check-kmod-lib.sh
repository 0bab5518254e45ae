#!/usr/bin/env bash
# Checks the kernel staticlib the way FreeBSD's amd64 kernel linker would see
# it (kern/link_elf_obj.c + amd64 elf_machdep.c): only R_X86_64_{NONE,64,PC32,
# PLT32,32S} relocations in allocated sections, no SSE/AVX instructions, and
# no undefined symbols beyond the glue's documented imports.
set -euo pipefail
lib=$(realpath "${1:?usage: check-kmod-lib.sh libfipsec_ffi.a}")
[ -f "$lib" ] || { echo "check-kmod-lib: $lib not found" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && ar x "$lib" )
objs=("$tmp"/*.o)

bad_relocs=$(for o in "${objs[@]}"; do
  readelf -rW "$o" | awk '/^Relocation section/ { sec=$3; next }
    /R_X86_64_/ { if (sec !~ /debug|eh_frame|llvm/) print $3 }'
done | sort | uniq -c | grep -vE 'R_X86_64_(NONE|64|PC32|PLT32|32S)$' || true)
if [ -n "$bad_relocs" ]; then
  echo "check-kmod-lib: relocations the FreeBSD amd64 kernel loader rejects:" >&2
  echo "$bad_relocs" >&2
  exit 1
fi

if objdump -d --no-show-raw-insn "${objs[@]}" | grep -qE '\b(%xmm|%ymm|%zmm)'; then
  echo "check-kmod-lib: SIMD registers used (kernel code must not touch FPU state):" >&2
  objdump -d --no-show-raw-insn "${objs[@]}" | grep -E '%[xyz]mm' | head -5 >&2
  exit 1
fi

syms() { for o in "${objs[@]}"; do readelf -sW "$o"; done | awk '$1 ~ /^[0-9]+:$/ && $8 != "" { print $7, $5, $8 }'; }
undef=$(syms | awk '$1 == "UND" { print $3 }' | sort -u)
defined=$(syms | awk '$1 != "UND" && ($2 == "GLOBAL" || $2 == "WEAK") { print $3 }' | sort -u)
external=$(comm -23 <(echo "$undef") <(echo "$defined") | grep -v '^$' || true)
unexpected=$(grep -vE '^fipsec_glue_' <<<"$external" || true)
if [ -n "$unexpected" ]; then
  echo "check-kmod-lib: undefined symbols outside the glue interface (fipsec_glue_*):" >&2
  echo "$unexpected" >&2
  exit 1
fi
size=$(stat -c %s "$lib")
echo "check-kmod-lib: $lib ok ($size bytes; relocations and instructions kernel-safe; imports: $(echo $external | wc -w) fipsec_glue_* symbols)"
