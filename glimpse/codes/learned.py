"""``learned``: a multi-bit residual binarizer after Tencent's BEBR (Gan et al., KDD 2023).

``bits = stages * width``. Stage ``s`` looks at what the earlier stages failed to reconstruct
and binarizes it::

    r_0 = x - mean
    h_s = A_s r_s + c_s;  h_s += W2_s relu(W1_s h_s + d_s) + e_s      (a small residual MLP)
    b_s = sign(h_s)                      in {-1, +1}^width, bits [s*width, (s+1)*width)
    x^_s = x^_{s-1} + D_s b_s;  r_{s+1} = (x - mean) - x^_s          (linear decoder)

so ``bits_per_dim`` (= stages) trades code width against refinement. The code is the
concatenation of the stages, scanned by plain Hamming distance.

Training is embedding-to-embedding, without labels. Each stage starts as ITQ of its residual
(with a least-squares decoder), so training begins at a strong point, then everything is
fine-tuned with a straight-through estimator (sign forward, tanh' backward) on:

* a listwise similarity-distillation loss: per anchor row, the softmax over a batch of keys
  of the *Hamming* similarity of the codes must match the softmax of the float similarities
  at a sharp temperature (it weights the near neighbours that recall@k is made of);
* the same for the decoded codes scored against the float anchor (asymmetric scoring);
* the decoder's reconstruction error.

Asymmetric scoring: ``x ~ mean + sum_s D_s b_s``, so ``q.x ~ const + concat_s(D_s^T q) . b``:
``query_vector(q) = q @ [D_0 ... D_{S-1}]``.

Fitting needs torch; encoding and scoring are numpy only. Training is seeded and run with
``torch.use_deterministic_algorithms(True)``: the same seed, data, torch version and thread
count give bitwise-identical parameters on CPU.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from .base import Binarizer
from .itq import ITQBinarizer


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


class LearnedBinarizer(Binarizer):
    name = "learned"
    version = 1

    def __init__(
        self,
        bits: int = 256,
        seed: int = 0,
        bits_per_dim: int = 1,
        hidden: int | None = None,
        steps: int = 200,
        batch: int = 1024,
        lr: float = 3e-4,
        temperature: float = 0.02,
        asym_weight: float = 0.5,
        recon_weight: float = 1.0,
        sample: int = 100_000,
        neighbours: int = 15,
        anchor_pool: int = 8192,
    ) -> None:
        super().__init__(bits, seed)
        if bits_per_dim < 1 or bits % bits_per_dim or (bits // bits_per_dim) % 8:
            raise ValueError(
                f"learned: bits ({bits}) must split into bits_per_dim ({bits_per_dim}) stages "
                "of a multiple of 8 bits each"
            )
        if steps < 0 or batch < 2 or lr <= 0 or temperature <= 0 or sample < 2:
            raise ValueError("learned: steps >= 0, batch >= 2, lr > 0, temperature > 0, sample >= 2")
        self.bits_per_dim = int(bits_per_dim)
        self.width = bits // self.bits_per_dim
        self.hidden = int(hidden) if hidden is not None else self.width
        self.steps = int(steps)
        self.batch = int(batch)
        self.lr = float(lr)
        self.temperature = float(temperature)
        self.asym_weight = float(asym_weight)
        self.recon_weight = float(recon_weight)
        self.sample = int(sample)
        self.neighbours = int(neighbours)
        self.anchor_pool = int(anchor_pool)
        self.mean: np.ndarray | None = None
        #: Per stage: A (dim, w), c (w,), W1 (w, hid), d (hid,), W2 (hid, w), e (w,), D (w, dim)
        self.stages: list[dict[str, np.ndarray]] = []
        #: Seconds the last ``fit`` spent (ITQ initialisation, fine-tuning).
        self.fit_seconds: tuple[float, float] = (0.0, 0.0)

    def options(self) -> dict[str, Any]:
        return {
            "bits_per_dim": self.bits_per_dim,
            "hidden": self.hidden,
            "steps": self.steps,
            "batch": self.batch,
            "lr": self.lr,
            "temperature": self.temperature,
            "asym_weight": self.asym_weight,
            "recon_weight": self.recon_weight,
            "sample": self.sample,
            "neighbours": self.neighbours,
            "anchor_pool": self.anchor_pool,
        }

    def min_fit_vectors(self, dim: int) -> int:
        return max(16, self.width)

    # -- fit --------------------------------------------------------------------------------

    def check_dim(self, dim: int) -> None:
        if self.width > dim:
            raise ValueError(
                f"learned: {self.width} bits per stage need at least that many input "
                f"dimensions, got {dim} (raise bits_per_dim, or use fewer bits)"
            )

    def _fit(self, x: np.ndarray) -> None:
        n, dim = x.shape
        rng = np.random.default_rng([self.seed, 0x1EA2])
        if n > self.sample:
            x = x[np.sort(rng.choice(n, self.sample, replace=False))]
        t0 = time.perf_counter()
        self.mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.stages = self._init_residual_itq(x - self.mean)
        t1 = time.perf_counter()
        if self.steps:
            self._finetune(x, rng)
        self.fit_seconds = (t1 - t0, time.perf_counter() - t1)

    def _init_residual_itq(self, xc: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Each stage: ITQ of the current residual, then a least-squares decoder."""
        stages = []
        resid = xc
        w, hid = self.width, self.hidden
        for s in range(self.bits_per_dim):
            itq = ITQBinarizer(bits=w, seed=self.seed * 131 + s, iterations=30,
                               sample=min(self.sample, 20_000))
            itq.fit(resid)
            a = itq.projection
            c = -(itq.mean @ a)
            h = resid @ a + c
            b = np.where(h > 0, 1.0, -1.0).astype(np.float32)
            # Least squares D: b @ D ~ resid (ridge for stability).
            gram = b.T.astype(np.float64) @ b + 1e-3 * len(b) * np.eye(w)
            dec = np.linalg.solve(gram, b.T.astype(np.float64) @ resid).astype(np.float32)
            stages.append({
                "A": a.astype(np.float32), "c": c.astype(np.float32),
                "W1": np.zeros((w, hid), np.float32), "d": np.zeros(hid, np.float32),
                "W2": np.zeros((hid, w), np.float32), "e": np.zeros(w, np.float32),
                "D": dec,
            })
            resid = resid - b @ dec
        # W1 gets a small seeded random init (W2 = 0 keeps the start exactly at residual ITQ).
        rng = np.random.default_rng([self.seed, 0xB1])
        for st in stages:
            st["W1"] = (rng.standard_normal((w, hid)) / math.sqrt(w)).astype(np.float32)
        return stages

    def _finetune(self, x: np.ndarray, rng: np.random.Generator) -> None:
        import torch

        prev_det = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                self._train(torch, x, rng)
        finally:
            torch.use_deterministic_algorithms(prev_det)

    def _train(self, torch: Any, x: np.ndarray, rng: np.random.Generator) -> None:
        n = len(x)
        xt = torch.from_numpy(np.ascontiguousarray(x))
        mean = torch.from_numpy(self.mean)
        params = [
            {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in st.items()}
            for st in self.stages
        ]
        flat = [p for st in params for p in st.values()]
        log_scale_sym = torch.nn.Parameter(torch.tensor(math.log(1.0 / self.temperature)))
        log_scale_asym = torch.nn.Parameter(torch.tensor(0.0))
        opt = torch.optim.Adam(flat + [log_scale_sym, log_scale_asym], lr=self.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, self.steps) / self.steps))
        )
        batch = min(self.batch, n)
        knn = self._neighbours(torch, xt, rng) if self.neighbours else None
        for step in range(1, self.steps + 1):
            if knn is None:
                idx = torch.from_numpy(rng.choice(n, batch, replace=False))
            else:
                rows = rng.choice(len(knn), max(1, batch // knn.shape[1]), replace=False)
                idx = torch.unique(knn[torch.from_numpy(rows)].reshape(-1))
            xb = xt[idx]
            codes, recon = self._forward_torch(torch, params, xb - mean)
            loss = self._loss(torch, xb, xb - mean, codes, recon,
                              log_scale_sym.exp(), log_scale_asym.exp())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if self._fit_progress is not None:
                self._fit_progress(step, self.steps)
        self.stages = [
            {k: p.detach().numpy().astype(np.float32).copy() for k, p in st.items()}
            for st in params
        ]

    def _neighbours(self, torch: Any, xt: Any, rng: np.random.Generator) -> Any:
        """(anchors, 1 + neighbours) indices: random anchors and their exact float neighbours.

        Batches built from them put every anchor's near neighbours in the batch, so the
        listwise loss trains the ordering of the top of each list (what recall@k counts).
        """
        n = len(xt)
        anchors = np.sort(rng.choice(n, min(n, self.anchor_pool), replace=False))
        out = []
        for start in range(0, len(anchors), 1024):
            a = torch.from_numpy(anchors[start : start + 1024])
            sims = xt[a] @ xt.T
            sims[torch.arange(len(a)), a] = float("inf")  # the anchor itself first
            out.append(torch.topk(sims, self.neighbours + 1, dim=1).indices)
        return torch.cat(out)

    @staticmethod
    def _forward_torch(torch: Any, params: list[dict[str, Any]], xc: Any) -> tuple[Any, Any]:
        codes = []
        recon = torch.zeros_like(xc)
        for st in params:
            h = (xc - recon) @ st["A"] + st["c"]
            h = h + torch.relu(h @ st["W1"] + st["d"]) @ st["W2"] + st["e"]
            soft = torch.tanh(h)
            b = soft + (torch.where(h > 0, 1.0, -1.0) - soft).detach()  # straight-through
            codes.append(b)
            recon = recon + b @ st["D"]
        return torch.cat(codes, dim=1), recon

    def _loss(self, torch: Any, xb: Any, xc: Any, codes: Any, recon: Any,
              scale_sym: Any, scale_asym: Any) -> Any:
        eye = torch.eye(len(xb), dtype=torch.bool)
        neg = torch.finfo(xb.dtype).min
        target = torch.softmax((xb @ xb.T / self.temperature).masked_fill(eye, neg), dim=1)
        ham = (codes @ codes.T) / self.bits * scale_sym
        loss = -(target * torch.log_softmax(ham.masked_fill(eye, neg), dim=1)).sum(1).mean()
        if self.asym_weight:
            asym = (xb @ recon.T) / self.temperature * scale_asym
            loss = loss + self.asym_weight * -(
                target * torch.log_softmax(asym.masked_fill(eye, neg), dim=1)
            ).sum(1).mean()
        if self.recon_weight:
            err = ((recon - xc) ** 2).sum(1).mean() / (xc**2).sum(1).mean()
            loss = loss + self.recon_weight * err
        return loss

    # -- inference (numpy) ------------------------------------------------------------------

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xc = x - self.mean
        recon = np.zeros_like(xc)
        hs = []
        for st in self.stages:
            h = (xc - recon) @ st["A"] + st["c"]
            h = h + _relu(h @ st["W1"] + st["d"]) @ st["W2"] + st["e"]
            b = np.where(h > 0, 1.0, -1.0).astype(np.float32)
            hs.append(h)
            recon = recon + b @ st["D"]
        return np.concatenate(hs, axis=1), recon

    def _project(self, x: np.ndarray) -> np.ndarray:
        return self._run(x)[0]

    def _decoder(self) -> np.ndarray:
        return np.concatenate([st["D"] for st in self.stages], axis=0)  # (bits, dim)

    def _query_vector(self, x: np.ndarray) -> np.ndarray:
        return x @ self._decoder().T

    # -- files ------------------------------------------------------------------------------

    def _params(self) -> dict[str, np.ndarray]:
        out = {"mean": self.mean}
        for s, st in enumerate(self.stages):
            for k, v in st.items():
                out[f"s{s}_{k}"] = v
        return out

    def _set_params(self, params: dict[str, np.ndarray], dim: int) -> None:
        w, hid = self.width, self.hidden
        shapes = {"A": (dim, w), "c": (w,), "W1": (w, hid), "d": (hid,), "W2": (hid, w),
                  "e": (w,), "D": (w, dim)}
        if params.get("mean", np.empty(0)).shape != (dim,):
            raise ValueError("learned binarizer file: mean does not match dim")
        self.mean = params["mean"].astype(np.float32)
        self.stages = []
        for s in range(self.bits_per_dim):
            st = {}
            for k, shape in shapes.items():
                v = params.get(f"s{s}_{k}")
                if v is None or v.shape != shape:
                    raise ValueError(f"learned binarizer file: stage {s} parameter {k} is "
                                     "missing or has the wrong shape")
                st[k] = v.astype(np.float32)
            self.stages.append(st)

