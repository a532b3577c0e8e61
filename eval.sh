#!/usr/bin/env bash
# Generate answers with the baseline and every method for one model, with the same settings,
# then compute speedups (evaluation/speed.py) and check equality with the baseline
# (evaluation/equal.py); both store their results in the leaderboard database and their full
# reports in results/reports/. It ends with one table of all methods (speedup with its 95%
# interval, mean accepted tokens, predicted speedup, lossless) and the command that opens the
# leaderboard.
#
# Out of the box: the embedded SmolLM2-135M-Instruct on the CPU, the bundled question set.
#   ./eval.sh              # the full bundled set, 256 new tokens per turn
#   ./eval.sh --quick      # a first try: one question of every subtask, 128 new tokens
#
# Everything is set through environment variables (defaults in brackets):
#   MODEL_PATH      target model: embedded, a .gguf file, a local folder or a hub id [embedded]
#   MODEL_NAME      name used in the answer files' model ids [smollm2-135m-instruct or folder name]
#   BENCH           question set: bundled, or spec_bench (fetched on first use) [bundled]
#   SPEC_BENCH_QUESTIONS  local copy of Spec-Bench's question.jsonl to install instead of downloading
#   METHODS         methods to run after the baseline [pld sps lookahead rest recycling samd suffix medusa hydra eagle eagle2 eagle3 dflash space]
#   DRAFTER_PATH    SpS draft model (sharing the target's tokenizer, or trained with --method sps), or self:N
#                   [the shipped trained draft on the embedded model when there is one, else self:8]
#   MEDUSA_PATH     Medusa heads folder (trained or published) [the shipped heads; embedded model only]
#   HYDRA_PATH      Hydra heads folder (trained or published) [the shipped heads; embedded model only]
#   EAGLE_PATH      EAGLE draft folder for eagle and eagle2 (published, `speculators` or trained)
#                   [the shipped draft; embedded model only]
#   EAGLE3_PATH     EAGLE-3 draft folder (published, `speculators` eagle3 or trained)
#                   [the shipped draft; embedded model only]
#   DFLASH_PATH     DFlash block draft folder (z-lab, `speculators` dflash or trained; safetensors)
#                   [the shipped draft; embedded model only]
#   SPACE_PATH      SPACE learned mask embeddings for a frozen target (trained)
#                   [the shipped masks; embedded model only]
#   SPACE_MASK_ID   SPACE's published variant: MODEL_PATH is a fine-tuned SPACE checkpoint and this is
#                   its mask token id (32002 for vicuna-v1.3-7b-space); instead of SPACE_PATH
#   MAX_NEW_TOKENS  new tokens per turn [256; QUICK_MAX_NEW_TOKENS with --quick]
#   QUICK_MAX_NEW_TOKENS  new tokens per turn of --quick [128: at 32, prefill and warm-up weigh
#                   as much as decoding and every method looks like the baseline]
#   QUESTION_BEGIN / QUESTION_END   0-based line range of the question file [all]
#   PER_SUBTASK     only the first N questions of each subtask (within the range) [all; 1 with --quick]
#   TEMP            temperature, 0 = greedy [0.0]
#   DTYPE           auto (float32 on CPU, float16 on CUDA), float32, float16, bfloat16 [auto]
#   DEVICE          auto, cpu, cuda [auto]
#   BACKEND         target forwards: auto (lean on the CPU for llama/Qwen2 models, else hf), hf, lean [auto]
#   CONV_TEMPLATE   auto (tokenizer's chat template, else vicuna), chat, vicuna [auto]
#   DB              results database (path or SQLAlchemy URL) [results/leaderboard.db]
#   ANSWER_DIR      folder of the answer files [data/$BENCH/model_answer]
#   REPORT_DIR      folder of speed.py's and equal.py's full reports [results/reports/<model>-<tag>]
#   INTERLEAVE      1: one process answers each question with the baseline and every method in
#                   turn, so all are timed under the same conditions; 0: one process per method,
#                   one after another, as Spec-Bench does [1]
#   WORKERS         shard the questions over this many Ray workers, one device each (one GPU each
#                   where the cluster has GPUs); see docs/scaling.md [unset: one process, no Ray]
#   RAY_ADDRESS     Ray cluster to join (auto, or HEAD_IP:6379) [unset: a local cluster when WORKERS is set]
#   EXTRA_ARGS      more options passed to every evaluation.inference call
#
# A GPU set-up like Spec-Bench's (Vicuna-7B v1.3, fp16, the 68M draft model):
#   MODEL_PATH=/models/vicuna-7b-v1.3 MODEL_NAME=vicuna-7b-v1.3 DRAFTER_PATH=/models/vicuna-68m \
#   BENCH=spec_bench DTYPE=float16 DEVICE=cuda CONV_TEMPLATE=vicuna MAX_NEW_TOKENS=1024 ./eval.sh
# (add MEDUSA_PATH=/models/medusa-vicuna-7b-v1.3, HYDRA_PATH=/models/hydra-vicuna-7b-v1.3 and
# EAGLE_PATH=/models/EAGLE-Vicuna-7B-v1.3 for Medusa, Hydra, EAGLE and EAGLE-2; without them those
# methods are skipped there; EAGLE3_PATH takes an EAGLE-3 head made for the target itself: there is
# none for Vicuna-7B, and a head made for another model, such as Vicuna-13B's, is refused)
# The published SPACE model is a fine-tuned Vicuna, so it is its own target with its own baseline,
# listed under its own name (never compared with Vicuna's answers):
#   MODEL_PATH=/models/vicuna-v1.3-7b-space MODEL_NAME=vicuna-v1.3-7b-space SPACE_MASK_ID=32002 METHODS=space \
#   BENCH=spec_bench DTYPE=float16 DEVICE=cuda CONV_TEMPLATE=vicuna MAX_NEW_TOKENS=1024 ./eval.sh
set -euo pipefail
cd "$(dirname "$0")"

