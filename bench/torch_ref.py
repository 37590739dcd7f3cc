#!/usr/bin/env python3
"""A PyTorch reference of the Yuan 2.0 decoder with PEFT-style LoRA, for yuanft's benchmarks.

Written from shared/docs/yuan-architecture.md and finetune-semantics.md (not from the Hugging Face
modeling file), so that `make bench` compares yuanft with the same model and the same LoRA on
PyTorch. `--selftest` proves it against the golden files (logits, loss, LoRA gradients, three
AdamW steps, greedy cached decoding); the other modes time one workload and print one JSON line.

Runs on Debian's PyTorch 1.13 (/usr/bin/python3) and on the current PyTorch from PyPI
(bench/venv): features newer than 1.13 are used only when present (scaled_dot_product_attention).

usage:
  torch_ref.py --selftest [--golden DIR]
  torch_ref.py --config yuan2b-2layer --mode train|prefill|decode --dtype bf16|fp32
               [--batch 1] [--seq 384] [--steps 3] [--warmup 1] [--grad-ckpt] [--new-tokens 32]
  torch_ref.py --config yuan2b --mode train --data FILE --batch 6 ...   (real token data: step s
               trains rows [s*B, (s+1)*B) of FILE padded to their longest row, as the HF Trainer's
               collator pads; tokens/s = the timed steps' padded tokens / their seconds)
  torch_ref.py --recipe-batches TRAIN.safetensors --write-data FILE --batch 6 --steps N
               (the recipe workload's batches: see recipe_batches)
"""

import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.checkpoint

EPS = 1e-6
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# V, D, H, I, L and the <eod> id (reset_attention_mask) of the benchmarked shapes.
CONFIGS = {
    "tiny": dict(V=320, D=64, H=4, I=96, L=2, eod=3),
    "yuan2b-2layer": dict(V=135040, D=2048, H=32, I=8192, L=2, eod=77185),
    "yuan2b": dict(V=135040, D=2048, H=32, I=8192, L=24, eod=77185),
}

HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")


# ---------------------------------------------------------------- safetensors (numpy, no package)

_ST_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32,
              "F16": np.float16, "BF16": np.uint16, "U8": np.uint8}


