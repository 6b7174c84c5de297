"""A Keras 3 optimizer that wraps any inner optimizer and adds a periodic exchange over Horovod.

The inner optimizer is each worker's own step; the exchange is what tells the algorithms apart.
The wrapper holds one exchange (training/exchanges/base.py; one module per family: sync,
elastic, downpour, localsgd, tree, consensus, each with its equations) and delegates to it, as
Keras' LossScaleOptimizer delegates to its inner optimizer: the exchange's state is made of the
wrapper's variables, so that a checkpoint of the optimizer holds the center; its round runs where
its declaration places it around the inner step; its arguments and state read as the wrapper's
attributes (`opt.center`, `opt.alpha`). The wrapper adds what every exchange shares: the schedule,
the count of bytes, seconds and rounds, and the center server of the asynchronous forms.
"""

from __future__ import annotations

import inspect
import os

import keras
import tensorflow as tf
from keras.src.utils import tracking

from training.exchanges import collectives
from training.exchanges.base import Exchange
from training.exchanges.compression import LEVELS
from training.exchanges.lars import LARS
from training.exchanges.lr_schedule import scaled_learning_rate
from training.schema.algorithms import ASYNCHRONOUS_FORMS, EXCHANGES, WITH_MOMENTUM

# The arguments every exchange takes, and all that some exchange takes.
_SHARED = frozenset(inspect.signature(Exchange).parameters)
_KNOWN = _SHARED.union(*(e.arguments for e in EXCHANGES.values()))


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
        exchange: a name in `training.schema.algorithms.EXCHANGES` (the baselines run in this same
            harness).
        root_rank: the rank whose weights everyone starts from.
        broadcast_on_build: broadcast the root's weights when the optimizer is built, so that
            every worker and the center start equal (what Horovod's broadcast callback does).
            An optimizer restored by `keras.models.load_model` never broadcasts: one rank may
            load a saved model alone, and every rank that loads the same file starts equal.
        **exchange_arguments: the exchange's own, checked by it. Every exchange takes
            beta (moving rate, beta = workers x alpha, default 0.9) or alpha (elastic rate,
            default beta / workers); order ("simultaneous", every worker's pull with the same
            center, or "round_robin", the center takes them in rank order); asynchronous (a
            center server on rank 0, each worker on its own clock: elastic and the DOWNPOUR family
            but mdownpour; the training loop calls `start_asynchronous`, `before_step`,
            `after_step` and `finish_asynchronous`), center_shards (the asynchronous center split
            over the servers of that many ranks) and compression ("none", "float16", "int8",
            "int4": how model-sized messages travel, with error feedback; backup workers'
            server: "none" or "float16"; exchange_precision is its older name), overlap_steps
            (elastic, localsgd and diloco rounds run behind that many steps; the loop calls
            `before_step`, `after_step` and `land`, or fit takes `OverlapCallback`). The others
            belong to one family: center_momentum (mdownpour), average_rate (mvadownpour),
            outer_learning_rate and outer_momentum (diloco), group_size, tau_root and
            beta_root (tree), topology (consensus), consensus_momentum (mconsensus),
            backup_workers (sync: the mean of the first workers - b gradients of each step is
            applied by the center server, Chen et al. 2016; the training loop calls
            `backup_step` in the place of `apply`). Those of another family are ignored, as a
            saved model's configuration holds them.
    """

    def __init__(
        self,
        inner_optimizer: keras.optimizers.Optimizer,
        tau: int = 10,
        exchange: str = "elastic",
        root_rank: int = 0,
        broadcast_on_build: bool = True,
        name: str | None = None,
        **exchange_arguments,
    ):
        unknown = sorted(set(exchange_arguments) - _KNOWN)
        if unknown:
            raise ValueError(
                "ElasticAveragingOptimizer does not take these arguments; set them on the inner "
                f"optimizer instead. Received: {unknown}"
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
        kind = EXCHANGES[exchange]
        own = {k: v for k, v in exchange_arguments.items() if k in _SHARED or k in kind.arguments}
        for other in EXCHANGES.values():
            if other is not kind:
                other.refuse_elsewhere(
                    exchange, {k: v for k, v in exchange_arguments.items() if k in other.arguments}
                )
        exchanger = kind(tau=tau, **own)
        if exchanger.asynchronous and exchange not in ASYNCHRONOUS_FORMS:
            raise ValueError(
                f"exchange {exchange!r} has no asynchronous form; these have: "
                f"{', '.join(ASYNCHRONOUS_FORMS)}. Received: asynchronous=True"
            )
        if exchanger.compression != "none" and "compression" not in kind.arguments:
            raise ValueError(
                f"the {exchange} exchange does not compress yet; give compression='none'. "
                f"Received: compression={exchanger.compression!r}"
            )
        if exchanger.center_shards > 1 and not (
            exchanger.served and "center_shards" in kind.arguments
        ):
            raise ValueError(
                "center_shards splits the center server of an asynchronous form (elastic and "
                f"the DOWNPOUR family with asynchronous=True). Received: exchange={exchange!r}, "
                f"asynchronous={exchanger.asynchronous}, center_shards={exchanger.center_shards}"
            )
        if exchanger.overlap_steps and not (kind.overlaps and not exchanger.served):
            raise ValueError(
                "overlap_steps runs a synchronous round behind the steps that follow it: "
                f"{', '.join(e.name for e in EXCHANGES.values() if e.overlaps)} without "
                f"asynchronous. Received: exchange={exchange!r}, asynchronous="
                f"{exchanger.asynchronous}, overlap_steps={exchanger.overlap_steps}"
            )
        if (
            exchanger.overlap_steps
            and exchanger.order == "round_robin"
            and "order" in kind.arguments
        ):
            raise ValueError(
                "overlap_steps: the round-robin order replays every worker's x on the center at "
                "once; give order='simultaneous'. Received: order='round_robin'"
            )
        if exchanger.served and exchanger.compression in LEVELS and not kind.server_codes:
            raise ValueError(
                f"compression {exchanger.compression!r}: the {exchange} exchange's center "
                "server sends every worker the same values, as 'float16' or 'none'. Received: "
                f"compression={exchanger.compression!r}"
            )
        super().__init__(learning_rate=0.0, name=name or "elastic_averaging")
        exchanger.start(broadcast_on_build)
        self.inner_optimizer = inner_optimizer
        self.exchanger = exchanger
        self.exchange = exchange
        self.tau = tau
        self.root_rank = root_rank
        self.broadcast_on_build = broadcast_on_build
        self.spread: float | None = None
        self._center_link = None
        self._served_totals: dict | None = None

    def __getattr__(self, name: str):
        """The exchange's arguments and state (`center`, `alpha`, `group_center`...)."""
        exchanger = self.__dict__.get("exchanger")
        if exchanger is None or name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(exchanger, name)

    @tracking.no_automatic_dependency_tracking
    def build(self, var_list):
        var_list = list(var_list)
        self.inner_optimizer.build(var_list)
        self.bytes_sent = self.add_variable((), dtype="float64", name="bytes_sent")
        self.comm_seconds = self.add_variable((), dtype="float64", name="comm_seconds")
        self.rounds = self.add_variable((), dtype="int64", name="rounds")
        self.exchanger.build(self, var_list)
        if self.served:  # the server's counters, kept in checkpoints by rank 0
            self.center_version = self.add_variable((), dtype="int64", name="center_version")
            self.center_updates = self.add_variable((), dtype="int64", name="center_updates")
        # Runs eagerly even while a tf.function traces, and so only once.
        with tf.init_scope():
            if self.broadcast_on_build:
                collectives.broadcast_variables(var_list, self.root_rank)
            for state in self.exchanger.replicas:
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
        return self.exchanger.served

    @property
    def evaluation_variables(self) -> list:
        """What to evaluate and export: the center (or its moving average), the weights, or the
        workers' mean as of the last `prepare_evaluation`."""
        return self.exchanger.evaluation_variables(self)

    def prepare_evaluation(self) -> None:
        """Every rank calls it before `evaluation_variables` are read. On the center server,
        rank 0 reads the center (and the spread, where the server measures it); with no center
        (`consensus`), every rank computes the workers' mean."""
        if self._center_link is not None:
            if collectives.rank() == 0:
                spread = self._center_link.snapshot()
                self.spread = spread if self.exchanger.served_spread else None
            return
        self.exchanger.prepare_evaluation(self)

    # Keras' optimizers need no AutoGraph (they run on JAX too), nor do the exchanges: left
    # unconverted, a rank traces its step about 1.6 s sooner, in model.fit as in our trainer.
    @tf.autograph.experimental.do_not_convert
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
        when = "served" if self.served else self.exchanger.when
        if when == "every":
            grads = self.exchanger.round(self, grads)
        elif when == "before":
            self._maybe_round(step, variables)
        self.inner_optimizer.apply(grads, variables)
        if when == "after":
            self._maybe_round(step, variables)
        self.exchanger.after_inner(self, variables)

    def _maybe_round(self, step: tf.Tensor, variables) -> None:
        """The exchange's round on the steps its schedule names, without a Python branch."""
        due = self.exchanger.due(step)
        if due is True:  # every step
            self.exchanger.round(self, variables)
            return
        tf.cond(
            due,
            lambda: self.exchanger.round(self, variables),
            lambda: tf.constant(0.0, tf.float64),
        )

    def record(self, nbytes: int, seconds: tf.Tensor) -> tf.Tensor:
        """Count one round: the payload bytes this rank handed to collectives, their seconds."""
        self.bytes_sent.assign_add(tf.constant(float(nbytes), tf.float64))
        self.comm_seconds.assign_add(seconds)
        self.rounds.assign_add(1)
        return seconds

    # -- the asynchronous form (training/center/asynchronous.py), between steps, eagerly -------------

    def start_asynchronous(self, mode: str | None = None) -> None:
        """Every rank, once built (and restored): rank 0 starts the center server, in a thread
        of its own (`mode` "thread", the default) or a child process ("process"); the
        environment variable EASGD_CENTER_MODE sets it when `mode` is None."""
        from training.center.asynchronous import AsynchronousCenter

        mode = mode or os.environ.get("EASGD_CENTER_MODE") or "thread"
        if mode not in ("thread", "process"):
            raise ValueError(
                f"the center server runs as a 'thread' or a 'process'. Received: {mode!r} "
                "(EASGD_CENTER_MODE)"
            )
        self._center_link = AsynchronousCenter(self, mode)
        self._center_link.start()

    @property
    def overlapped(self) -> bool:
        """Whether rounds run behind the steps (`overlap_steps`): the loop then calls
        `before_step`, `after_step` and, at a checkpoint and after the last step, `land`."""
        return self.exchanger.flight is not None

    def before_step(self, t: int) -> None:
        if self._center_link is not None:
            self._center_link.worker.before_step(t)
        elif self.overlapped:
            self.exchanger.flight.before_step(t)

    def after_step(self, t: int) -> None:
        if self._center_link is not None:
            self._center_link.worker.after_step(t)
        elif self.overlapped:
            self.exchanger.flight.after_step(t)

    def land(self) -> None:
        """The overlapped round in flight lands now (every rank on the same step)."""
        if self.overlapped:
            self.exchanger.flight.land()

    @property
    def in_flight(self) -> bool:
        """Whether an overlapped round is in flight: another collective now would wait for it."""
        return self.overlapped and self.exchanger.flight.busy

    def stop_overlap(self) -> None:
        """Whatever happened: the thread carrying a round ends before the process does."""
        if self.overlapped:
            self.exchanger.flight.stop()

    def backup_step(self, flat_gradient, step: int):
        """Backup workers: (the means of the steps this worker applies now, steps done)."""
        return self._center_link.worker.gradient(flat_gradient, step)

    def finish_asynchronous(self) -> None:
        """After the last step: complete the exchange in flight; rank 0 then waits for every
        worker and reads the final center."""
        self._center_link.finish()
        self.prepare_evaluation()

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
            **self.exchanger.communication(),
        }
        if self.overlapped:  # what the steps waited for rounds still in flight
            out["overlap_wait_seconds"] = self.exchanger.flight.waited
        return out

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self):
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "tau": self.tau,
            "exchange": self.exchange,
            **self.exchanger.get_config(),
            "root_rank": self.root_rank,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(
            config.pop("inner_optimizer"), custom_objects=custom_objects
        )
        if config.get("alpha") is not None:
            config.pop("beta", None)  # the saved alpha was resolved from it
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


