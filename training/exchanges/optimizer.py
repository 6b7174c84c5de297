"""A Keras 3 optimizer that wraps any inner optimizer and adds a periodic exchange over Horovod.

The exchange is what tells the algorithms apart; the inner optimizer is each worker's own step.
When each exchange runs, whether it keeps a center and what is evaluated are declared in
`training.schema.algorithms.EXCHANGES`; its equations are here, one round method each:

- ``elastic`` (EASGD with SGD inside, EAMSGD with Nesterov momentum inside), every tau steps,
  on the step whose 0-based index t has t mod tau == 0, before the inner step, with the
  current center c and the worker's x_t (this step's gradient was taken before the round)::

      d = alpha (x - c);  x <- x - d;  c <- c + allreduce_sum(d)

  then the inner step adds its own update, which gives the paper's
  x_{t+1} = x_t - eta g(x_t) - alpha (x_t - c_t) exactly for inner optimizers whose update does
  not depend on x's value (SGD, momentum, Adam; not weight decay, nor LARS, whose trust ratio
  reads ||x||: it sees the pulled x). Keras' Nesterov SGD keeps the
  look-ahead point y = x + delta m in the variable (m its momentum slot, the paper's v), so for
  it x = y - delta m: d = alpha (y - delta m - c) is applied to y, which moves x by d and leaves
  v alone; with the gradient Keras took at y, that is Algorithm 2's
  v <- delta v - eta g(x + delta v);  x <- x + v - alpha (x - c).
  With ``order="round_robin"`` the center takes the workers' pulls one at a time in rank order,
  c <- c + alpha (x_j - c) for j = 0..p-1 (the schedule of the paper's stability analysis): one
  allgather of the x_j, then the same replay on every rank.
- ``sync``: gradients averaged with one all-reduce every step (Horovod's DistributedOptimizer).
- ``downpour``: after every tau inner steps, the center receives the sum of the workers'
  accumulated updates, c <- c + sum_i (x_i - c), and every worker restarts from c.
- ``mdownpour``: as downpour, with Nesterov momentum (delta) on the center's update, in the
  look-ahead form Keras uses: v <- delta v + D;  c <- c + delta v + D, with D = sum_i (x_i - c).
  The variable c is the look-ahead point the master hands out (the paper's x~ + delta v).
- ``mvadownpour``: downpour, and the master's moving average z <- (1 - a) z + a c each time the
  center changes; z is the evaluated model.
- ``adownpour``: downpour, and the master's time average z <- z + (c - z) / (k + 1) after the
  k-th center update (z is the mean of the centers c_0 .. c_k); z is the evaluated model.
- ``localsgd``: after every tau inner steps, every worker is set to the mean of the workers.
- ``consensus`` (CDSGD, Jiang et al., NIPS 2017): every step, before the inner step, worker j
  mixes with its row of the topology's doubly stochastic matrix pi, so that with SGD inside
  x_j <- sum_l pi_jl x_l - eta g_j(x_j), the gradient taken at the x_j before mixing. One
  collective: an all-gather of the weights, or, when no rank mixes with all others, an
  all-to-all that sends them to the ranks that mix them only. No center: the evaluated
  model is the workers' mean, computed by `prepare_evaluation` (a monitoring all-reduce).
- ``mconsensus`` (CDMSGD): the same round; the inner step then gives v_{k+1} = sum_l pi_jl x_l
  - eta g_j(x_j), and after it x <- v_{k+1} + mu (v_{k+1} - v_k), with v_0 = x_0.
- ``tree`` (Tree EASGD, Zhang's thesis): groups of ranks (`training.exchanges.groups`), each with a group
  center c_g; on steps with t mod tau == 0 the elastic exchange within each group
  (d_i = alpha (x_i - c_g), alpha = beta / group size; x_i <- x_i - d_i; c_g <- c_g + sum_g d_i),
  on steps with t mod tau_root == 0 the group centers' with the root center c
  (e_g = alpha_root (c_g - c), alpha_root = beta_root / groups; c_g <- c_g - e_g;
  c <- c + sum_g e_g). On a step where both run, every force is computed from the values before
  the step, as the paper's synchronous rule computes all of them from time t. The root center is
  evaluated; each group's members keep replicas of c_g, every rank one of c (the leaders'
  all-reduce hands each leader the same sum; each leader broadcasts it to its group).

The center is the root rank's. Every rank keeps a replica because the all-reduce hands every rank
the same sum, so the center needs no broadcast; the test suite checks the replicas bit for bit.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras.src.utils import tracking

from training.exchanges import collectives
from training.exchanges.lars import LARS
from training.exchanges.lr_schedule import scaled_learning_rate
from training.schema.algorithms import ASYNCHRONOUS_FORMS, EXCHANGES, ORDERS, WITH_MOMENTUM
from training.schema.topology import TopologyError, mixing_matrix
from training.schema.topology import parse as parse_topology


def _in_xla_context() -> bool:
    from tensorflow.python.ops import control_flow_util

    graph = tf.compat.v1.get_default_graph()
    return control_flow_util.GraphOrParentsInXlaContext(graph)


@keras.saving.register_keras_serializable(package="easgd")
class ElasticAveragingOptimizer(keras.optimizers.Optimizer):
    """Wraps `inner_optimizer`; every `tau` steps exchanges with the center over Horovod.

    Args:
        inner_optimizer: any Keras optimizer; it makes every local step.
        tau: communication period, in local steps.
        beta: moving rate, beta = workers x alpha (default 0.9). Give beta or alpha.
        alpha: elastic rate (default beta / workers).
        exchange: a name in `training.schema.algorithms.EXCHANGES` (the baselines run in this same
            harness).
        center_momentum: delta of the center's Nesterov momentum (`mdownpour`).
        average_rate: rate a of the center's moving average (`mvadownpour`).
        group_size: ranks per group (`tree`; default: the ranks of one host).
        tau_root: steps between the group centers' exchanges with the root center (`tree`).
        beta_root: root moving rate, beta_root = groups x alpha_root (`tree`, default 0.9).
        order: "simultaneous" (every worker's pull with the same center: the paper's
            synchronous EASGD) or "round_robin" (the center takes them in rank order).
        topology: "ring", "full" or a workers x workers doubly stochastic mixing matrix
            (`consensus`, `mconsensus`).
        consensus_momentum: mu of CDMSGD's momentum (`mconsensus`).
        asynchronous: exchange with a center server held by rank 0, on each worker's own clock
            (`training.center.asynchronous`; elastic and the DOWNPOUR family but mdownpour). The
            training loop calls `start_asynchronous`, `before_step`, `after_step` and
            `finish_asynchronous`; with `order="round_robin"` the workers take turns.
        backup_workers: `sync` only: b of the workers are backups, the mean of the first
            workers - b gradients of each step is applied (Chen et al. 2016) by the same center
            server; the training loop calls `backup_step` in the place of `apply`.
        exchange_precision: "float32", or "float16" to halve the bytes of the center server's
            model-sized messages (the server adds in float32; what is sent is rounded on both
            sides alike).
        root_rank: the rank whose weights everyone starts from.
        broadcast_on_build: broadcast the root's weights when the optimizer is built, so that
            every worker and the center start equal (what Horovod's broadcast callback does).
            An optimizer restored by `keras.models.load_model` never broadcasts: one rank may
            load a saved model alone, and every rank that loads the same file starts equal.
    """

    def __init__(
        self,
        inner_optimizer: keras.optimizers.Optimizer,
        tau: int = 10,
        beta: float | None = None,
        alpha: float | None = None,
        exchange: str = "elastic",
        center_momentum: float = 0.99,
        average_rate: float = 0.001,
        group_size: int | None = None,
        tau_root: int = 10,
        beta_root: float | None = None,
        order: str = "simultaneous",
        topology: str | list = "ring",
        consensus_momentum: float = 0.95,
        asynchronous: bool = False,
        backup_workers: int = 0,
        exchange_precision: str = "float32",
        root_rank: int = 0,
        broadcast_on_build: bool = True,
        name: str | None = None,
        **kwargs,
    ):
        if kwargs:
            raise ValueError(
                "ElasticAveragingOptimizer does not take these arguments; set them on the inner "
                f"optimizer instead. Received: {sorted(kwargs)}"
            )
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                "inner_optimizer must be a keras.optimizers.Optimizer instance, such as "
                f"keras.optimizers.SGD(0.01). Received: inner_optimizer={inner_optimizer!r}"
            )
        if exchange not in EXCHANGES:
            raise ValueError(
                f"exchange must be one of {tuple(EXCHANGES)}. Received: exchange={exchange!r}"
            )
        if not isinstance(tau, int) or tau < 1:
            raise ValueError(f"tau must be an integer >= 1. Received: tau={tau!r}")
        if alpha is not None and beta is not None:
            raise ValueError(f"Give beta or alpha, not both. Received: beta={beta}, alpha={alpha}")
        # A negative rate is the thesis' link between EASGD and momentum SGD: allowed.
        if beta is not None and not (-1 <= beta <= 1 and beta != 0):
            raise ValueError(f"beta must be in [-1, 1] and not 0. Received: beta={beta}")
        if alpha is not None and alpha == 0:
            raise ValueError(f"alpha must not be 0. Received: alpha={alpha}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}. Received: order={order!r}")
        if not 0 <= center_momentum < 1:
            raise ValueError(f"center_momentum must be in [0, 1). Received: {center_momentum}")
        if not 0 < average_rate <= 1:
            raise ValueError(f"average_rate must be in (0, 1]. Received: {average_rate}")
        if not 0 <= consensus_momentum < 1:
            raise ValueError(
                f"consensus_momentum must be in [0, 1). Received: {consensus_momentum}"
            )
        try:
            topology = parse_topology(topology)
        except TopologyError as exc:
            raise ValueError(f"topology: {exc}. Received: topology={topology!r:.200}") from None
        if exchange == "tree":
            _check_tree(alpha, group_size, tau_root, beta_root)
        if asynchronous and exchange not in ASYNCHRONOUS_FORMS:
            raise ValueError(
                f"exchange {exchange!r} has no asynchronous form; these have: "
                f"{', '.join(ASYNCHRONOUS_FORMS)}. Received: asynchronous=True"
            )
        if backup_workers and exchange != "sync":
            raise ValueError(
                f"backup_workers belong to synchronous SGD (exchange 'sync'). Received: "
                f"exchange={exchange!r}, backup_workers={backup_workers}"
            )
        if exchange_precision not in ("float32", "float16"):
            raise ValueError(
                "exchange_precision must be 'float32' or 'float16'. Received: "
                f"{exchange_precision!r}"
            )
        if not isinstance(backup_workers, int) or backup_workers < 0:
            raise ValueError(
                f"backup_workers must be an integer >= 0. Received: {backup_workers!r}"
            )
        super().__init__(learning_rate=0.0, name=name or "elastic_averaging")
        if exchange == "tree" and broadcast_on_build:
            collectives.init_tree(group_size)
        else:
            collectives.init()
        self.inner_optimizer = inner_optimizer
        self.tau = tau
        self.beta = beta
        self.exchange = exchange
        self._exchange = EXCHANGES[exchange]
        self.workers = collectives.size()
        self.alpha = float(alpha) if alpha is not None else (beta or 0.9) / self.workers
        if exchange == "tree":
            self.alpha = None  # per level, from beta and beta_root once the groups are known
        self.center_momentum = float(center_momentum)
        self.average_rate = float(average_rate)
        self.group_size = group_size
        self.tau_root = tau_root
        self.beta_root = beta_root
        self.order = order
        self.topology = topology
        self.consensus_momentum = float(consensus_momentum)
        self._mixing = None
        if exchange in ("consensus", "mconsensus"):
            # Every rank holds the whole matrix: who it receives from and who it sends to.
            try:
                self._mixing = mixing_matrix(topology, self.workers)
            except TopologyError as exc:
                # The schema cannot know how many ranks a shell run starts: this is where a
                # matrix of the wrong size is refused.
                raise ValueError(f"optimizer.topology: {exc}") from None
        self.asynchronous = bool(asynchronous)
        self.backup_workers = backup_workers
        self.exchange_precision = exchange_precision
        self._center_link = None
        self._served_totals: dict | None = None
        self.root_rank = root_rank
        self.broadcast_on_build = broadcast_on_build

    @tracking.no_automatic_dependency_tracking
    def build(self, var_list):
        var_list = list(var_list)
        self.inner_optimizer.build(var_list)
        self.bytes_sent = self.add_variable((), dtype="float64", name="bytes_sent")
        self.comm_seconds = self.add_variable((), dtype="float64", name="comm_seconds")
        self.rounds = self.add_variable((), dtype="int64", name="rounds")
        self.center = []
        self.center_velocity = []
        self.average = []
        self.mean = []
        self.previous = []
        if self._exchange.evaluated == "mean":
            self.mean = [self.add_variable_from_reference(v, name="mean") for v in var_list]
        if self.exchange == "mconsensus":
            self.previous = [
                self.add_variable_from_reference(v, name="consensus_previous") for v in var_list
            ]
        if self._exchange.has_center:
            self.center = [self.add_variable_from_reference(v, name="center") for v in var_list]
        if self.exchange == "mdownpour":
            self.center_velocity = [
                self.add_variable_from_reference(v, name="center_velocity") for v in var_list
            ]
        if self._exchange.evaluated == "average":
            self.average = [self.add_variable_from_reference(v, name="average") for v in var_list]
        self.group_center = []
        if self.served:  # the server's counters, kept in checkpoints by rank 0
            self.center_version = self.add_variable((), dtype="int64", name="center_version")
            self.center_updates = self.add_variable((), dtype="int64", name="center_updates")
        if self.exchange == "tree":
            self.group_center = [
                self.add_variable_from_reference(v, name="group_center") for v in var_list
            ]
            self.group_bytes = self.add_variable((), dtype="float64", name="group_bytes")
            self.root_bytes = self.add_variable((), dtype="float64", name="root_bytes")
        # Runs eagerly even while a tf.function traces, and so only once.
        with tf.init_scope():
            if self.broadcast_on_build:
                collectives.broadcast_variables(var_list, self.root_rank)
            for state in (self.center, self.average, self.mean, self.previous, self.group_center):
                for s, v in zip(state, var_list):
                    s.assign(v.value)
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    @property
    def served(self) -> bool:
        """Whether a center server on rank 0 does the communication (asynchronous forms, and
        synchronous SGD with backup workers)."""
        return self.asynchronous or self.backup_workers > 0

    @property
    def evaluation_variables(self) -> list:
        """What to evaluate and export: the center (or its moving average), the weights, or the
        workers' mean as of the last `prepare_evaluation`."""
        return {
            "center": self.center,
            "average": self.average,
            "weights": self._trainable_variables,
            "mean": self.mean,
        }[self._exchange.evaluated]

    def prepare_evaluation(self) -> None:
        """Every rank calls it before `evaluation_variables` are read. With no center
        (`consensus`), it sets them to the workers' mean: one all-reduce, for monitoring, so
        not counted in `communication()`. Otherwise it does nothing."""
        if self._center_link is not None:
            if collectives.rank() == 0:
                self.spread = self._center_link.snapshot()
            return
        if not self.mean:
            return
        mean, _, _ = collectives.timed_mean(
            [tf.identity(x.value) for x in self._trainable_variables], "easgd_consensus_mean"
        )
        for m, value in zip(self.mean, mean):
            m.assign(value)

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            if trainable_variables is None:
                raise ValueError(
                    "Build the optimizer first (optimizer.build(model.trainable_variables)) or "
                    "pass trainable_variables on the first call."
                )
            with keras.name_scope(self.name, caller=self):
                self.build(list(trainable_variables))
            self.built = True
        if _in_xla_context():
            raise RuntimeError(
                "Horovod collectives cannot run inside XLA: compile the model with "
                "jit_compile=False (or use tf.function without jit_compile). "
                "Received: an XLA-compiled training step"
            )
        variables = list(trainable_variables or self._trainable_variables)
        grads = [tf.convert_to_tensor(g) if g is not None else None for g in grads]
        step = tf.identity(self.iterations.value)
        when = "served" if self.served else self._exchange.when
        if when == "every":
            grads = self._round(grads)
        elif when == "before":
            self._maybe_round(step, variables)
        self.inner_optimizer.apply(grads, variables)
        if when == "after":
            self._maybe_round(step, variables)
        if self.exchange == "mconsensus":
            self._consensus_momentum(variables)

    # -- the asynchronous form (training/center/asynchronous.py), between steps, eagerly -------------

    def start_asynchronous(self, mode: str | None = None) -> None:
        """Every rank, once built (and restored): rank 0 starts the center server, in a thread
        of its own (`mode` "thread", the default) or a child process ("process"); the
        environment variable EASGD_CENTER_MODE sets it when `mode` is None."""
        import os

        from training.center.asynchronous import AsynchronousCenter

        mode = mode or os.environ.get("EASGD_CENTER_MODE") or "thread"
        if mode not in ("thread", "process"):
            raise ValueError(
                f"the center server runs as a 'thread' or a 'process'. Received: {mode!r} "
                "(EASGD_CENTER_MODE)"
            )
        self._center_link = AsynchronousCenter(self, mode)
        self._center_link.start()

    def before_step(self, t: int) -> None:
        self._center_link.worker.before_step(t)

    def after_step(self, t: int) -> None:
        self._center_link.worker.after_step(t)

    def backup_step(self, flat_gradient, step: int):
        """Backup workers: (the means of the steps this worker applies now, steps done)."""
        return self._center_link.worker.gradient(flat_gradient, step)

    def finish_asynchronous(self) -> None:
        """After the last step: complete the exchange in flight; rank 0 then waits for every
        worker and reads the final center."""
        link = self._center_link
        link.finish()
        if collectives.rank() == 0:
            self.spread = link.snapshot()

    def abort_asynchronous(self, reason: str) -> None:
        if self._center_link is not None:
            self._center_link.abort(reason)

    def stop_asynchronous(self) -> None:
        if self._center_link is not None:
            self._served_totals = self.communication()  # what the worker counted, kept
            self._center_link.stop()
            self._center_link = None

    def center_status(self):
        """Rank 0: (workers done, per-rank exchanges, staleness sum and max, seconds waited)."""
        return self._center_link.status()

    def _account(self, nbytes: int, seconds: tf.Tensor) -> tf.Tensor:
        self.bytes_sent.assign_add(tf.constant(float(nbytes), tf.float64))
        self.comm_seconds.assign_add(seconds)
        self.rounds.assign_add(1)
        return seconds

    def _round(self, values):
        return self._ROUNDS[self.exchange](self, values)

    def _maybe_round(self, step: tf.Tensor, variables) -> None:
        """The exchange's round on the steps its schedule names, without a Python branch."""
        if self._exchange.communicates(step, self.tau) is True:  # every step
            self._round(variables)
            return
        tf.cond(
            self._exchange.communicates(step, self.tau, self.tau_root),
            lambda: self._round(variables),
            lambda: tf.constant(0.0, tf.float64),
        )

    def _sync_round(self, grads):
        present = [i for i, g in enumerate(grads) if g is not None]
        averaged, nbytes, seconds = collectives.timed_mean(
            [grads[i] for i in present], "easgd_sync_grads"
        )
        self._account(nbytes, seconds)
        out = list(grads)
        for i, g in zip(present, averaged):
            out[i] = g
        return out

    def _elastic_points(self, variables) -> list[tf.Tensor]:
        """The x on which the elastic force acts: Keras' Nesterov SGD holds y = x + delta m."""
        inner = self.inner_optimizer
        if not (isinstance(inner, keras.optimizers.SGD) and inner.nesterov and inner.momentum):
            return [x.value for x in variables]
        delta = inner.momentum
        return [
            x.value - tf.cast(delta, x.dtype) * inner.momentums[inner._get_variable_index(x)].value
            for x in variables
        ]

    def _elastic_round(self, variables) -> tf.Tensor:
        points = self._elastic_points(variables)
        if self.order == "round_robin":
            return self._round_robin(variables, points)
        alpha = self.alpha
        diffs = [tf.cast(alpha, p.dtype) * (p - c.value) for p, c in zip(points, self.center)]
        for x, d in zip(variables, diffs):
            self.assign_sub(x, d)
        total, nbytes, seconds = collectives.timed_sum(diffs, "easgd_elastic")
        for c, s in zip(self.center, total):
            self.assign_add(c, s)
        return self._account(nbytes, seconds)

    def _round_robin(self, variables, points) -> tf.Tensor:
        """Every rank replays the same sequence on the gathered x_j, so the replicas agree."""
        gathered, nbytes, seconds = collectives.timed_gather(points, "easgd_elastic_rr")
        rank = collectives.rank()
        for x, c, xs in zip(variables, self.center, gathered):
            alpha = tf.cast(self.alpha, c.dtype)
            center, own = c.value, None
            for j in range(self.workers):
                e = alpha * (xs[j] - center)
                center = center + e
                own = e if j == rank else own
            self.assign(c, center)
            self.assign_sub(x, own)
        return self._account(nbytes, seconds)

    def _localsgd_round(self, variables) -> tf.Tensor:
        mean, nbytes, seconds = collectives.timed_mean(
            [x.value for x in variables], "easgd_localsgd"
        )
        for x, c, m in zip(variables, self.center, mean):
            self.assign(c, m)
            self.assign(x, m)
        return self._account(nbytes, seconds)

    def _downpour_round(self, variables) -> tf.Tensor:
        """The DOWNPOUR family: mdownpour's momentum on the center, and the master's averages
        (mvadownpour, adownpour), taken when the center changes."""
        deltas = [x.value - c.value for x, c in zip(variables, self.center)]
        total, nbytes, seconds = collectives.timed_sum(deltas, "easgd_downpour")
        if self.exchange == "mdownpour":
            delta = self.center_momentum
            for c, v, s in zip(self.center, self.center_velocity, total):
                self.assign(v, tf.cast(delta, v.dtype) * v.value + s)
                self.assign_add(c, tf.cast(delta, v.dtype) * v.value + s)
        else:
            for c, s in zip(self.center, total):
                self.assign_add(c, s)
        for x, c in zip(variables, self.center):
            self.assign(x, c.value)
        seconds = self._account(nbytes, seconds)
        if self.exchange == "mvadownpour":
            a = self.average_rate
            for z, c in zip(self.average, self.center):
                self.assign(z, (1.0 - a) * z.value + a * c.value)
        if self.exchange == "adownpour":
            k = tf.cast(self.rounds.value, self.average[0].dtype)  # this update's k, from 1
            for z, c in zip(self.average, self.center):
                self.assign_add(z, (c.value - z.value) / (k + 1.0))
        return seconds

    def _consensus_round(self, variables) -> tf.Tensor:
        """x_j <- sum_l pi_jl x_l, with one collective."""
        mixed, nbytes, seconds = self._mix([x.value for x in variables])
        for x, m in zip(variables, mixed):
            self.assign(x, m)
        return self._account(nbytes, seconds)

    def _mix(self, values: list) -> tuple[list[tf.Tensor], int, tf.Tensor]:
        """This rank's row of pi times every rank's `values`: (mixed, payload bytes, seconds).

        An all-gather brings every rank's weights; when no rank mixes with all the others (a
        ring of 4 or more, most explicit matrices), an all-to-all of the flattened weights sends
        them only to the ranks that mix them, d copies instead of the p - 1 payloads an
        all-gather forwards. With nothing to mix at all (one rank, the identity) nothing is sent.
        """
        pi, j, p = self._mixing, collectives.rank(), self.workers
        linked = [[k for k in range(p) if k != i and pi[k][i] > 0] for i in range(p)]
        if not any(linked):
            return values, 0, tf.constant(0.0, tf.float64)
        if max(len(t) for t in linked) == p - 1:
            gathered, nbytes, seconds = collectives.timed_gather(values, "easgd_consensus")
            row = [tf.constant(pi[j], g.dtype) for g in gathered]
            return [tf.tensordot(r, g, axes=1) for r, g in zip(row, gathered)], nbytes, seconds
        sources = [k for k in range(p) if k != j and pi[j][k] > 0]
        targets = linked[j]
        flat = tf.concat([tf.reshape(v, [-1]) for v in values], axis=0)
        send = tf.tile(flat[tf.newaxis], [len(targets), 1])
        splits = [1 if k in targets else 0 for k in range(p)]
        received, nbytes, seconds = collectives.timed_alltoall(send, splits, "easgd_consensus")
        received = tf.reshape(received, [len(sources), flat.shape[0]])
        weights = tf.constant([pi[j][k] for k in sources], flat.dtype)
        mixed = tf.cast(pi[j][j], flat.dtype) * flat + tf.linalg.matvec(received, weights, True)
        sizes = [v.shape.num_elements() for v in values]
        parts = tf.split(mixed, sizes)
        return [tf.reshape(m, v.shape) for m, v in zip(parts, values)], nbytes, seconds

    def _consensus_momentum(self, variables) -> None:
        """CDMSGD after the inner step gave v_{k+1}: x <- v_{k+1} + mu (v_{k+1} - v_k)."""
        mu = self.consensus_momentum
        for x, v in zip(variables, self.previous):
            new = tf.identity(x.value)
            self.assign(x, new + tf.cast(mu, new.dtype) * (new - v.value))
            self.assign(v, new)

    def _tree_round(self, variables) -> tf.Tensor:
        """Tree EASGD: the group level on steps with t mod tau == 0, the root level on steps with
        t mod tau_root == 0, every force from the values before the step."""
        layout = collectives.init_tree(self.group_size)
        rank = collectives.rank()
        group = layout.group_of(rank)
        step = self.iterations.value
        on_group = step % self.tau == 0
        on_root = step % self.tau_root == 0
        alpha = (self.beta if self.beta is not None else 0.9) / layout.group_size
        alpha_root = (self.beta_root if self.beta_root is not None else 0.9) / layout.count
        pulls = [
            tf.cast(alpha, x.dtype) * (x - c.value)
            for x, c in zip(self._elastic_points(variables), self.group_center)
        ]
        pushes = [
            tf.cast(alpha_root, g.dtype) * (g.value - c.value)
            for g, c in zip(self.group_center, self.center)
        ]

        def group_level():
            total, nbytes, seconds = collectives.timed_sum(pulls, "easgd_tree_group", group)
            self._account_level(self.group_bytes, nbytes, seconds)
            return total

        def root_level():
            centers = [c.value for c in self.center]
            nbytes, seconds = 0, tf.constant(0.0, tf.float64)
            if rank in layout.leaders:
                total, nbytes, seconds = collectives.timed_sum(
                    pushes, "easgd_tree_root", layout.leaders
                )
                centers = [c + s for c, s in zip(centers, total)]
            centers, sent, more = collectives.timed_broadcast(
                centers, group[0], "easgd_tree_center", group
            )
            self._account_level(self.root_bytes, nbytes + sent, seconds + more)
            return centers

        def unchanged(values):
            return lambda: [tf.identity(v) for v in values]

        sums = tf.cond(on_group, group_level, unchanged([tf.zeros_like(d) for d in pulls]))
        centers = tf.cond(on_root, root_level, unchanged([c.value for c in self.center]))
        for x, d in zip(variables, pulls):
            self.assign_sub(x, tf.where(on_group, d, tf.zeros_like(d)))
        for g, s, e in zip(self.group_center, sums, pushes):
            self.assign(g, g.value + s - tf.where(on_root, e, tf.zeros_like(e)))
        for c, value in zip(self.center, centers):
            self.assign(c, value)
        return tf.constant(0.0, tf.float64)

    def _account_level(self, level_bytes, nbytes: int, seconds: tf.Tensor) -> None:
        level_bytes.assign_add(tf.constant(float(nbytes), tf.float64))
        self._account(nbytes, seconds)

    # Each exchange's equations: the round that runs when `training.schema.algorithms` schedules it.
    _ROUNDS = {
        "sync": _sync_round,
        "elastic": _elastic_round,
        "downpour": _downpour_round,
        "mdownpour": _downpour_round,
        "mvadownpour": _downpour_round,
        "adownpour": _downpour_round,
        "localsgd": _localsgd_round,
        "consensus": _consensus_round,
        "mconsensus": _consensus_round,
        "tree": _tree_round,
    }

    def communication(self) -> dict[str, float]:
        """Bytes this rank has handed to collectives, the seconds spent in them, and rounds."""
        if not self.built:
            return {"bytes_sent": 0.0, "comm_seconds": 0.0, "rounds": 0}
        if self._center_link is None and self._served_totals is not None:
            return dict(self._served_totals)
        if self._center_link is not None:
            w = self._center_link.worker
            return {
                "bytes_sent": float(w.client.bytes_sent),
                "comm_seconds": w.wait_seconds,
                "rounds": w.exchanges,
                "wait_seconds": w.wait_seconds,
            }
        out = {
            "bytes_sent": float(self.bytes_sent.numpy()),
            "comm_seconds": float(self.comm_seconds.numpy()),
            "rounds": int(self.rounds.numpy()),
        }
        if self.exchange == "tree":  # bytes_sent split by level
            out["group_bytes"] = float(self.group_bytes.numpy())
            out["root_bytes"] = float(self.root_bytes.numpy())
        return out

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self):
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "tau": self.tau,
            "beta": self.beta,
            "alpha": self.alpha,
            "exchange": self.exchange,
            "center_momentum": self.center_momentum,
            "average_rate": self.average_rate,
            "group_size": self.group_size,
            "tau_root": self.tau_root,
            "beta_root": self.beta_root,
            "order": self.order,
            "topology": self.topology,
            "consensus_momentum": self.consensus_momentum,
            "asynchronous": self.asynchronous,
            "backup_workers": self.backup_workers,
            "exchange_precision": self.exchange_precision,
            "root_rank": self.root_rank,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(
            config.pop("inner_optimizer"), custom_objects=custom_objects
        )
        if config.get("exchange") == "tree":
            config.pop("alpha", None)  # the tree's rates come from beta and beta_root
        else:
            config.pop("beta", None)
        # A saved model may be loaded by one rank alone (to evaluate a checkpoint inside a
        # running job): deserializing must run no collective. Training's start broadcasts.
        config["broadcast_on_build"] = False
        return cls(inner, **config)