def read_safetensors(path):
    """Returns {name: torch.Tensor}; BF16 is widened exactly to float32."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: too short for a safetensors header")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file")
    header = json.loads(blob[8:8 + n])
    data = memoryview(blob)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        if not 0 <= lo <= hi <= len(data):
            raise ValueError(f"{path}: tensor {name} lies outside the file")
        arr = np.frombuffer(data[lo:hi], dtype=_ST_DTYPES[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = torch.from_numpy(arr.copy())
    return out


def write_safetensors(path, tensors):
    """Writes {name: numpy array} (float32 / int64) as safetensors, via a temp name then rename."""
    names = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    header, off, chunks = {}, 0, []
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        b = arr.tobytes()
        header[name] = {"dtype": names[arr.dtype], "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        chunks.append(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in chunks:
            f.write(b)
    os.replace(tmp, path)


# ---------------------------------------------------------------- the model

class Yuan:
    """Weights in a dict under their checkpoint names; LoRA adapters in `self.lora`.

    dtype_mode: "fp32" (everything fp32), "autocast" (bf16 base weights, fp32 adapters, ops under
    torch.autocast('cpu', bfloat16): what the recipe's Trainer does) or "pure" (bf16 base weights,
    fp32 adapters, explicit casts, no autocast).
    """

    def __init__(self, cfg, weights, dtype_mode="fp32"):
        self.V, self.D, self.H, self.I, self.L = cfg["V"], cfg["D"], cfg["H"], cfg["I"], cfg["L"]
        self.hd = self.D // self.H
        self.eod = cfg["eod"]
        self.mode = dtype_mode
        self.w = weights
        self.lora = {}          # "layers.N.q_proj" -> (A [r,in], B [out,r]) fp32, requires_grad
        self.lora_scaling = 0.0
        self.lora_dropout = 0.0
        self.training = False
        self.grad_ckpt = False
        # the two conv kernels of each layer as single [out, 2*in] matrices: [tap t-1 | tap t]
        for n in range(self.L):
            p = f"model.layers.{n}.self_attn.lf_gate."
            for c in ("conv1", "conv2"):
                k = self.w[p + c + ".weight"]
                self.w[p + c + ".cat"] = torch.cat([k[:, :, 0, 0], k[:, :, 1, 0]], 1).contiguous()
        inv = 1.0 / (10000.0 ** (torch.arange(0, self.hd // 2, dtype=torch.float32) * 2.0 / self.hd))
        self.inv_freq = inv

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=(self.mode == "autocast"))

    def add_lora(self, r, alpha, dropout, generator=None):
        """PEFT init: A kaiming-uniform(a=sqrt(5)) = U(±1/sqrt(in)), B = 0; adapters stay fp32."""
        self.lora_scaling = alpha / r
        self.lora_dropout = dropout
        for n in range(self.L):
            for p in PROJ:
                W = self.w[self.proj_name(n, p)]
                out_f, in_f = W.shape
                bound = 1.0 / math.sqrt(in_f)
                A = (torch.rand(r, in_f, generator=generator) * 2 - 1) * bound
                B = torch.zeros(out_f, r)
                self.lora[f"layers.{n}.{p}"] = (A.requires_grad_(), B.requires_grad_())

    def lora_params(self):
        return [t for ab in self.lora.values() for t in ab]

    @staticmethod
    def proj_name(n, p):
        part = "mlp" if p in ("gate_proj", "up_proj", "down_proj") else "self_attn"
        return f"model.layers.{n}.{part}.{p}.weight"

    # --- ops

    def rmsnorm(self, x, w):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)
        return w * y.to(w.dtype)

    def linear(self, x, n, p):
        y = F.linear(x, self.w[self.proj_name(n, p)])
        ab = self.lora.get(f"layers.{n}.{p}")
        if ab is not None:
            A, B = ab
            xd = F.dropout(x, self.lora_dropout, self.training) if self.lora_dropout > 0 else x
            if self.mode == "pure":
                xd = xd.to(A.dtype)     # autocast does this cast itself; fp32 mode needs none
            y = y + (F.linear(F.linear(xd, A), B) * self.lora_scaling).to(y.dtype)
        return y

    def rope(self, z, pos):
        """z [B, H, T, hd], pos [T] (int): rotate-half RoPE."""
        ang = pos.float()[:, None] * self.inv_freq[None, :]
        ang = torch.cat([ang, ang], -1)
        cos, sin = ang.cos().to(z.dtype), ang.sin().to(z.dtype)
        z1, z2 = z[..., : self.hd // 2], z[..., self.hd // 2:]
        return z * cos + torch.cat([-z2, z1], -1) * sin

    def attend(self, q, k, v, mask):
        """q [B,H,Tq,hd], k/v [B,H,Tk,hd]; mask None (plain causal, Tq == Tk) or bool [B,1,Tq,Tk]."""
        if HAVE_SDPA:
            if mask is None:
                return F.scaled_dot_product_attention(q, k, v, is_causal=q.shape[2] > 1)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        s = torch.matmul(q, k.transpose(-1, -2)).float() * (1.0 / math.sqrt(self.hd))
        if mask is None and q.shape[2] > 1:
            Tq, Tk = q.shape[2], k.shape[2]
            mask = torch.ones(Tq, Tk, dtype=torch.bool).tril(Tk - Tq)
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        return torch.matmul(torch.softmax(s, -1).to(v.dtype), v)

    def seq_mask(self, ids):
        """Causal mask with reset_attention_mask: a token after an <eod> sees nothing up to it.
        None when no <eod> is followed by a token (then it is the plain causal mask)."""
        is_eod = ids == self.eod
        if not bool(is_eod[:, :-1].any()):
            return None
        doc = torch.cumsum(is_eod.long(), 1) - is_eod.long()     # <eod> ends its own document
        T = ids.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        return (causal[None] & (doc[:, :, None] == doc[:, None, :]))[:, None]

    # --- one layer over whole sequences (training and prefill)

    def layer(self, n, h, mask, cache=None):
        with self.autocast():
            return self._layer(n, h, mask, cache)

    def _layer(self, n, h, mask, cache):
        w, B, T = self.w, h.shape[0], h.shape[1]
        pre = f"model.layers.{n}."
        lf = pre + "self_attn.lf_gate."
        a = self.rmsnorm(h, w[pre + "input_layernorm.weight"])
        v = self.linear(a, n, "v_proj")
        # localized filtering: two width-2 causal convolutions along time, zero history
        a_prev = F.pad(a, (0, 0, 1, 0))[:, :T]
        c = F.linear(torch.cat([a_prev, a], -1), w[lf + "conv1.cat"], w[lf + "conv1.bias"])
        c_prev = F.pad(c, (0, 0, 1, 0))[:, :T]
        e = F.linear(torch.cat([c_prev, c], -1), w[lf + "conv2.cat"], w[lf + "conv2.bias"])
        f = self.rmsnorm(e + a, w[lf + "output_layernorm.weight"])
        qk = torch.cat([self.linear(f, n, "q_proj"), self.linear(f, n, "k_proj")], -1)
        qk = qk.view(B, T, self.H, 2 * self.hd).transpose(1, 2)
        pos = torch.arange(T)
        q = self.rope(qk[..., : self.hd], pos)
        k = self.rope(qk[..., self.hd:], pos)
        vh = v.view(B, T, self.H, self.hd).transpose(1, 2)
        if cache is not None:
            cache[n] = dict(k=k, v=vh, a=a[:, -1], c=c[:, -1])
        o = self.attend(q, k, vh, mask).transpose(1, 2).reshape(B, T, self.D)
        h = h + self.linear(o, n, "o_proj")
        return h + self._mlp(n, h)

    def _mlp(self, n, h):
        m = self.rmsnorm(h, self.w[f"model.layers.{n}.post_attention_layernorm.weight"])
        g = self.linear(m, n, "gate_proj")
        u = self.linear(m, n, "up_proj")
        return self.linear(g * F.silu(u), n, "down_proj")       # silu on up_proj, not gate

    def embed(self, ids):
        return F.embedding(ids, self.w["model.embed_tokens.weight"])

    def head(self, h):
        with self.autocast():
            x = self.rmsnorm(h, self.w["model.norm.weight"])
            return F.linear(x, self.lm_head())

    def lm_head(self):
        return self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])

    def forward(self, ids, cache=None, last_only=False):
        """ids [B, T] -> logits [B, T, V] (fp32 or bf16 under autocast); last_only: [B, 1, V]."""
        mask = self.seq_mask(ids)
        h = self.embed(ids)
        for n in range(self.L):
            if self.grad_ckpt and torch.is_grad_enabled():
                # keep only the layer input; recompute the layer (under autocast) in the backward
                h = torch.utils.checkpoint.checkpoint(self.layer, n, h, mask, use_reentrant=False)
            else:
                h = self.layer(n, h, mask, cache)
        if last_only:
            h = h[:, -1:]
        return self.head(h)

    # --- incremental decoding

    def prefill(self, ids):
        """Returns (logits of the last position [B, V], cache)."""
        cache = {}
        logits = self.forward(ids, cache=cache, last_only=True)[:, -1]
        is_eod = (ids == self.eod).long()
        T = ids.shape[1]
        # a later token may attend only to positions after the last <eod>
        last = torch.where(is_eod.any(1), T - 1 - torch.flip(is_eod, [1]).argmax(1), torch.full_like(is_eod[:, 0], -1))
        cache["start"] = last + 1
        cache["t"] = T
        return logits, cache

    def decode_step(self, tok, cache):
        """tok [B] -> logits [B, V]; extends the cache by one position."""
        with self.autocast():
            return self._decode_step(tok, cache)

    def _decode_step(self, tok, cache):
        w, B, t = self.w, tok.shape[0], cache["t"]
        h = self.embed(tok)                                              # [B, D]
        pos = torch.tensor([t])
        for n in range(self.L):
            pre = f"model.layers.{n}."
            lf = pre + "self_attn.lf_gate."
            st = cache[n]
            a = self.rmsnorm(h, w[pre + "input_layernorm.weight"])
            v = self.linear(a, n, "v_proj")
            c = F.linear(torch.cat([st["a"], a], -1), w[lf + "conv1.cat"], w[lf + "conv1.bias"])
            e = F.linear(torch.cat([st["c"], c], -1), w[lf + "conv2.cat"], w[lf + "conv2.bias"])
            st["a"], st["c"] = a, c
            f = self.rmsnorm(e + a, w[lf + "output_layernorm.weight"])
            qk = torch.cat([self.linear(f, n, "q_proj"), self.linear(f, n, "k_proj")], -1)
            qk = qk.view(B, self.H, 1, 2 * self.hd)
            q = self.rope(qk[..., : self.hd], pos)
            k = self.rope(qk[..., self.hd:], pos)
            st["k"] = torch.cat([st["k"], k.to(st["k"].dtype)], 2)
            st["v"] = torch.cat([st["v"], v.view(B, self.H, 1, self.hd).to(st["v"].dtype)], 2)
            keys = torch.arange(t + 1)
            mask = None
            if bool((cache["start"] > 0).any()):
                mask = (keys[None, :] >= cache["start"][:, None])[:, None, None, :]
            o = self.attend(q.to(st["k"].dtype), st["k"], st["v"], mask).reshape(B, self.D)
            h = h + self.linear(o, n, "o_proj")
            h = h + self._mlp(n, h)
        if bool((tok == self.eod).any()):
            cache["start"] = torch.where(tok == self.eod, torch.full_like(cache["start"], t + 1), cache["start"])
        cache["t"] = t + 1
        return self.head(h)


def loss_next_token(logits, labels):
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), labels[:, 1:].reshape(-1), ignore_index=-100)


# ---------------------------------------------------------------- random init (no downloads)

def random_weights(cfg, dtype, seed=0):
    """Yuan-shaped weights, N(0, 0.02) (initializer_range), norms 1, conv biases 0, tied head."""
    g = torch.Generator().manual_seed(seed)
    V, D, I, L = cfg["V"], cfg["D"], cfg["I"], cfg["L"]

    def normal(*shape):
        t = torch.empty(*shape, dtype=dtype)
        # chunked so that a bf16 model never holds an fp32 copy of a big matrix
        flat = t.view(-1)
        step = 1 << 24
        for i in range(0, flat.numel(), step):
            n = min(step, flat.numel() - i)
            flat[i:i + n] = torch.randn(n, generator=g).mul_(0.02).to(dtype)
        return t

    w = {"model.embed_tokens.weight": normal(V, D), "model.norm.weight": torch.ones(D, dtype=dtype)}
    for n in range(L):
        p = f"model.layers.{n}."
        w[p + "input_layernorm.weight"] = torch.ones(D, dtype=dtype)
        w[p + "post_attention_layernorm.weight"] = torch.ones(D, dtype=dtype)
        w[p + "self_attn.lf_gate.output_layernorm.weight"] = torch.ones(D, dtype=dtype)
        w[p + "self_attn.lf_gate.conv1.weight"] = normal(D // 2, D, 2, 1)
        w[p + "self_attn.lf_gate.conv1.bias"] = torch.zeros(D // 2, dtype=dtype)
        w[p + "self_attn.lf_gate.conv2.weight"] = normal(D, D // 2, 2, 1)
        w[p + "self_attn.lf_gate.conv2.bias"] = torch.zeros(D, dtype=dtype)
        for q in ("q_proj", "k_proj", "v_proj", "o_proj"):
            w[p + f"self_attn.{q}.weight"] = normal(D, D)
        w[p + "mlp.gate_proj.weight"] = normal(I, D)
        w[p + "mlp.up_proj.weight"] = normal(I, D)
        w[p + "mlp.down_proj.weight"] = normal(D, I)
    return w


def random_batch(cfg, B, T, seed=1):
    """Token ids that avoid <eod> (one document per row, as the recipe's examples), labels = ids."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(5, cfg["V"] - 1, size=(B, T)).astype(np.int64)
    ids[ids == cfg["eod"]] += 1
    return ids, ids.copy()


# ---------------------------------------------------------------- self-test against golden files

def selftest(gold):
    torch.manual_seed(0)
    cfg = dict(CONFIGS["tiny"])
    with open(os.path.join(gold, "config.json")) as f:
        c = json.load(f)
    cfg.update(V=c["vocab_size"], D=c["hidden_size"], H=c["num_attention_heads"], I=c["intermediate_size"],
               L=c["num_hidden_layers"], eod=c["eod_token"])
    w = read_safetensors(os.path.join(gold, "model.safetensors"))
    fwd = read_safetensors(os.path.join(gold, "forward.safetensors"))
    ids, labels = fwd["input_ids"], fwd["labels"]
    fails = []

    def check(what, err, tol):
        ok = err <= tol
        print(f"  {'ok  ' if ok else 'FAIL'} {what}: error {err:.3g} (tolerance {tol:g})")
        if not ok:
            fails.append(what)

    def rel(a, b):
        return float((a - b).norm() / max(float(b.norm()), 1e-30))

    with torch.no_grad():
        m = Yuan(cfg, dict(w))
        logits = m.forward(ids)
        check("fp32 logits vs golden logits (max abs)", float((logits - fwd["logits"]).abs().max()), 1e-4)
        check("fp32 loss_next_token (abs)", abs(float(loss_next_token(logits, labels)) - float(fwd["loss_next_token"])), 1e-4)
        gap = abs(float(loss_next_token(logits, labels)) - float(fwd["loss_unshifted"]))
        print(f"  {'ok  ' if gap > 1e-3 else 'FAIL'} loss differs from loss_unshifted (no off-by-one): gap {gap:.3g}")
        if gap <= 1e-3:
            fails.append("loss_unshifted")
        wb = {k: v.to(torch.bfloat16).float() for k, v in w.items()}
        lb = Yuan(cfg, wb).forward(ids)
        check("bf16-rounded weights, fp32 math vs logits_bf16_weights (max abs)",
              float((lb - fwd["logits_bf16_weights"]).abs().max()), 1e-4)
        # the bf16 modes actually benchmarked: only a loose agreement is expected
        for mode in ("autocast", "pure"):
            mb = Yuan(cfg, {k: v.to(torch.bfloat16) for k, v in w.items()}, mode)
            lbb = mb.forward(ids).float()
            check(f"bf16 '{mode}' mode vs fp32 logits (relative L2)", rel(lbb, fwd["logits"]), 3e-2)

    # LoRA: forward and every adapter gradient (r=4, alpha=8, dropout 0)
    ad = read_safetensors(os.path.join(gold, "lora", "adapter_model.safetensors"))
    lf = read_safetensors(os.path.join(gold, "lora", "forward.safetensors"))
    lg = read_safetensors(os.path.join(gold, "lora", "grads.safetensors"))
    with open(os.path.join(gold, "lora", "adapter_config.json")) as f:
        acfg = json.load(f)

    def load_adapter(m, tensors):
        m.lora_scaling = acfg["lora_alpha"] / acfg["r"]
        m.lora_dropout = acfg["lora_dropout"]
        for n in range(m.L):
            for p in PROJ:
                key = Yuan.proj_name(n, p)[: -len(".weight")]
                A = tensors[f"base_model.model.{key}.lora_A.weight"].clone().requires_grad_()
                B = tensors[f"base_model.model.{key}.lora_B.weight"].clone().requires_grad_()
                m.lora[f"layers.{n}.{p}"] = (A, B)

    def adapter_key(n, p, which):
        return f"base_model.model.{Yuan.proj_name(n, p)[:-len('.weight')]}.lora_{which}.weight"

    for ckpt in (False, True):
        m = Yuan(cfg, dict(w))
        load_adapter(m, ad)
        m.training, m.grad_ckpt = True, ckpt
        lo = m.forward(ids)
        loss = loss_next_token(lo, labels)
        loss.backward()
        tag = " (gradient checkpointing)" if ckpt else ""
        if not ckpt:
            check("LoRA logits (max abs)", float((lo.detach() - lf["logits"]).abs().max()), 1e-4)
            check("LoRA loss (abs)", abs(loss.item() - float(lf["loss_next_token"])), 1e-4)
        worst = 0.0
        for n in range(m.L):
            for p in PROJ:
                A, B = m.lora[f"layers.{n}.{p}"]
                worst = max(worst, rel(A.grad, lg[adapter_key(n, p, "A")]), rel(B.grad, lg[adapter_key(n, p, "B")]))
        check("LoRA gradients, worst relative error" + tag, worst, 1e-3)

    # three optimizer steps: torch's AdamW, linear decay to 0, clipping at 1.0
    with open(os.path.join(gold, "lora", "train", "trajectory.json")) as f:
        traj = json.load(f)
    m = Yuan(cfg, dict(w))
    load_adapter(m, ad)
    m.training = True
    params = m.lora_params()
    steps = traj["steps"]
    opt = torch.optim.AdamW(params, lr=traj["learning_rate"], betas=(traj["adam_beta1"], traj["adam_beta2"]),
                            eps=traj["adam_epsilon"], weight_decay=traj["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (steps - s) / steps))
    for s in range(steps):
        loss = loss_next_token(m.forward(ids), labels)
        loss.backward()
        gn = float(torch.nn.utils.clip_grad_norm_(params, traj["max_grad_norm"]))
        check(f"train step {s + 1}: loss", abs(loss.item() - traj["loss_per_step"][s]), 1e-4)
        check(f"train step {s + 1}: grad norm before clipping (relative)",
              abs(gn - traj["grad_norm_before_clip"][s]) / traj["grad_norm_before_clip"][s], 1e-4)
        opt.step()
        sched.step()
        opt.zero_grad()
    after = read_safetensors(os.path.join(gold, "lora", "train", "adapter_model.safetensors"))
    worst = 0.0
    for n in range(m.L):
        for p in PROJ:
            A, B = m.lora[f"layers.{n}.{p}"]
            worst = max(worst, rel(A.detach(), after[adapter_key(n, p, "A")]), rel(B.detach(), after[adapter_key(n, p, "B")]))
    check("adapter after 3 steps, worst relative error", worst, 1e-4)

    # greedy decoding through the cache
    with open(os.path.join(gold, "generate.json")) as f:
        gen = json.load(f)
    gs = read_safetensors(os.path.join(gold, "generate.safetensors"))
    with torch.no_grad():
        m = Yuan(cfg, dict(w))
        prompt = torch.tensor([gen["prompt_ids"]])
        logits, cache = m.prefill(prompt)
        out, steps_logits = [], [logits]
        for _ in range(len(gen["greedy_new_ids"])):
            tok = logits.argmax(-1)
            out.append(int(tok[0]))
            logits = m.decode_step(tok, cache)
            steps_logits.append(logits)
        check("greedy ids through the cache (mismatches)", float(sum(a != b for a, b in zip(out, gen["greedy_new_ids"]))), 0)
        full = gs["logits_full_forward"][0]
        P = prompt.shape[1]
        err = max(float((steps_logits[i] - full[P - 1 + i]).abs().max()) for i in range(len(out)))
        check("cached logits vs full-forward logits (max abs)", err, 1e-4)
        # the same check for a prompt with <eod> inside (reset_attention_mask in the cache path)
        seq = torch.tensor([[11, 12, cfg["eod"], 13, 14, 15, 16, 17]])
        ref = m.forward(seq)[0]
        lg0, cache = m.prefill(seq[:, :4])
        errs = [float((lg0[0] - ref[3]).abs().max())]
        for i in range(4, 8):
            errs.append(float((m.decode_step(seq[:, i], cache)[0] - ref[i]).abs().max()))
        check("cached decoding after an <eod> vs full forward (max abs)", max(errs), 1e-4)

    print(f"torch {torch.__version__}: selftest {'FAILED: ' + ', '.join(fails) if fails else 'passed'}")
    return 1 if fails else 0


# ---------------------------------------------------------------- the recipe workload's batches

def recipe_batches(train, out, batch, nbatch, seed=0):
    """Batches of the real training records as an epoch of the HF Trainer's shuffled order makes them
    (docs/shared-prefix.md). train: `yuanft data tokenize` of the Resume NER records with the résumé
    template (input_ids, labels [N, T], lengths [N]). out gets the first nbatch batches of a seeded
    permutation of its rows, in order, so that `yuanft train --no-shuffle` and `--data` here run the
    same batches. Prints one JSON line: over an epoch of that permutation and over the sampled
    batches after the first (the timed ones), the positions padded batches hold (B x the longest
    row: what the HF Trainer computes and counts), the positions shared-prefix batches compute (the
    common prefix once, each row's rest up to its last scored position) and the common prefixes."""
    d = {k: v.numpy() for k, v in read_safetensors(train).items()}
    ids, lab = d["input_ids"], d["labels"]
    n = ids.shape[0]
    scored = lab != -100
    need = np.where(scored.any(1), ids.shape[1] - np.argmax(scored[:, ::-1], 1), 1)  # up to the last scored label

    def stats(rows):
        tb = int(need[rows].max())
        p = 0
        while p < tb and (ids[rows, p] == ids[rows[0], p]).all():
            p += 1
        return len(rows) * tb, p + int(np.maximum(need[rows] - p, 0).sum()), p

    perm = np.random.RandomState(seed).permutation(n)
    ep = [stats(perm[k:k + batch]) for k in range(0, n, batch)]
    take = perm[: batch * nbatch]
    sm = [stats(take[k:k + batch]) for k in range(batch, len(take), batch)]
    t = int(need[take].max())
    write_safetensors(out, {"input_ids": ids[take, :t], "labels": lab[take, :t], "lengths": need[take].astype(np.int64)})
    print(json.dumps(dict(records=n, batch=batch, steps_per_epoch=len(ep), seed=seed,
                          epoch_padded_positions=sum(e[0] for e in ep), epoch_shared_positions=sum(e[1] for e in ep),
                          epoch_mean_prefix=round(sum(e[2] for e in ep) / len(ep), 1),
                          epoch_scored_tokens=int(scored[:, 1:].sum()), sample_batches=nbatch,
                          timed_padded_positions=sum(e[0] for e in sm), timed_shared_positions=sum(e[1] for e in sm),
                          timed_prefixes=[e[2] for e in sm])))
    return 0


# ---------------------------------------------------------------- benchmarks

def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # Linux: KiB


def bench(args):
    cfg = CONFIGS[args.config]
    mode = "fp32" if args.dtype == "fp32" else args.bf16_mode
    wdtype = torch.float32 if mode == "fp32" else torch.bfloat16
    t0 = time.time()
    m = Yuan(cfg, random_weights(cfg, wdtype), mode)
    init_s = time.time() - t0
    res = dict(impl="pytorch", torch=torch.__version__, config=args.config, mode=args.mode, dtype=args.dtype,
               bf16_mode=(mode if mode != "fp32" else None), threads=torch.get_num_threads(),
               attention=("sdpa" if HAVE_SDPA else "matmul+softmax"), init_s=round(init_s, 2))
    cap = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if cap is not None:     # ATen's vector code path (ATEN_CPU_CAPABILITY caps it; 2.x only)
        res["cpu_capability"] = cap()
    step_times = []
    if args.mode == "train":
        m.add_lora(8, 32, 0.1, torch.Generator().manual_seed(2))
        m.training, m.grad_ckpt = True, args.grad_ckpt
        params = m.lora_params()
        opt = torch.optim.AdamW(params, lr=5e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        ids, labels = (torch.from_numpy(a) for a in random_batch(cfg, args.batch, args.seq))
        data = read_safetensors(args.data) if args.data else None
        losses, step_tokens = [], []
        for s in range(args.warmup + args.steps):
            if data is not None:
                # the next B rows, right-padded to the longest of them (DataCollatorForSeq2Seq)
                r0, r1 = s * args.batch, (s + 1) * args.batch
                if r1 > data["input_ids"].shape[0]:
                    log(f"torch_ref.py: {args.data} has {data['input_ids'].shape[0]} rows, step {s + 1} needs {r1}")
                    return 2
                tb = int(data["lengths"][r0:r1].max())
                ids, labels = data["input_ids"][r0:r1, :tb], data["labels"][r0:r1, :tb]
            t = time.time()
            with m.autocast():
                loss = loss_next_token(m.forward(ids), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(round(loss.item(), 4))
            if s >= args.warmup:
                step_times.append(time.time() - t)
                step_tokens.append(ids.numel())
            log(f"  step {s + 1}: loss {losses[-1]} {time.time() - t:.2f}s ({ids.shape[0]} x {ids.shape[1]})")
        tokens = args.batch * args.seq
        res.update(batch=args.batch, seq=args.seq, grad_ckpt=args.grad_ckpt, lora="r8 a32 d0.1 x7", losses=losses)
        if data is not None:
            res.update(data=args.data, seq=None, tokens_timed=sum(step_tokens), seconds_timed=round(sum(step_times), 3),
                       data_tokens_per_second=round(sum(step_tokens) / sum(step_times), 2))
    else:
        ids = torch.from_numpy(random_batch(cfg, 1, args.seq)[0])
        with torch.no_grad():
            for s in range(args.warmup + args.steps):
                t = time.time()
                logits, cache = m.prefill(ids)
                tp = time.time() - t
                if args.mode == "decode":
                    t = time.time()
                    tok = logits.argmax(-1)
                    for _ in range(args.new_tokens):
                        tok = m.decode_step(tok, cache).argmax(-1)
                    tp = time.time() - t
                if s >= args.warmup:
                    step_times.append(tp)
                log(f"  rep {s + 1}: {tp:.3f}s")
        tokens = args.seq if args.mode == "prefill" else args.new_tokens
        res.update(batch=1, seq=args.seq)
        if args.mode == "decode":
            res.update(new_tokens=args.new_tokens)
    # the median step: on a machine shared with other jobs a single disturbed step would move a mean
    med = sorted(step_times)[len(step_times) // 2] if len(step_times) % 2 else \
        sum(sorted(step_times)[len(step_times) // 2 - 1: len(step_times) // 2 + 1]) / 2
    res.update(steps_timed=len(step_times), warmup=args.warmup, seconds_per_step=round(med, 4),
               seconds_all_steps=[round(t, 4) for t in step_times],
               tokens_per_second=res.get("data_tokens_per_second", round(tokens / med, 2)),
               peak_rss_mb=round(peak_rss_mb(), 1))
    print(json.dumps(res), flush=True)
    return 0


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--selftest", action="store_true", help="check against the golden yuan-tiny files")
    ap.add_argument("--golden", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "..", "..", "shared", "golden", "yuan-tiny"))
    ap.add_argument("--config", choices=sorted(CONFIGS), default="yuan2b-2layer")
    ap.add_argument("--mode", choices=("train", "prefill", "decode"), default="train")
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--bf16-mode", choices=("autocast", "pure"), default="autocast",
                    help="bf16 weights under torch.autocast, or bf16 weights with explicit casts")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=384)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (or prefill/decode repetitions)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--grad-ckpt", action="store_true")
    ap.add_argument("--data", metavar="FILE", help="train mode: batches of real token data (input_ids, labels, "
                    "lengths: torch_ref.py --recipe-batches) instead of one random batch")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--write-data", metavar="FILE", help="write the benchmark batch (input_ids, labels) "
                    "for --config/--batch/--seq as safetensors, for yuanft train, and exit")
    ap.add_argument("--recipe-batches", metavar="TRAIN", help="with --write-data, --batch and --steps: write that many "
                    "batches of the tokenised training records TRAIN (recipe_batches) and print their statistics")
    ap.add_argument("--print-ids", action="store_true", help="print the first row of the benchmark batch "
                    "(--config/--seq) as comma-separated ids, for yuanft generate --prompt-ids, and exit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.selftest:
        gold = os.environ.get("YF_GOLDEN", args.golden)
        if not os.path.isdir(gold):
            log(f"torch_ref.py: golden folder {gold} not found (pass --golden DIR)")
            return 2
        return selftest(gold)
    if args.print_ids:
        print(",".join(str(int(i)) for i in random_batch(CONFIGS[args.config], 1, args.seq)[0][0]))
        return 0
    if args.recipe_batches:
        return recipe_batches(args.recipe_batches, args.write_data, args.batch, args.steps)
    if args.write_data:
        ids, labels = random_batch(CONFIGS[args.config], args.batch, args.seq)
        write_safetensors(args.write_data, {"input_ids": ids, "labels": labels})
        return 0
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
