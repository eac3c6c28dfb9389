"""One cramming optimisation step: cramlens (TransformerLens + cramlens.fast) vs plain transformers (sdpa).

A step is what ``cramlens.engine.CramLoop`` does per iteration: build the batch, forward with the memory injected
at ``hook_embed`` (``cramlens.forward.residual_at_targets`` + ``logits_from_residual`` + ``score``), backward to
the memory only (the model is frozen), ``BatchedAdamW.step``. The baseline is ``LlamaForCausalLM`` on the same
fp32 weights with ``attn_implementation="sdpa"`` and ``inputs_embeds`` (memory row + token embeddings), per-sample
mean CE, ``torch.optim.AdamW``. Same threads, same shapes: B samples of L targets = L input positions.

Variants timed in one interleaved loop (every repetition runs each variant once, in rotating order):
``hf`` (plain transformers), ``fp32`` (cramlens, ``fast.optimize``), ``bf16`` (cramlens,
``fast.optimize(precision="bf16")``), ``tl`` (cramlens on the unoptimised HookedTransformer; ``--tl``), and the
fp32 matmul ceiling (a 2048^3 ``torch.mm``). Ratios are medians of per-repetition ratios.

FLOPs counted per step (matmuls only): forward = 2*B*L*(linear params per layer)*n_layers
+ 2*2*B*n_heads*d_head*L(L+1)/2 (causal QK^T and PV) + 2*B*L*d_model*d_vocab (unembedding at every target);
backward to the *input* only (no weight gradients) costs 1x forward for the linear layers and the unembedding
and 2x for the attention products (grads of both operands), so a step is 2x forward + 1x attention.

    .venv/bin/python benchmarks/bench_step.py            # full grid B in {1,4,8}, L in {32,64,128,256}
    .venv/bin/python benchmarks/bench_step.py --quick    # B in {1,8}, L in {64,256}
"""

from __future__ import annotations

import os

os.environ.setdefault(
    "OMP_WAIT_POLICY", "PASSIVE"
)  # before torch: OpenMP threads must not spin under contention

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import load_models, matmul_ceiling, timed2  # noqa: E402

from cramlens import fast  # noqa: E402
from cramlens.forward import logits_from_residual, residual_at_targets, score  # noqa: E402
from cramlens.layout import Layout, build_batch  # noqa: E402
from cramlens.optim import BatchedAdamW, Schedule  # noqa: E402


def step_flops(cfg, B: int, L: int) -> float:
    d, dh, nq = cfg.d_model, cfg.d_head, cfg.n_heads
    nkv = cfg.n_key_value_heads or nq
    lin = d * (nq + 2 * nkv) * dh + nq * dh * d + (3 if cfg.gated_mlp else 2) * d * cfg.d_mlp
    f_lin = 2.0 * B * L * lin * cfg.n_layers
    f_att = 2 * 2.0 * B * nq * dh * (L * (L + 1) / 2) * cfg.n_layers
    f_unembed = 2.0 * B * L * d * cfg.d_vocab
    return 2 * f_lin + 3 * f_att + 2 * f_unembed


class CramStep:
    """The engine's step on a (possibly optimised) HookedTransformer."""

    def __init__(self, model, seqs, L):
        self.model, self.seqs, self.L = model, seqs, L
        B = len(seqs)
        self.mem = (
            torch.rand(B, 1, model.cfg.d_model, generator=torch.Generator().manual_seed(0)) * 0.02
        ).requires_grad_(True)
        self.opt = BatchedAdamW([self.mem], Schedule(0.1, 1e-3, 100, 10_000), (0.9, 0.9), 0.01)
        self.active = torch.ones(B, dtype=torch.bool)

    def __call__(self):
        batch = build_batch(self.model, self.seqs, [self.L] * len(self.seqs), Layout())
        sc = score(logits_from_residual(self.model, residual_at_targets(self.model, self.mem, batch)), batch)
        sc.accuracy.cpu(), sc.margin.cpu()  # the engine reads these back every iteration
        sc.loss.sum().backward()
        self.opt.step(self.active)
        self.opt.zero_grad()
        return float(sc.loss.detach().sum())