class CenterServerCallback(keras.callbacks.Callback):
    """Drives an asynchronous `ElasticAveragingOptimizer` (or one with backup workers' server,
    which `model.fit` cannot use: its step is split around the exchange) inside `model.fit`:
    starts the center server, exchanges around each batch, and waits for every worker at the
    end. Pass it to `fit(callbacks=[...])` under horovodrun; when `fit` raises, call
    `optimizer.stop_asynchronous()` yourself to end the server's thread and sockets."""

    def __init__(self, optimizer: ElasticAveragingOptimizer, mode: str | None = None):
        super().__init__()
        if not optimizer.asynchronous:
            raise ValueError(
                "CenterServerCallback drives an asynchronous optimizer; build it with "
                f"asynchronous=True. Received: asynchronous={optimizer.asynchronous}"
            )
        self.optimizer, self.mode = optimizer, mode

    def on_train_begin(self, logs=None):
        if not self.optimizer.built:
            self.optimizer.build(self.model.trainable_variables)
        self.optimizer.start_asynchronous(self.mode)

    def on_train_batch_begin(self, batch, logs=None):
        self.optimizer.before_step(int(self.optimizer.iterations.numpy()))

    def on_train_batch_end(self, batch, logs=None):
        self.optimizer.after_step(int(self.optimizer.iterations.numpy()) - 1)

    def on_train_end(self, logs=None):
        try:
            self.optimizer.finish_asynchronous()
            collectives.barrier()
        finally:
            self.optimizer.stop_asynchronous()


