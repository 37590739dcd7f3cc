#!/bin/sh
# Where a shared prefix starts to pay (the threshold of `yuanft train --shared-prefix auto`,
# YF_SHARE_AUTO_MIN in src/model/model.h; docs/shared-prefix.md): batches of 6 rows of 256
# tokens, all the same length (no padding to skip: only the prefix counts), the last 24 of each
# scored (as the recipe's rows score ~24), whose first P tokens are common, trained with the
# shared path forced on and with it off, taking turns.
# usage (from the repo root, under the lock): flock /work/heavy.lock sh bench/shared_prefix_threshold.sh MODEL_DIR [P...]
# MODEL_DIR: a yuanft model folder (bench/.work/m-2layer-bf16 after make bench). Prints one line a P.
set -eu
cd "$(dirname "$0")/.."
M=$1; shift
PS=${*:-0 4 8 16 32 64}
W=bench/.work/threshold
mkdir -p "$W"
STEPS=${STEPS:-4}
for p in $PS; do
  /usr/bin/python3 - "$W/p$p.safetensors" "$p" <<'EOF'
import sys, numpy as np, json, struct, os
path, P = sys.argv[1], int(sys.argv[2])
B, T, N = 6, 256, 6 * 8
rng = np.random.RandomState(P + 1)
ids = rng.randint(100, 130000, size=(N, T)).astype(np.int64)
ids[ids == 77185] += 1
for k in range(0, N, B):
    ids[k:k + B, :P] = ids[k, :P]           # each batch's rows share their first P ids
lab = ids.copy()
lab[:, : T - 24] = -100                       # the recipe's share: ~24 scored tokens a row
h = {}
off = 0
blobs = []
for name, a in (("input_ids", ids), ("labels", lab)):
    b = a.tobytes()
    h[name] = {"dtype": "I64", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))
EOF
  for mode in on off; do
    rm -rf "$W/out"
    build/yuanft train --model "$M" --data "$W/p$p.safetensors" --output-dir "$W/out" --max-steps "$STEPS" \
      --per-device-train-batch-size 6 --save-strategy no --no-shuffle --lora-dropout 0.1 --bf16 \
      --gradient-checkpointing --shared-prefix $mode > "$W/p$p-$mode.log" 2>&1
    eval "t_$mode=$(sed -n 's/.*"warm_tokens_per_second": \([0-9.]*\).*/\1/p' "$W/p$p-$mode.log" | tail -1)"
  done
  # shellcheck disable=SC2154
  echo "P $p: shared $t_on tokens/s, whole rows $t_off tokens/s, ratio $(/usr/bin/python3 -c "print(round($t_on/$t_off, 3))")"
done
