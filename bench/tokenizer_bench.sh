#!/bin/sh
# Tokenizer speed: encoding all 4,761 Resume NER sentences (train+dev+test)
# with yuanft (library call, best of 5) and with python3-sentencepiece (the
# same special-token split, one encode() call a sentence, best of 3).
# Prints one Markdown table row: | what | yuanft | sentencepiece | speed-up |
# usage (from the repo root): sh bench/tokenizer_bench.sh
set -e
cd "$(dirname "$0")/.."
SHARED=${YF_SHARED:-../shared}
MODEL=$SHARED/yuan/tokenizer.model
FILES="$SHARED/data/resume-ner/train.char.bmes $SHARED/data/resume-ner/dev.char.bmes $SHARED/data/resume-ner/test.char.bmes"
[ -f "$MODEL" ] || { echo "tokenizer_bench: $MODEL not found (set YF_SHARED)" >&2; exit 1; }
[ -f build/libyuanft.a ] || make -j2 all >/dev/null
mkdir -p build/bench
${CC:-cc} -O2 -std=c11 -D_GNU_SOURCE -Isrc -o build/bench/tok_bench bench/tok_bench.c build/libyuanft.a \
    -lcjson -lz -lm -fopenmp
# shellcheck disable=SC2086
set -- $(build/bench/tok_bench "$MODEL" 5 $FILES)
yt=$1 nsent=$2 nchars=$3
if /usr/bin/python3 -c 'import sentencepiece' 2>/dev/null; then
    # shellcheck disable=SC2086
    pt=$(/usr/bin/python3 bench/tok_sp.py "$MODEL" time 3 $FILES | cut -d' ' -f1)
else
    pt=""
fi
awk -v yt="$yt" -v pt="$pt" -v ns="$nsent" -v nc="$nchars" 'BEGIN {
    what = sprintf("tokenizer: encode %d Resume NER sentences (%d chars)", ns, nc)
    if (pt == "") printf("| %s | %.1f ms | n/a (python3-sentencepiece missing) | n/a |\n", what, yt * 1000)
    else printf("| %s | %.1f ms | %.1f ms | %.1fx faster |\n", what, yt * 1000, pt * 1000, pt / yt)
}'
