#!/usr/bin/env bash
# Builds the fuzz targets without instrumentation (plain cargo, stable, no cargo-fuzz) and runs
# each once over its seeds and every input in fuzz/regressions/<target>/: a crash found and
# fixed once stays fixed. `.ci/run` runs this; `bash fuzz/run.sh` is the fuzzing itself.
set -euo pipefail
cd "$(dirname "$0")/.."

# The project's target directory, so the build reuses what it can of the project's.
export CARGO_TARGET_DIR="$PWD/target"
cargo fmt --manifest-path fuzz/Cargo.toml --check
cargo build --manifest-path fuzz/Cargo.toml --locked --bins
bin="$CARGO_TARGET_DIR/debug"
seeds="$CARGO_TARGET_DIR/fuzz-seeds"
rm -rf "$seeds"
"$bin/make-seeds" "$seeds"
shopt -s nullglob
for source in fuzz/fuzz_targets/*.rs; do
  t=$(basename "$source" .rs)
  inputs=("$seeds/$t"/* fuzz/regressions/"$t"/*)
  if [ "${#inputs[@]}" -eq 0 ]; then
    echo "fuzz target $t has no seeds: make-seeds must write some" >&2
    exit 1
  fi
  # libFuzzer runs each file given once and exits non-zero on the first crash (whose input it
  # writes under the target directory, not into the checkout).
  "$bin/$t" -runs=1 -artifact_prefix="$CARGO_TARGET_DIR/" "${inputs[@]}" \
    >"$CARGO_TARGET_DIR/fuzz-replay-$t.log" 2>&1 || {
    cat "$CARGO_TARGET_DIR/fuzz-replay-$t.log"
    echo "fuzz target $t crashed on a seed or regression input" >&2
    exit 1
  }
  echo "fuzz target $t: ${#inputs[@]} inputs replayed"
done