def _check_tree(alpha, group_size, tau_root, beta_root) -> None:
    if alpha is not None:
        raise ValueError(
            "The tree exchange takes beta (alpha = beta / group size) and beta_root, not alpha. "
            f"Received: alpha={alpha}"
        )
    if group_size is not None and (not isinstance(group_size, int) or group_size < 1):
        raise ValueError(f"group_size must be an integer >= 1. Received: group_size={group_size!r}")
    if not isinstance(tau_root, int) or tau_root < 1:
        raise ValueError(f"tau_root must be an integer >= 1. Received: tau_root={tau_root!r}")
    if beta_root is not None and not 0 < beta_root <= 1:
        raise ValueError(f"beta_root must be in (0, 1]. Received: beta_root={beta_root}")


def build_inner(
    kind: str,
    learning_rate,
    momentum: float = 0.0,
    lars_eta: float = 0.001,
    lars_weight_decay: float = 0.0,
):
    """The local optimizer by name: sgd, momentum, nesterov (the paper's EAMSGD inner step), adam,
    lars (You et al. 2017); `learning_rate` is a float or a Keras schedule."""
    if kind == "sgd":
        return keras.optimizers.SGD(learning_rate)
    if kind == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=momentum)
    if kind == "nesterov":
        return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=True)
    if kind == "adam":
        return keras.optimizers.Adam(learning_rate)
    if kind == "lars":
        return LARS(learning_rate, momentum, eta=lars_eta, weight_decay_rate=lars_weight_decay)
    raise ValueError(
        f"inner optimizer must be sgd, momentum, nesterov, adam or lars. Received: {kind!r}"
    )