QUICK=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "eval.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python}
MODEL_PATH=${MODEL_PATH:-embedded}
BENCH=${BENCH:-bundled}
METHODS=${METHODS:-pld sps lookahead rest recycling samd suffix medusa hydra eagle eagle2 eagle3 dflash space}
DRAFTER_PATH=${DRAFTER_PATH:-}  # empty: sps's own default (shipped draft, else self:8) on the embedded model
TEMP=${TEMP:-0.0}
DTYPE=${DTYPE:-auto}
BACKEND=${BACKEND:-auto}
DEVICE=${DEVICE:-auto}
CONV_TEMPLATE=${CONV_TEMPLATE:-auto}
DB=${DB:-results/leaderboard.db}
INTERLEAVE=${INTERLEAVE:-1}
EXTRA_ARGS=${EXTRA_ARGS:-}
if [ "$QUICK" = 1 ]; then
  MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-${QUICK_MAX_NEW_TOKENS:-128}}
  PER_SUBTASK=${PER_SUBTASK:-1}
else
  MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-256}
fi
if [ "$MODEL_PATH" = embedded ]; then
  MODEL_NAME=${MODEL_NAME:-smollm2-135m-instruct}
else
  MODEL_NAME=${MODEL_NAME:-$(basename "${MODEL_PATH%/}" .gguf)}
fi
# The answer files are named after the dtype actually used (as Spec-Bench's are), so "auto" is
# resolved here the same way the runner resolves it.
RESOLVED_DTYPE=$($PYTHON - "$DTYPE" "$DEVICE" <<'PY'
import sys
from methods.core.model_loading import ModelLoadError, resolve_device, resolve_dtype
try:
    print(str(resolve_dtype(sys.argv[1], resolve_device(sys.argv[2]))).removeprefix("torch."))
except ModelLoadError as error:
    sys.exit(f"eval.sh: {error}")
PY
)
# An explicit backend is part of the name, so that hf and lean answers never share a file.
if [ "$BACKEND" = auto ]; then TAG="${RESOLVED_DTYPE}-temp-${TEMP}"; else TAG="${RESOLVED_DTYPE}-${BACKEND}-temp-${TEMP}"; fi
[ "$QUICK" = 1 ] && TAG="${TAG}-quick"
ANSWER_DIR=${ANSWER_DIR:-data/${BENCH}/model_answer}

if [ "$BENCH" = spec_bench ] && [ ! -f data/spec_bench/question.jsonl ]; then
  if [ -n "${SPEC_BENCH_QUESTIONS:-}" ]; then
    $PYTHON -m evaluation.fetch_questions --from "$SPEC_BENCH_QUESTIONS"
  else
    $PYTHON -m evaluation.fetch_questions
  fi
fi

range_args=()
[ -n "${QUESTION_BEGIN:-}" ] && range_args+=(--question-begin "$QUESTION_BEGIN")
[ -n "${QUESTION_END:-}" ] && range_args+=(--question-end "$QUESTION_END")
[ -n "${PER_SUBTASK:-}" ] && range_args+=(--per-subtask "$PER_SUBTASK")
[ -n "${WORKERS:-}" ] && range_args+=(--workers "$WORKERS")
[ -n "${RAY_ADDRESS:-}" ] && range_args+=(--ray-address "$RAY_ADDRESS")