class HFStep:
    """Plain transformers: inputs_embeds = [memory, token embeddings], full logits, per-sample mean CE."""

    def __init__(self, hf, seqs, L):
        self.hf = hf
        B = len(seqs)
        self.ids = torch.tensor([[0] + s[: L - 1] for s in seqs])
        self.targets = torch.tensor([s[:L] for s in seqs])
        d = hf.config.hidden_size
        self.mem = torch.nn.Parameter(torch.rand(B, 1, d, generator=torch.Generator().manual_seed(0)) * 0.02)
        self.opt = torch.optim.AdamW([self.mem], lr=0.1, betas=(0.9, 0.9), weight_decay=0.01)

    def __call__(self):
        emb = self.hf.model.embed_tokens(self.ids)
        x = torch.cat([self.mem, emb[:, 1:]], dim=1)
        logits = self.hf(inputs_embeds=x).logits
        B, L = self.targets.shape
        loss = (
            F.cross_entropy(logits.flatten(0, 1), self.targets.flatten(), reduction="none").view(B, L).mean(1)
        )
        loss.sum().backward()
        self.opt.step()
        self.opt.zero_grad()
        return float(loss.detach().sum())


def run_cell(models, hf, B, L, reps, warmup, variants, vocab):
    g = torch.Generator().manual_seed(1000 * B + L)
    seqs = [torch.randint(100, vocab, (L,), generator=g).tolist() for _ in range(B)]
    steps = {}
    for v in variants:
        steps[v] = HFStep(hf, seqs, L) if v == "hf" else CramStep(models[v], seqs, L)
    for _ in range(warmup):
        for v in variants:
            steps[v]()
    times = {v: [] for v in variants}
    cpu = {v: [] for v in variants}
    ceil = []
    for r in range(reps):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for v in order:
            w, c = timed2(steps[v])
            times[v].append(w)
            cpu[v].append(c)
        ceil.append(matmul_ceiling(2048, reps=1))
    return times, cpu, ceil


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="B in {1,8}, L in {64,256}, 3 repetitions")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--tl", action="store_true", help="also time the unoptimised TransformerLens model")
    ap.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.batches, args.lengths, args.reps = [1, 8], [64, 256], 3
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True, width=220)
    hooked, hf = load_models()
    models = {"fp32": fast.optimize(copy.deepcopy(hooked), precision="fp32")}
    variants = ["hf", "fp32"]
    if not args.no_bf16:
        models["bf16"] = fast.optimize(copy.deepcopy(hooked), precision="bf16")
        variants.append("bf16")
    if args.tl:
        models["tl"] = hooked  # TransformerLens as is
        variants.append("tl")
    env = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    console.print(f"[bold]bench_step[/] {env}  variants={variants}")
    rows = []
    out = open(args.out, "a") if args.out else None
    for B in args.batches:
        for L in args.lengths:
            t0 = time.time()
            times, cpu, ceil = run_cell(
                models, hf, B, L, args.reps, args.warmup, variants, hooked.cfg.d_vocab
            )
            med = {v: statistics.median(times[v]) for v in variants}
            ratio = {
                v: statistics.median([a / b for a, b in zip(times[v], times["hf"], strict=True)])
                for v in variants
            }
            cmed = {v: statistics.median(cpu[v]) for v in variants}
            cratio = {
                v: statistics.median([a / b for a, b in zip(cpu[v], cpu["hf"], strict=True)])
                for v in variants
            }
            fl = step_flops(hooked.cfg, B, L)
            c = statistics.median(x[0] for x in ceil)
            c_cpu = statistics.median(x[1] for x in ceil)
            row = {
                "bench": "step",
                "B": B,
                "L": L,
                **{f"ms_{v}": round(1000 * med[v], 2) for v in variants},
                **{f"ratio_{v}_hf": round(ratio[v], 3) for v in variants if v != "hf"},
                **{f"cpu_ms_{v}": round(1000 * cmed[v], 1) for v in variants},
                **{f"cpu_ratio_{v}_hf": round(cratio[v], 3) for v in variants if v != "hf"},
                "min_ms": {v: round(1000 * min(times[v]), 1) for v in variants},
                "gflop_step": round(fl / 1e9, 2),
                **{f"gflops_{v}": round(fl / med[v] / 1e9, 1) for v in variants},
                "ceiling_gflops": round(c, 1),
                "pct_ceiling_fp32": round(100 * fl / med["fp32"] / 1e9 / c, 1),
                "ceiling_gflop_per_cpu_s": round(c_cpu, 1),
                "gflop_per_cpu_s_fp32": round(fl / cmed["fp32"] / 1e9, 1),
                "pct_ceiling_cpu_fp32": round(100 * fl / cmed["fp32"] / 1e9 / c_cpu, 1),
                "reps": args.reps,
                "cell_s": round(time.time() - t0, 1),
                "load_avg": round(os.getloadavg()[0], 2),
                **env,
            }
            if "bf16" in variants:
                row["speedup_bf16_vs_fp32"] = round(
                    statistics.median([a / b for a, b in zip(times["fp32"], times["bf16"], strict=True)]), 3
                )
                row["cpu_speedup_bf16_vs_fp32"] = round(
                    statistics.median([a / b for a, b in zip(cpu["fp32"], cpu["bf16"], strict=True)]), 3
                )
            if "tl" in variants:
                row["speedup_fast_vs_tl"] = round(
                    statistics.median([a / b for a, b in zip(times["tl"], times["fp32"], strict=True)]), 3
                )
                row["cpu_speedup_fast_vs_tl"] = round(
                    statistics.median([a / b for a, b in zip(cpu["tl"], cpu["fp32"], strict=True)]), 3
                )
            rows.append(row)
            line = json.dumps(row)
            print(line, flush=True)
            if out:
                out.write(line + "\n")
                out.flush()
            console.print(f"  B={B} L={L}: " + ", ".join(f"{v} {1000 * med[v]:.0f} ms" for v in variants))

    table = Table(title="cramming step (median ms; ratios = median of per-repetition ratios)")
    cols = ["B", "L"] + [f"{v} ms" for v in variants] + [f"{v}/hf" for v in variants if v != "hf"]
    cols += ["bf16 speedup", "(cpu)"] if "bf16" in variants else []
    cols += ["fast vs tl"] if "tl" in variants else []
    cols += ["GFLOP", "fp32 GFLOP/s", "ceiling", "% ceil", "% ceil (cpu)", "cpu fp32/hf"]
    for col in cols:
        table.add_column(col, justify="right")
    for r in rows:
        cells = [str(r["B"]), str(r["L"])] + [f"{r[f'ms_{v}']:.0f}" for v in variants]
        cells += [f"{r[f'ratio_{v}_hf']:.3f}" for v in variants if v != "hf"]
        cells += (
            [f"{r['speedup_bf16_vs_fp32']:.2f}x", f"{r['cpu_speedup_bf16_vs_fp32']:.2f}x"]
            if "bf16" in variants
            else []
        )
        cells += [f"{r['speedup_fast_vs_tl']:.2f}x"] if "tl" in variants else []
        cells += [
            f"{r['gflop_step']:.1f}",
            f"{r['gflops_fp32']:.1f}",
            f"{r['ceiling_gflops']:.1f}",
            f"{r['pct_ceiling_fp32']:.0f}%",
            f"{r['pct_ceiling_cpu_fp32']:.0f}%",
            f"{r['cpu_ratio_fp32_hf']:.3f}",
        ]
        table.add_row(*cells)
    console.print(table)
    by = {(r["B"], r["L"]): r for r in rows}
    for L in args.lengths:
        if (1, L) in by and (8, L) in by:
            thr = 8 * by[(1, L)]["ms_fp32"] / by[(8, L)]["ms_fp32"]
            thr_cpu = 8 * by[(1, L)]["cpu_ms_fp32"] / by[(8, L)]["cpu_ms_fp32"]
            line = json.dumps(
                {
                    "bench": "batch_throughput",
                    "L": L,
                    "per_sample_B8_vs_B1_fp32": round(thr, 3),
                    "cpu_per_sample_B8_vs_B1_fp32": round(thr_cpu, 3),
                }
            )
            print(line)
            if out:
                out.write(line + "\n")
            console.print(
                f"per-sample throughput B=8 vs B=1 at L={L} (fp32): {thr:.2f}x wall, {thr_cpu:.2f}x cpu"
            )
    if out:
        out.close()


if __name__ == "__main__":
    main()