def easgd(learning_rate: float, tau: int = 10, **kwargs) -> ElasticAveragingOptimizer:
    """EASGD: plain SGD on each worker and the elastic exchange every tau steps."""
    return ElasticAveragingOptimizer(keras.optimizers.SGD(learning_rate), tau=tau, **kwargs)


def eamsgd(
    learning_rate: float, tau: int = 10, momentum: float = 0.99, **kwargs
) -> ElasticAveragingOptimizer:
    """EAMSGD: Nesterov momentum (the paper's delta = 0.99) on each worker, elastic exchange."""
    inner = keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=True)
    return ElasticAveragingOptimizer(inner, tau=tau, **kwargs)


def make_optimizer(opt) -> ElasticAveragingOptimizer:
    """The optimizer an `OptimizerConfig` describes, from its algorithm's registry entry: the
    inner optimizer, the exchange, and the exchange's arguments from the fields that give them.
    The inner optimizer's rate is scaled with this job's Horovod size and warmed up as the
    configuration says (`training.exchanges.lr_schedule`). It broadcasts rank 0's weights when built."""
    spec = opt.spec
    inner_kind = opt.resolved_inner.value
    momentum = opt.resolved_momentum
    if "group_size" in spec.fields:  # process sets are registered when Horovod starts
        collectives.init_tree(opt.group_size)
    else:
        collectives.init()
    learning_rate = scaled_learning_rate(
        opt.learning_rate, opt.lr_scaling, collectives.size(), opt.warmup_steps
    )
    inner = build_inner(
        inner_kind,
        learning_rate,
        momentum if inner_kind in WITH_MOMENTUM else 0.0,
        lars_eta=opt.lars_eta,
        lars_weight_decay=opt.lars_weight_decay,
    )
    resolved = {**opt.model_dump(), "momentum": momentum}
    arguments = {arg: resolved[f] for arg, f in spec.exchange.arguments.items()}
    if not spec.periodic:
        arguments["tau"] = 1  # every step; what a saved model's config then says
    return ElasticAveragingOptimizer(inner, exchange=spec.exchange.name, **arguments)
