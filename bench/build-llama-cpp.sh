#!/usr/bin/env bash
# Builds llama.cpp's own benchmarks (llama-bench, llama-batched-bench) from the exact source that
# node-llama-cpp ships (node_modules/node-llama-cpp/llama/gitRelease.bundle), into a cache folder
# outside git: ${EDGE_LLM_CACHE:-~/.cache/edge-llm}/llama.cpp-<tag>/build/bin. Used by bench/speed.ts.
# Built like node-llama-cpp's prebuilt CPU binaries: no OpenMP (ggml's own thread pool).
# Prints the bin folder on the last line; exits 2 (with a message) when cmake or a compiler is missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
nlc="$root/node_modules/node-llama-cpp/llama"
for tool in cmake c++ git; do
  command -v "$tool" >/dev/null || { echo "build-llama-cpp: $tool not found, llama.cpp benchmarks skipped" >&2; exit 2; }
done
tag="$(node -p "require('$nlc/llama.cpp.info.json').tag")"
cache="${EDGE_LLM_CACHE:-$HOME/.cache/edge-llm}"
src="$cache/llama.cpp-$tag"
bin="$src/build/bin"
if [[ -x "$bin/llama-bench" && -x "$bin/llama-batched-bench" ]]; then echo "$bin"; exit 0; fi
mkdir -p "$cache"
[[ -d "$src/.git" ]] || git clone -q "$nlc/gitRelease.bundle" "$src"
# gcc 12 on a CPU with AMX drops the stores that fill the tile config before ldtilecfg (SIGILL on
# every prompt with Q4_0/Q8_0): a compiler barrier keeps them (see shared/perf-anchor/README.md).
amx="$src/ggml/src/ggml-cpu/amx/mmq.cpp"
if [[ -f "$amx" ]] && ! grep -q '__asm__ __volatile__("" : : "r"(&tc)' "$amx"; then
  sed -i 's|^    _tile_loadconfig(&tc);|    __asm__ __volatile__("" : : "r"(\&tc) : "memory");\n    _tile_loadconfig(\&tc);|' "$amx"
fi
jobs="${JOBS:-$(nproc)}"
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
cmake --build "$src/build" -j"$jobs" --target llama-bench llama-batched-bench >/dev/null
echo "$bin"