class OverlapCallback(keras.callbacks.Callback):
    """Carries an optimizer's overlapped rounds (`overlap_steps`) in `model.fit`: each round's
    collective leaves after the step that posts it and lands `overlap_steps` steps later; a
    round in flight lands at the end of each epoch (every rank ends it on the same step, and
    `ModelCheckpoint` saves no half-done round) and when training ends. Pass it to
    `fit(callbacks=[...])` under horovodrun, before any callback that saves the model."""

    def __init__(self, optimizer: ElasticAveragingOptimizer):
        super().__init__()
        if not optimizer.exchanger.overlap_steps:
            raise ValueError(
                "OverlapCallback carries rounds of an optimizer built with overlap_steps >= 1. "
                f"Received: overlap_steps={optimizer.exchanger.overlap_steps}"
            )
        self.optimizer = optimizer

    def on_train_begin(self, logs=None):
        every = int(getattr(self.model, "steps_per_execution", 1) or 1)
        if every > 1:
            raise ValueError(
                "OverlapCallback runs around every step, and compile(steps_per_execution="
                f"{every}) runs {every} in one call; compile with steps_per_execution=1 or use "
                "overlap_steps=0"
            )

    def on_train_batch_begin(self, batch, logs=None):
        self.optimizer.before_step(int(self.optimizer.iterations.numpy()))

    def on_train_batch_end(self, batch, logs=None):
        self.optimizer.after_step(int(self.optimizer.iterations.numpy()) - 1)

    def on_epoch_end(self, epoch, logs=None):
        self.optimizer.land()

    def on_train_end(self, logs=None):
        self.optimizer.land()


