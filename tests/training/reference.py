"""NumPy transcription of every algorithm's equations, in the papers' own forms, not the code's.

Problem: least squares per worker, loss_i(x) = 0.5 * mean((A_i x - b_i)^2), full batch, so every
step is deterministic and the optimizer's trajectory can be reproduced exactly.

Momentum is written in its classical (x, v) form throughout, as Zhang, Choromanska & LeCun write
EAMSGD (NeurIPS 2015, section 3.2 and Algorithm 2) and the DOWNPOUR family (their supplement):

    v <- delta v - eta g(x + delta v);   x <- x + v                    (Nesterov)
    v <- delta v - eta g(x);             x <- x + v                    (heavy ball)

Keras keeps other variables (Nesterov's look-ahead point x + delta v); mapping one to the other
is the test's business, so that a wrong mapping in the code cannot hide in the reference.
"""

from __future__ import annotations

import numpy as np

DIM = 5
ROWS = 16


def problem(rank: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1000 * rank)
    a = rng.normal(size=(ROWS, DIM))
    b = rng.normal(size=(ROWS, 1))
    return a, b


def initial_weights(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(DIM, 1))


def grad(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.T @ (a @ x - b) / a.shape[0]


class Worker:
    """One worker's state: its weights x, and its inner optimizer's state in classical form."""

    def __init__(
        self, x: np.ndarray, kind: str, lr: float, momentum: float, weight_decay: float = 0.0
    ):
        self.weight_decay = weight_decay
        self.x = x.copy()
        self.v = np.zeros_like(x)
        self.kind, self.lr, self.delta = kind, lr, momentum
        self.adam_m, self.adam_v, self.t = np.zeros_like(x), np.zeros_like(x), 0

    def gradient_point(self) -> np.ndarray:
        """Where this step's gradient is taken: Nesterov's look-ahead x + delta v, else x."""
        return self.x + self.delta * self.v if self.kind == "nesterov" else self.x

    def local_update(self, g: np.ndarray) -> np.ndarray:
        """The inner step's change of x (the caller adds it, together with any elastic pull)."""
        if self.kind == "sgd":
            return -self.lr * g
        if self.kind in ("momentum", "nesterov"):
            self.v = self.delta * self.v - self.lr * g
            return self.v
        if self.kind in ("adam", "adamw"):  # Kingma & Ba, Algorithm 1, Keras' epsilon placement
            # AdamW (Loshchilov & Hutter): the decay decoupled from the gradient, scaled by the
            # learning rate as PyTorch and Keras scale it, from the x before the step.
            decay = -self.lr * self.weight_decay * self.x if self.kind == "adamw" else 0.0
            b1, b2, eps = 0.9, 0.999, 1e-7
            self.t += 1
            self.adam_m = b1 * self.adam_m + (1 - b1) * g
            self.adam_v = b2 * self.adam_v + (1 - b2) * g * g
            lr = self.lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
            return decay - lr * self.adam_m / (np.sqrt(self.adam_v) + eps)
        raise ValueError(self.kind)


# Compressed messages, as the issue that asked for them puts it: per block of values one scale
# s = max |v| / q (q = 127 for int8, 7 for int4, a float32 on the wire), codes round(v / s) to
# the nearest (ties to even), the receiver applying codes x s; float16 is a cast. Every sender
# adds what rounding lost the last time (its residual e) and keeps what it loses now.
QUANTIZER_LEVELS = {"int8": 127, "int4": 7}
BLOCK = 256


def quantize(v: np.ndarray, compression: str) -> np.ndarray:
    flat = v.astype(np.float32).ravel()
    if compression == "float16":
        return flat.astype(np.float16).astype(np.float64).reshape(v.shape)
    q = np.float32(QUANTIZER_LEVELS[compression])
    out = np.empty_like(flat)
    for start in range(0, flat.size, BLOCK):
        block = flat[start : start + BLOCK]
        s = np.float32(np.max(np.abs(block)) / q)
        codes = np.clip(np.round(block / s), -q, q) if s > 0 else np.zeros_like(block)
        out[start : start + BLOCK] = codes * s
    return out.astype(np.float64).reshape(v.shape)


def quantize_parts(v: np.ndarray, compression: str, parts: int = 1) -> np.ndarray:
    """`quantize` of each of `parts` contiguous parts of the flattened v, as numpy.array_split
    cuts it (a center split over several servers: each part its own message)."""
    pieces = np.array_split(v.ravel(), parts)
    return np.concatenate([quantize(p, compression) for p in pieces]).reshape(v.shape)


class Sender:
    """One worker's side of compressed messages: Q(v + e), and e <- (v + e) - Q(v + e)."""

    def __init__(self, compression: str, like: np.ndarray, parts: int = 1):
        self.compression, self.e, self.parts = compression, np.zeros_like(like), parts

    def __call__(self, v: np.ndarray) -> np.ndarray:
        if self.compression == "none":
            return v
        message = v + self.e
        sent = quantize_parts(message, self.compression, self.parts)
        self.e = message - sent
        return sent


def run(
    algorithm: str,
    workers: int,
    steps: int,
    lr: float,
    tau: int = 1,
    beta: float = 0.9,
    inner: str = "sgd",
    momentum: float = 0.0,
    center_momentum: float = 0.99,
    average_rate: float = 0.001,
    order: str = "simultaneous",
    compression: str = "none",
    outer_learning_rate: float = 0.7,
    outer_momentum: float = 0.9,
    adamw_weight_decay: float = 0.1,
    overlap: int = 0,
) -> dict[str, np.ndarray]:
    """Synchronous forms: a round involves every worker at once, on the same step.

    `overlap` d > 0 (elastic, localsgd, diloco): the round posted on step t lands before the
    gradient of step t + d + 1 (or after the last step). Elastic: each worker applies its own
    pull at once and the center adds the pulls' sum when it lands. Local SGD and DiLoCo: each
    worker sends at t and, when the result lands, keeps what it did since:
    x_i <- x_i + (result - x_i as it was when it sent), whatever its message's codes carried.

    Returns each worker's x and v (classical), the center, and the evaluated model.
    """
    data = [problem(r) for r in range(workers)]
    x0 = initial_weights()
    ws = [Worker(x0, inner, lr, momentum, adamw_weight_decay) for _ in range(workers)]
    send = [Sender(compression, x0) for _ in range(workers)]
    center = x0.copy()  # the master's x~ (for mdownpour: the center itself, not a look-ahead)
    center_v = np.zeros_like(x0)
    average = x0.copy()
    updates = 0  # center updates so far (k)
    alpha = beta / workers
    pending = None  # an overlapped round: (the step before which it lands, what, the messages)

    def land(what: str, sent: list, exact: list) -> None:
        """`sent`: the messages as every rank decodes them; `exact`: each worker's own value
        before any rounding, which tells where it was when it sent."""
        nonlocal center, center_v
        if what == "elastic":
            center = center + sum(sent)
            return
        before = center
        if what == "localsgd":
            center = center + sum(sent) / workers
        else:  # diloco: sent_i = theta - x_i
            delta = sum(sent) / workers
            center_v = outer_momentum * center_v + delta
            center = center - outer_learning_rate * (delta + outer_momentum * center_v)
        for w, own in zip(ws, exact):
            as_sent = before + own if what == "localsgd" else before - own
            w.x = w.x + (center - as_sent)

    for t in range(steps):
        if pending is not None and t == pending[0]:
            land(*pending[1:])
            pending = None
        grads = [grad(w.gradient_point(), *d) for w, d in zip(ws, data)]
        if algorithm == "sync":
            mean = sum(send[i](g) for i, g in enumerate(grads)) / workers
            grads = [mean] * workers
        # EASGD / EAMSGD, on t mod tau == 0, with x_t (before this step's own update):
        #   x_{t+1} = x_t + local(x_t) - alpha (x_t - c_t);  c_{t+1} = c_t + sum_i alpha (x_i - c_t)
        pulls = [np.zeros_like(x0)] * workers
        if algorithm == "elastic" and t % tau == 0:
            if order == "round_robin":
                # Gauss-Seidel: the center takes the workers' pulls one after another, rank order;
                # compressed, each worker's x reaches it as c + Q(x - c + e).
                seen = [center + send[i](w.x - center) for i, w in enumerate(ws)]
                pulls = []
                for x in seen:
                    e = alpha * (x - center)
                    center = center + e
                    pulls.append(e)
            else:
                pulls = [send[i](alpha * (w.x - center)) for i, w in enumerate(ws)]
                if overlap:
                    pending = (t + overlap + 1, "elastic", pulls, pulls)
                else:
                    center = center + sum(pulls)
        for w, g, e in zip(ws, grads, pulls):
            w.x = w.x + w.local_update(g) - e
        if algorithm == "diloco" and (t + 1) % tau == 0:
            # Douillard et al. 2023, Algorithm 1: the outer gradient is the mean of
            # theta^(t-1) - theta_i^(t); OuterOpt is Nesterov momentum as PyTorch's SGD has it,
            # b <- mu b + g;  theta <- theta - eta (g + mu b).
            sent = [send[i](center - w.x) for i, w in enumerate(ws)]
            if overlap:
                pending = (t + overlap + 1, "diloco", sent, [center - w.x for w in ws])
                continue
            delta = sum(sent) / workers
            center_v = outer_momentum * center_v + delta
            center = center - outer_learning_rate * (delta + outer_momentum * center_v)
            for w in ws:
                w.x = center.copy()
        if algorithm in DOWNPOUR_FAMILY and (t + 1) % tau == 0:
            if algorithm == "localsgd":
                if overlap:
                    sent = [send[i](w.x - center) for i, w in enumerate(ws)]
                    pending = (t + overlap + 1, "localsgd", sent, [w.x - center for w in ws])
                    continue
                if compression == "none":
                    center = sum(w.x for w in ws) / workers
                else:
                    center = center + sum(send[i](w.x - center) for i, w in enumerate(ws)) / workers
                for w in ws:
                    w.x = center.copy()
                continue
            # Workers started this period from the point the master handed them.
            handed = center + center_momentum * center_v if algorithm == "mdownpour" else center
            accumulated = sum(send[i](w.x - handed) for i, w in enumerate(ws))
            if algorithm == "mdownpour":
                # The master's Nesterov step, with the accumulated update in the place of -eta g,
                # the gradient having been taken at the look-ahead point it handed out.
                center_v = center_momentum * center_v + accumulated
                center = center + center_v
                restart = center + center_momentum * center_v
            else:
                center = center + accumulated
                restart = center
            updates += 1
            if algorithm == "mvadownpour":
                average = (1 - average_rate) * average + average_rate * center
            if algorithm == "adownpour":
                # The time average of the centers x~_0 .. x~_k.
                average = (1 - 1 / (updates + 1)) * average + 1 / (updates + 1) * center
            for w in ws:
                w.x = restart.copy()
    if pending is not None:
        land(*pending[1:])
    if algorithm == "sync":
        center = ws[0].x
    evaluated = average if algorithm in ("mvadownpour", "adownpour") else center
    return {
        "workers": np.stack([w.x for w in ws]),
        "velocities": np.stack([w.v for w in ws]),
        "center": center,
        "center_velocity": center_v,
        "evaluated": evaluated,
    }


DOWNPOUR_FAMILY = ("downpour", "mdownpour", "mvadownpour", "adownpour", "localsgd")
# The exchanges `run` transcribes (Tree EASGD and consensus SGD have references of their own).
TRANSCRIBED = ("sync", "elastic", *DOWNPOUR_FAMILY, "diloco")
