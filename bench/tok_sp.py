#!/usr/bin/python3
"""Reference tokenizer for yuanft's tests and benchmark: python3-sentencepiece
set up as the fine-tuning recipe does (split on the special tokens first, every
other piece encoded on its own, no BOS/EOS).

usage:
  tok_sp.py MODEL encode  < strings.jsonl      one JSON array of ids a line
  tok_sp.py MODEL bmes FILE...                 {"text", "ids"} of each sentence of Resume NER .char.bmes files
  tok_sp.py MODEL time REPS FILE...            best-of-REPS seconds to encode those sentences
"""
import json
import re
import sys
import time

import sentencepiece as spm

SPECIAL = ["<unk>", "<s>", "<eod>", "<sep>", "<pad>", "<mask>", "<predict>", "<FIM_SUFFIX>", "<FIM_PREFIX>",
           "<FIM_MIDDLE>", "<commit_before>", "<commit_msg>", "<commit_after>", "<jupyter_start>",
           "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<empty_output>"]


def load(path):
    sp = spm.SentencePieceProcessor(model_file=path)
    ids, nxt = {}, sp.get_piece_size()
    for s in SPECIAL:  # tokens missing from the model get new ids in this order
        i = sp.piece_to_id(s)
        if sp.id_to_piece(i) != s:
            i, nxt = nxt, nxt + 1
        ids[s] = i
    # longest first: the leftmost match is the longest one there
    pat = re.compile("(" + "|".join(re.escape(s) for s in sorted(SPECIAL, key=len, reverse=True)) + ")")
    return sp, ids, pat


def encode(sp, ids, pat, text):
    out = []
    for k, part in enumerate(pat.split(text)):
        if k % 2:
            out.append(ids[part])
        elif part:
            out.extend(sp.encode(part))
    return out


def sentences(files):
    out = []
    for f in files:
        cur = []
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                line = line.rstrip("\n")
                if not line:
                    if cur:
                        out.append("".join(cur))
                    cur = []
                else:
                    cur.append(line.rsplit(" ", 1)[0])
        if cur:
            out.append("".join(cur))
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sp, ids, pat = load(sys.argv[1])
    cmd = sys.argv[2]
    if cmd == "encode":
        for line in sys.stdin:
            print(json.dumps(encode(sp, ids, pat, json.loads(line)), separators=(",", ":")))
    elif cmd == "bmes":
        for s in sentences(sys.argv[3:]):
            print(json.dumps({"text": s, "ids": encode(sp, ids, pat, s)}, ensure_ascii=False))
    elif cmd == "time":
        sents = sentences(sys.argv[4:])
        best = float("inf")
        for _ in range(int(sys.argv[3])):
            t = time.perf_counter()
            for s in sents:
                encode(sp, ids, pat, s)
            best = min(best, time.perf_counter() - t)
        print("%.6f %d %d" % (best, len(sents), sum(len(s) for s in sents)))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
