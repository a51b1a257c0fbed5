#!/usr/bin/env bash
# Runs every fuzz target (or those named) for a while with coverage guidance, starting from the
# seeds `make-seeds` writes and any corpus an earlier run left in fuzz/corpus/.
#
#   bash fuzz/run.sh                 # every target, 30 s each
#   bash fuzz/run.sh 600 scope       # one target, 10 minutes
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). It uses nightly-only compiler flags, which the
# stable toolchain accepts with RUSTC_BOOTSTRAP=1. A crash stops the run and leaves its input
# in fuzz/artifacts/<target>/; once fixed, copy that input to fuzz/regressions/<target>/, where
# `.ci/run` replays it on every run. Prints, per target, executions, coverage and corpus size.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-30}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
export RUSTC_BOOTSTRAP=1

cargo fuzz build
bin=target/x86_64-unknown-linux-gnu/release
rm -rf seeds
"$bin/make-seeds" seeds

mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "regressions/$t"
  echo "==> $t for ${seconds}s"
  # The first directory collects what the run finds; the others are read only.
  cargo fuzz run "$t" "corpus/$t" "seeds/$t" "regressions/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
    >"logs/$t.log" 2>&1 || { tail -40 "logs/$t.log"; echo "!! $t failed: see fuzz/logs/$t.log"; exit 1; }
  done_line=$(grep -aE '^#[0-9]+[[:space:]]+DONE' "logs/$t.log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" || true)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "logs/$t.log" || true)
  cov=$(sed -E -n 's/.* cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/cov \1, features \2, corpus \3/p' <<<"$done_line")
  echo "    $execs executions ($rate/s), $cov"
done
