#!/usr/bin/env bash
# GPU check in two halves, for a GPU machine without a Rust toolchain.
#
#   scripts/gpu-check.sh build   # here: build the wgpu test binaries and a wgpu `rigl` into .gpu-check/
#   scripts/gpu-check.sh run     # on the GPU machine (with .gpu-check/ copied over): run them
#
# `run` executes the equivalence tests of the CubeCL kernels (selection, drop-and-grow and the
# sparse linear products, each against the CPU reference), the device tests of rigl-core, and
# `rigl bench` (selection and sparse suites) on the first wgpu adapter (Vulkan). Results go to
# $OUT (default: .gpu-check/out). Vulkan loaders packaged as .deb files in .gl/ are unpacked
# first when the machine has none.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.gpu-check

case "${1:-}" in
build)
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rigl-burn/target}"
    mkdir -p "$dir"
    # Test binaries: the gpu-test profile (unoptimised dependencies, no debug info).
    cargo test --profile gpu-test -p rigl-kernels -p rigl-core --features rigl-core/wgpu \
        --test equivalence --test devices --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("equivalence", "devices"):
        print(m["package_id"].split("#")[0].split("/")[-1], m["target"]["name"], m["executable"])
' | while read -r pkg name exe; do
            cp "$exe" "$dir/$pkg-$name"
            strip "$dir/$pkg-$name" || true
        done
    cargo build --release -p rigl-cli --features wgpu
    cp "$CARGO_TARGET_DIR/release/rigl" "$dir/rigl"
    ls -la "$dir"
    ;;
run)
    out="${OUT:-$dir/out}"
    mkdir -p "$out"
    if ! ldconfig -p | grep -q libvulkan && ls .gl/*.deb >/dev/null 2>&1; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
        export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    fi
    export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
    nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
    status=0
    for t in "$dir"/*-equivalence "$dir"/*-devices; do
        name=$(basename "$t")
        echo "== $name"
        (cd kernels && "../$t" --test-threads=1) >"$out/$name.txt" 2>&1 || status=1
        tail -3 "$out/$name.txt"
    done
    "$dir/rigl" bench --device wgpu --format json >"$out/bench-selection.json" 2>"$out/bench-selection.err" || status=1
    "$dir/rigl" bench --suite sparse --device wgpu --format json >"$out/bench-sparse.jsonl" 2>"$out/bench-sparse.err" || status=1
    "$dir/rigl" bench --suite sparse --device flex --format json >"$out/bench-sparse-cpu.jsonl" 2>&1 || status=1
    cat "$out"/bench-sparse*.jsonl
    exit $status
    ;;
*)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