generate() {  # generate METHOD[,METHOD...] [method options...]
  local methods=$1; shift
  # shellcheck disable=SC2086
  $PYTHON -m evaluation.inference --method "$methods" --model-path "$MODEL_PATH" \
    --model-id "${MODEL_NAME}-{method}-${TAG}" --bench-name "$BENCH" --answer-dir "$ANSWER_DIR" \
    --max-new-tokens "$MAX_NEW_TOKENS" --temperature "$TEMP" --dtype "$DTYPE" --device "$DEVICE" --backend "$BACKEND" \
    --conv-template "$CONV_TEMPLATE" "${range_args[@]}" "$@" $EXTRA_ARGS
}

# Trained drafters shipped in data/drafters/ belong to the embedded model; elsewhere each needs
# its folder (METHOD's variable), or it is skipped.
skip_without() {  # skip_without VARIABLE METHOD...
  local variable=$1; shift
  [ "$MODEL_PATH" != embedded ] && [ -z "${!variable:-}" ] || return 0
  for method in "$@"; do
    if [[ " $METHODS " == *" $method "* ]]; then
      echo "eval.sh: skipping $method (no $variable for $MODEL_PATH)" >&2
      METHODS=$(echo " $METHODS " | sed "s/ $method / /" | xargs)
    fi
  done
}
skip_without MEDUSA_PATH medusa
skip_without HYDRA_PATH hydra
skip_without EAGLE_PATH eagle eagle2
skip_without EAGLE3_PATH eagle3
skip_without DFLASH_PATH dflash
[ -n "${SPACE_MASK_ID:-}" ] || skip_without SPACE_PATH space
drafter_args=()
if [ -z "$DRAFTER_PATH" ] && [ "$MODEL_PATH" != embedded ]; then DRAFTER_PATH=self:8; fi
if [ -n "$DRAFTER_PATH" ]; then
  case " $METHODS " in *" sps "*) drafter_args+=(--drafter-path "$DRAFTER_PATH") ;; esac
fi
if [ -n "${MEDUSA_PATH:-}" ]; then drafter_args+=(--medusa-path "$MEDUSA_PATH"); fi
if [ -n "${HYDRA_PATH:-}" ]; then drafter_args+=(--hydra-path "$HYDRA_PATH"); fi
if [ -n "${EAGLE_PATH:-}" ]; then drafter_args+=(--eagle-path "$EAGLE_PATH"); fi
if [ -n "${EAGLE3_PATH:-}" ]; then drafter_args+=(--eagle3-path "$EAGLE3_PATH"); fi
if [ -n "${DFLASH_PATH:-}" ]; then drafter_args+=(--dflash-path "$DFLASH_PATH"); fi
if [ -n "${SPACE_PATH:-}" ]; then drafter_args+=(--space-path "$SPACE_PATH"); fi
if [ -n "${SPACE_MASK_ID:-}" ]; then drafter_args+=(--space-mask-id "$SPACE_MASK_ID"); fi
if [ "$INTERLEAVE" = 1 ]; then
  # One process: every question is answered by the baseline and each method in turn, so they
  # are timed under the same machine conditions.
  generate "$(echo vanilla $METHODS | tr ' ' ',')" "${drafter_args[@]}"
else
  generate vanilla
  for method in $METHODS; do
    case "$method" in
      sps|medusa|hydra|eagle|eagle2|eagle3|space|dflash) generate "$method" "${drafter_args[@]}" ;;
      *) generate "$method" ;;
    esac
  done
fi
BASE="${ANSWER_DIR}/${MODEL_NAME}-vanilla-${TAG}.jsonl"

# The long per-method reports (with any warnings) go to files; the table printed below sums
# them up. A check that fails shows the end of its report here.
REPORT_DIR=${REPORT_DIR:-results/reports/${MODEL_NAME}-${TAG}}
mkdir -p "$REPORT_DIR"
echo
echo "Speed and equality of every method against the baseline (full reports in $REPORT_DIR/) ..."
status=0
method_files=()
for method in $METHODS; do
  answers="${ANSWER_DIR}/${MODEL_NAME}-${method}-${TAG}.jsonl"
  method_files+=("$answers")
  report="$REPORT_DIR/speed-${method}.txt"
  $PYTHON evaluation/speed.py --file-path "$answers" --base-path "$BASE" --db "$DB" > "$report" 2>&1 \
    || { status=1; echo "speed.py failed for $method ($report):"; tail -n 3 "$report"; }
  report="$REPORT_DIR/equal-${method}.txt"
  $PYTHON evaluation/equal.py --jsonfile1 "$BASE" --jsonfile2 "$answers" --db "$DB" > "$report" 2>&1 \
    || { status=1; echo "equal.py: $method differs from the baseline or failed ($report):"; tail -n 3 "$report"; }
done
echo
$PYTHON -m evaluation.summary --base-path "$BASE" --file-path "${method_files[@]}" || status=1
echo
echo "Results are stored in $DB. Open the leaderboard with:"
echo "  streamlit run app.py -- --db $DB"
exit $status