def build_inner(
    kind: str,
    learning_rate,
    momentum: float = 0.0,
    lars_eta: float = 0.001,
    lars_weight_decay: float = 0.0,
    adamw_weight_decay: float = 0.1,
):
    """The local optimizer by name: sgd, momentum, nesterov (the paper's EAMSGD inner step), adam,
    adamw (DiLoCo's), lars (You et al. 2017); `learning_rate` is a float or a Keras schedule."""
    if kind == "sgd":
        return keras.optimizers.SGD(learning_rate)
    if kind == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=momentum)
    if kind == "nesterov":
        return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=True)
    if kind == "adam":
        return keras.optimizers.Adam(learning_rate)
    if kind == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=adamw_weight_decay)
    if kind == "lars":
        return LARS(learning_rate, momentum, eta=lars_eta, weight_decay_rate=lars_weight_decay)
    raise ValueError(
        f"inner optimizer must be sgd, momentum, nesterov, adam, adamw or lars. Received: {kind!r}"
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
    arguments = opt.exchange_arguments()
    spec.exchange.init_collectives(arguments)  # the tree's process sets: when Horovod starts
    inner_kind = opt.resolved_inner.value
    learning_rate = scaled_learning_rate(
        opt.learning_rate, opt.lr_scaling, collectives.size(), opt.warmup_steps
    )
    inner = build_inner(
        inner_kind,
        learning_rate,
        opt.resolved_momentum if inner_kind in WITH_MOMENTUM else 0.0,
        lars_eta=opt.lars_eta,
        lars_weight_decay=opt.lars_weight_decay,
        adamw_weight_decay=opt.adamw_weight_decay,
    )
    if not spec.periodic:
        arguments["tau"] = 1  # every step; what a saved model's config then says
    return ElasticAveragingOptimizer(inner, exchange=spec.exchange.name, **arguments)
