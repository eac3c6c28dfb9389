"""The cramming loop: per-sample stages inside one batch, measure-then-decide, warm starts.

Full cramming is the special case of one stage at the full length. Each sample has its own stage length,
step counters, Adam moments and learning-rate position, and leaves the forward batch as soon as it is done, so
a slow sample never holds back the others. Every iteration:

1. forward the active samples at their current stage lengths (right-padded; causal attention keeps rows apart);
2. a sample whose teacher-forced accuracy reaches the threshold passes its stage *without* stepping, so the
   recorded embedding is exactly the one measured; a sample out of stage or sample budget fails its stage;
3. the others take one AdamW step on the sum of their per-sample losses.

``Recipe.search_dtype="bfloat16"`` runs step 1 in bf16 and lets an fp32 judge (:mod:`cramlens.judge`) end stages in
step 2: a row passes only if fp32 agrees (else it steps on, in fp32), and its recorded numbers are the judge's.

Stage schedules: ``linear`` (``L = min_len, min_len + step, ...``, stop at the first failure; the paper's) and
``geometric`` (double ``L`` until a stage fails, then bisect between the last pass and the first failure,
restoring the last passing embedding, Adam moments and LR position before each probe).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformer_lens import HookedTransformer

from .forward import LN2, Measured, Scores, logits_from_residual, residual_at_targets, score
from .hooks import EMPTY, HookSet, capture
from .judge import Verdict, check_model, judge, search_forward
from .layout import Batch, Layout, build_batch
from .optim import BatchedAdamW, Schedule
from .params import Memory
from .recipe import Recipe

# sample status codes
ACTIVE, DONE, FAILED_NAN = 0, 1, 2


@dataclass
class StageRecord:
    """One finished stage of one sample (a trajectory row)."""

    sample: int  # position of the sample in the batch
    stage_index: int
    stage_seq_len: int
    converged: bool
    accuracy: float
    loss: float
    steps_taken: int  # cumulative optimizer steps (LR position) after this stage
    steps_spent: int  # all optimizer steps spent on the sample so far (incl. failed probes)
    stage_steps: int  # steps spent in this stage
    h_comp_bits: float  # sum over t_1..t_{L-1} of -log2 p(t_i | e, t_<i)
    min_margin: float
    embedding: torch.Tensor  # [m, d] fp32 CPU
    coefficients: torch.Tensor | None
    reason: str = ""
    tf_exact_prefix: int = 0  # targets before the first wrong argmax (stage_seq_len when all are right)
    judge_calls: int = 0  # fp32 judge forwards of this sample in this stage (bf16 search; 0 otherwise)


@dataclass
class LoopState:
    """Mutable per-sample bookkeeping of one batch; all tensors are [B]."""

    length: torch.Tensor
    stage_index: torch.Tensor
    stage_steps: torch.Tensor
    spent: torch.Tensor
    status: torch.Tensor
    lo: torch.Tensor  # last passing length (0: none)
    hi: torch.Tensor  # first failing length (0: none yet)
    judged: torch.Tensor  # fp32 judge forwards in the current stage (bf16 search)
    iteration: int = 0
    snapshots: dict[str, torch.Tensor] = field(default_factory=dict)  # geometric warm-restore copies

    @classmethod
    def fresh(cls, B: int, min_len: Sequence[int]) -> LoopState:
        z = lambda: torch.zeros(B, dtype=torch.long)  # noqa: E731
        return cls(torch.tensor(list(min_len), dtype=torch.long), z(), z(), z(), z(), z(), z(), z())

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {
            "length": self.length,
            "stage_index": self.stage_index,
            "stage_steps": self.stage_steps,
            "spent": self.spent,
            "status": self.status,
            "lo": self.lo,
            "hi": self.hi,
            "judged": self.judged,
            "iteration": torch.tensor(self.iteration),
        }
        out.update({f"snap.{k}": v for k, v in self.snapshots.items()})
        return out

    def load(self, t: dict[str, torch.Tensor]) -> None:
        for k in ("length", "stage_index", "stage_steps", "spent", "status", "lo", "hi"):
            getattr(self, k).copy_(t[k])
        self.judged.copy_(t.get("judged", torch.zeros_like(self.judged)))  # absent in older checkpoints
        self.iteration = int(t["iteration"])
        self.snapshots = {k[5:]: v.clone() for k, v in t.items() if k.startswith("snap.")}


@dataclass
class CramLoop:
    """One batch of samples being crammed. Build it, then call :meth:`run`."""

    model: HookedTransformer
    sequences: list[list[int]]  # per sample: the tokens after the memory (layout.sequence)
    memory: Memory
    recipe: Recipe
    layout: Layout = Layout()
    min_len: int | Sequence[int] = 1
    step: int = 1
    max_len: Sequence[int] | None = None  # per sample; default len(sequence)
    schedule_kind: str = "linear"  # linear | geometric
    hooks: HookSet = EMPTY
    clean_hidden: list[dict[int, torch.Tensor]] | None = None  # hybrid loss: per sample, layer -> [N, d]

    def __post_init__(self):
        check_model(self.model, self.recipe)
        B = len(self.sequences)
        self.max_lens = torch.tensor(
            [len(s) for s in self.sequences] if self.max_len is None else list(self.max_len), dtype=torch.long
        )
        mins = [self.min_len] * B if isinstance(self.min_len, int) else list(self.min_len)
        self.state = LoopState.fresh(
            B, [min(int(a), int(b)) for a, b in zip(mins, self.max_lens, strict=True)]
        )
        sched = Schedule(
            self.recipe.lr,
            self.recipe.min_lr,
            self.recipe.warmup,
            self.recipe.steps_per_sample,
            self.recipe.schedule,
        )
        self.opt = BatchedAdamW(
            self.memory.trainable_per_sample(),
            sched,
            self.recipe.betas,
            self.recipe.weight_decay,
            self.recipe.eps,
        )
        shared = self.memory.trainable_shared()
        self.shared_opt = (
            BatchedAdamW(shared, sched, self.recipe.betas, self.recipe.weight_decay, self.recipe.eps)
            if shared
            else None
        )

    # ----------------------------------------------------------------- state for checkpoints / resume
    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"param.{k}": v.detach() for k, v in self.memory.per_sample.items()}
        out.update({f"shared.{k}": v.detach() for k, v in self.memory.shared.items()})
        out.update({f"opt.{k}": v for k, v in self.opt.state_tensors().items()})
        if self.shared_opt is not None:
            out.update({f"shared_opt.{k}": v for k, v in self.shared_opt.state_tensors().items()})
        out.update({f"loop.{k}": v for k, v in self.state.tensors().items()})
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    @torch.no_grad()
    def load_state_tensors(self, t: dict[str, torch.Tensor]) -> None:
        for k, v in self.memory.per_sample.items():
            v.copy_(t[f"param.{k}"])
        for k, v in self.memory.shared.items():
            v.copy_(t[f"shared.{k}"])
        self.opt.load_state_tensors({k[4:]: v for k, v in t.items() if k.startswith("opt.")})
        if self.shared_opt is not None:
            self.shared_opt.load_state_tensors(
                {k[11:]: v for k, v in t.items() if k.startswith("shared_opt.")}
            )
        self.state.load({k[5:]: v for k, v in t.items() if k.startswith("loop.")})

    # ----------------------------------------------------------------- the loop
    def done(self) -> bool:
        return bool((self.state.status != ACTIVE).all())

    def run(
        self,
        on_stage: Callable[[StageRecord], None] | None = None,
        on_iteration: Callable[[CramLoop, dict], None] | None = None,
        max_iterations: int | None = None,
    ) -> None:
        """Iterate until every sample is done (or ``max_iterations`` more iterations ran)."""
        n = 0
        while not self.done():
            if max_iterations is not None and n >= max_iterations:
                return
            info = self.iterate(on_stage)
            n += 1
            if on_iteration is not None:
                on_iteration(self, info)

    def _forward(self, rows: list[int], model: HookedTransformer) -> tuple[Batch, Scores, torch.Tensor]:
        """Scores and loss [R] (graph attached) of the given batch rows at their current lengths, on ``model``
        (``self.model`` or its bf16 search form)."""
        lengths = [int(self.state.length[j]) for j in rows]
        batch = build_batch(model, [self.sequences[j] for j in rows], lengths, self.layout)
        mem_all = self.memory.materialize()
        mem = mem_all[rows] if len(rows) != mem_all.shape[0] else mem_all
        store: dict[str, torch.Tensor] = {}
        hooks = self.hooks
        align = self.recipe.hybrid_alpha > 0 and self.clean_hidden is not None
        layers = list(range(max(0, min(self.recipe.align_layers - 1, model.cfg.n_layers))))
        if align:
            hooks = hooks + capture(
                [f"blocks.{layer}.hook_resid_post" for layer in layers], store, detach=False
            )
        resid = residual_at_targets(model, mem, batch, hooks)
        scores = score(
            logits_from_residual(model, resid),
            batch,
            self.recipe.leading_weight,
            self.recipe.leading_count,
        )
        loss = scores.loss
        if align:
            loss = loss + self.recipe.hybrid_alpha * self._alignment(rows, batch, store, layers)
        return batch, scores, loss

    def _alignment(self, rows, batch: Batch, store, layers) -> torch.Tensor:
        """Per-row sum over layers of mean_i (1 - cos(h_cram[m+i], h_clean[i])) over the text input positions."""
        p0 = batch.mem_positions[-1] + 1
        out = []
        for r, j in enumerate(rows):
            n_in = int(self.state.length[j]) - 1  # text tokens fed as input
            total = store[f"blocks.{layers[0]}.hook_resid_post"].new_zeros(())
            if n_in > 0:
                for layer in layers:
                    h = store[f"blocks.{layer}.hook_resid_post"][r, p0 : p0 + n_in]
                    c = self.clean_hidden[j][layer][:n_in].to(h.dtype)
                    total = total + (1 - torch.nn.functional.cosine_similarity(h, c, dim=-1)).mean()
            out.append(total)
        return torch.stack(out)

    def iterate(self, on_stage: Callable[[StageRecord], None] | None = None) -> dict:
        st, rc = self.state, self.recipe
        rows = [j for j in range(len(self.sequences)) if int(st.status[j]) == ACTIVE]
        fwd = search_forward(self, rows)
        loss, acc, losses = fwd.loss, fwd.accuracy, fwd.ce
        finite = torch.isfinite(loss.detach()).cpu()
        stepping = torch.zeros(len(self.sequences), dtype=torch.bool)
        emb = None
        # rows whose stage ends unless the judge says otherwise (NaN rows included): (row, sample, passed, budget out)
        ending: list[tuple[int, int, bool, bool]] = []
        for r, j in enumerate(rows):
            passed = bool(finite[r]) and bool(acc[r] >= rc.threshold)
            out_of_budget = (
                int(st.stage_steps[j]) >= rc.steps_per_stage or int(st.spent[j]) >= rc.steps_per_sample
            )
            if passed or out_of_budget or not bool(finite[r]):
                ending.append((r, j, passed, out_of_budget))
            else:
                stepping[j] = True
        verdict = self._judge([j for r, j, _, _ in ending if bool(finite[r])])
        for r, j, passed, out_of_budget in ending:
            emb = self.memory.materialize().detach() if emb is None else emb
            measured, row = fwd.where[r]
            if not bool(finite[r]):
                st.status[j] = FAILED_NAN
                self._emit(on_stage, j, row, measured, False, emb, "nan_loss")
                continue
            if verdict is not None:  # the fp32 judge decides, and its numbers are the ones recorded
                row = verdict.samples.index(j)
                measured, passed = verdict.measured, verdict.passed[row]
            if not (passed or out_of_budget):
                stepping[j] = True
                continue
            # a stage cut short by the per-sample budget is not a stage the method failed
            cut = not passed and int(st.stage_steps[j]) < rc.steps_per_stage
            self._emit(on_stage, j, row, measured, passed, emb, "sample_budget" if cut else "")
            self._advance(j, passed)
        if bool(stepping.any()):
            sel = torch.tensor([bool(stepping[j]) for j in rows])
            loss[sel].sum().backward()
            self.opt.step(stepping.to(self.opt.steps.device))
            if self.shared_opt is not None:
                self.shared_opt.step(torch.ones(1, dtype=torch.bool))
            self.opt.zero_grad()
            if self.shared_opt is not None:
                self.shared_opt.zero_grad()
            st.stage_steps += stepping.long()
            st.spent += stepping.long()
        st.iteration += 1
        return {
            "rows": rows,
            "accuracy": {j: float(acc[r]) for r, j in enumerate(rows)},
            "loss": {j: float(losses[r]) for r, j in enumerate(rows)},
            "judge": None if verdict is None else verdict.info({j for _, j, ok, _ in ending if ok}),
        }

    def _judge(self, samples: list[int]) -> Verdict | None:
        """The fp32 judge's verdict on ``samples`` (bf16 search only; ``None``: the search forward decides)."""
        if self.recipe.search_dtype == "model" or not samples:
            return None
        self.state.judged[samples] += 1
        return judge(self, samples)

    def _emit(self, on_stage, j: int, r: int, m: Measured, passed: bool, emb, reason: str) -> None:
        """Record the end of sample ``j``'s stage (batch row ``r`` of the forward ``m``)."""
        st = self.state
        bits, margin, prefix = m.stage_end(r)
        rec = StageRecord(
            sample=j,
            stage_index=int(st.stage_index[j]),
            stage_seq_len=int(st.length[j]),
            converged=passed,
            accuracy=float(m.accuracy[r]),
            loss=float(m.loss[r]),
            steps_taken=int(self.opt.steps[j]),
            steps_spent=int(st.spent[j]),
            stage_steps=int(st.stage_steps[j]),
            h_comp_bits=float(bits),
            min_margin=float(margin),
            embedding=emb[j].float().cpu().clone(),
            coefficients=(
                self.memory.coefficients()[j].detach().float().cpu().clone()
                if self.memory.coefficients() is not None
                else None
            ),
            reason=reason or ("" if passed else "stage_failed"),
            tf_exact_prefix=prefix,
            judge_calls=int(st.judged[j]),
        )
        if on_stage is not None:
            on_stage(rec)

    def _advance(self, j: int, passed: bool) -> None:
        """Move sample ``j`` to its next stage, or finish it."""
        st = self.state
        L, top = int(st.length[j]), int(self.max_lens[j])
        st.stage_index[j] += 1
        st.stage_steps[j] = 0
        st.judged[j] = 0
        if self.schedule_kind == "linear":
            if not passed or L >= top:
                st.status[j] = DONE
            else:
                st.length[j] = min(L + self.step, top)
            if passed:
                st.lo[j] = L
            return
        # geometric growth, then bisection with warm restore of the last passing state
        if passed:
            st.lo[j] = L
            self._snapshot(j)
        else:
            st.hi[j] = L
            self._restore(j)
        lo, hi = int(st.lo[j]), int(st.hi[j])
        if hi == 0:  # still growing
            if L >= top:
                st.status[j] = DONE
            else:
                st.length[j] = min(max(2 * L, L + 1), top)
            return
        if hi - lo <= max(1, self.step) or int(st.spent[j]) >= self.recipe.steps_per_sample:
            st.status[j] = DONE
            return
        st.length[j] = (lo + hi) // 2

    @torch.no_grad()
    def _snapshot(self, j: int) -> None:
        B = len(self.sequences)
        for k, v in self.state_tensors().items():
            if k.startswith(("param.", "opt.")) and v.dim() >= 1 and v.shape[0] == B:
                snap = self.state.snapshots.setdefault(k, v.clone())
                snap[j] = v[j]
        self.state.snapshots.setdefault("valid", torch.zeros(B, dtype=torch.bool))[j] = True

    @torch.no_grad()
    def _restore(self, j: int) -> None:
        snaps = self.state.snapshots
        if not snaps or not bool(snaps["valid"][j]):
            return  # nothing passed yet: keep the current state
        for k, v in self.memory.per_sample.items():
            v[j] = snaps[f"param.{k}"][j].to(v.device)
        opt_state = self.opt.state_tensors()
        for k, v in opt_state.items():
            v[j] = snaps[f"opt.{k}"][j].to(v.device)


def hybrid_clean_hidden(
    model: HookedTransformer, sequence: Sequence[int], n_layers: int
) -> dict[int, torch.Tensor]:
    """Residual streams ``blocks.{l}.hook_resid_post`` (l < n_layers) of the text without memory: layer -> [N, d]."""
    store: dict[str, torch.Tensor] = {}
    names = [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]
    ids = torch.tensor([list(sequence)], dtype=torch.long, device=model.cfg.device)
    with torch.no_grad(), capture(names, store).applied(model):
        model(ids, stop_at_layer=max(1, n_layers), padding_side="right")
    return {layer: store[f"blocks.{layer}.hook_resid_post"][0] for layer in range(n_layers)}


def bits(nats: float) -> float:
    return nats / LN2 if math.isfinite(nats) else nats
