"""Consensus SGD over a fixed topology (CDSGD and CDMSGD, Jiang, Balu, Hegde & Sarkar, NIPS 2017).

- ``consensus`` (CDSGD): every step, before the inner step, worker j mixes with its row of the
  topology's doubly stochastic matrix pi (training/schema/topology.py), so that with SGD inside
  x_j <- sum_l pi_jl x_l - eta g_j(x_j), the gradient taken at the x_j before mixing. One
  collective: an all-gather of the weights, or, when no rank mixes with all others, an
  all-to-all that sends them to the ranks that mix them only. No center: the evaluated model is
  the workers' mean, computed by `prepare_evaluation` (a monitoring all-reduce, not counted).
- ``mconsensus`` (CDMSGD): the same round; the inner step then gives
  v_{k+1} = sum_l pi_jl x_l - eta g_j(x_j), and after it x <- v_{k+1} + mu (v_{k+1} - v_k), with
  v_0 = x_0.

The topology helpers are imported where they are used: they live in the schema, which imports
this module.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from training.exchanges.base import Exchange, collectives, tf


def _topology(value: Any) -> Any:
    from training.schema.fields import short
    from training.schema.topology import TopologyError, parse

    try:
        return parse(value)
    except TopologyError as exc:
        raise ValueError(f"{exc} (received: {short(value)})") from None


class Consensus(Exchange):
    name = "consensus"
    when = "before"
    evaluated = "mean"
    fields = {
        "topology": (
            Annotated[Literal["ring", "full"] | list[list[float]], BeforeValidator(_topology)],
            Field(
                "ring",
                description=(
                    "CDSGD's fixed topology: ring or full (Metropolis-Hastings weights), or a "
                    "workers x workers doubly stochastic mixing matrix as a list of rows: "
                    "[[0.5, 0.5], [0.5, 0.5]]."
                ),
            ),
        )
    }
    arguments = {"topology": "topology", "compression": "compression"}
    # Compressed, each rank's copies of its neighbours carry what was not sent yet (CHOCO).
    feedback = False

    @classmethod
    def launch_problem(cls, opt: Any, workers: int) -> str | None:
        from training.schema.topology import TopologyError, mixing_matrix

        if isinstance(opt.topology, str):
            return None
        try:
            mixing_matrix(opt.topology, workers)
        except TopologyError as exc:
            return f"optimizer.topology: {exc}"
        return None

    @classmethod
    def warnings(cls, opt: Any, workers: int) -> list[str]:
        from training.schema.topology import connected

        if (problem := cls.launch_problem(opt, workers)) is not None:
            return [problem]
        if isinstance(opt.topology, list) and not connected(opt.topology):
            return [
                "optimizer.topology: the graph of the mixing matrix is not connected; workers in "
                "different parts never agree"
            ]
        return []

    def __init__(self, *, topology: str | list = "ring", **shared: Any):
        from training.schema.topology import TopologyError, parse

        super().__init__(**shared)
        try:
            self.topology = parse(topology)
        except TopologyError as exc:
            raise ValueError(f"topology: {exc}. Received: topology={topology!r:.200}") from None
        self._mixing: list[list[float]] = []

    def resolve(self, workers: int) -> None:
        from training.schema.topology import TopologyError, mixing_matrix

        super().resolve(workers)
        # Every rank holds the whole matrix: who it receives from and who it sends to.
        try:
            self._mixing = mixing_matrix(self.topology, workers)
        except TopologyError as exc:
            # The schema cannot know how many ranks a shell run starts: this is where a matrix
            # of the wrong size is refused.
            raise ValueError(f"optimizer.topology: {exc}") from None

    def build(self, opt: Any, var_list: list) -> None:
        super().build(opt, var_list)
        self.copies: list[list] = []
        if self.compressed is not None:  # every rank's x as this rank holds it
            self.copies = [
                [opt.add_variable_from_reference(v, name=f"copy_{k}") for v in var_list]
                for k in range(collectives.size())
            ]
            self.replicas.extend(self.copies)

    def round(self, opt: Any, variables: list) -> Any:
        """x_j <- sum_l pi_jl x_l, with one collective."""
        values = [x.value for x in variables]
        if self.compressed is not None:
            mixed, nbytes, seconds = self._mix_compressed(opt, values)
        else:
            mixed, nbytes, seconds = self._mix(values)
        for x, m in zip(variables, mixed):
            opt.assign(x, m)
        return opt.record(nbytes, seconds)

    def _mix(self, values: list) -> tuple[list, int, Any]:
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

    def _mix_compressed(self, opt: Any, values: list) -> tuple[list, int, Any]:
        """CHOCO-SGD's gossip (Koloskova, Stich & Jaggi 2019) with step 1: each rank sends
        Q(x_j - c_j), the change of its x since its copy c_j, every rank that mixes it adds the
        decoded change to its copy, and x_j <- x_j + sum_l pi_jl (c_l - c_j), which is the
        exact mixing when the copies are exact. One all-gather of the codes, or an all-to-all
        to the ranks that mix them only."""
        pi, j, p = self._mixing, collectives.rank(), self.workers
        linked = [[k for k in range(p) if k != i and pi[k][i] > 0] for i in range(p)]
        if not any(linked):
            return values, 0, tf.constant(0.0, tf.float64)
        changes = [v - c.value for v, c in zip(values, self.copies[j])]
        if max(len(t) for t in linked) == p - 1:
            _, decoded, nbytes, seconds = self.compressed.send(opt, changes, "easgd_consensus_q")
            sources = [k for k in range(p) if k != j]
        else:
            sources = [k for k in range(p) if k != j and pi[j][k] > 0]
            _, data = self.compressed.encode(changes)  # no residual: the copies carry it
            send = tf.tile(data[tf.newaxis], [len(linked[j]), 1])
            splits = [1 if k in linked[j] else 0 for k in range(p)]
            received, nbytes, seconds = collectives.timed_alltoall(
                send, splits, "easgd_consensus_q"
            )
            rows = data[tf.newaxis]
            if sources:
                rows = tf.concat([tf.reshape(received, [len(sources), -1]), rows], 0)
            dtypes = [v.dtype for v in changes]
            got = [
                self.compressed.layout.shaped(f, dtypes)
                for f in self.compressed.decode_rows(rows, range(len(sources) + 1))
            ]
            decoded = dict(zip([*sources, j], got))
        for k in [*sources, j]:
            for c, d in zip(self.copies[k], decoded[k]):
                opt.assign_add(c, d)
        mixed = []
        for i, v in enumerate(values):
            own = self.copies[j][i].value
            pull = sum(
                tf.cast(pi[j][k], v.dtype) * (self.copies[k][i].value - own) for k in sources
            )
            mixed.append(v + pull)
        return mixed, nbytes, seconds

    def prepare_evaluation(self, opt: Any) -> None:
        """The workers' mean into `mean`: one all-reduce, for monitoring, so not counted in the
        optimizer's communication."""
        mean, _, _ = collectives.timed_mean(
            [tf.identity(x.value) for x in opt._trainable_variables], "easgd_consensus_mean"
        )
        for m, value in zip(self.mean, mean):
            m.assign(value)

    def restart(self, variables: list) -> None:
        super().restart(variables)
        for state in self.replicas:
            for s, x in zip(state, variables):
                s.assign(x.value)


class MConsensus(Consensus):
    name = "mconsensus"
    arguments = {
        "topology": "topology",
        "consensus_momentum": "momentum",
        "compression": "compression",
    }

    def __init__(self, *, consensus_momentum: float = 0.95, **others: Any):
        super().__init__(**others)
        if not 0 <= consensus_momentum < 1:
            raise ValueError(
                f"consensus_momentum must be in [0, 1). Received: {consensus_momentum}"
            )
        self.consensus_momentum = float(consensus_momentum)

    def build(self, opt: Any, var_list: list) -> None:
        super().build(opt, var_list)
        self.previous = [
            opt.add_variable_from_reference(v, name="consensus_previous") for v in var_list
        ]
        self.replicas.append(self.previous)

    def after_inner(self, opt: Any, variables: list) -> None:
        """After the inner step gave v_{k+1}: x <- v_{k+1} + mu (v_{k+1} - v_k)."""
        mu = self.consensus_momentum
        for x, v in zip(variables, self.previous):
            new = tf.identity(x.value)
            opt.assign(x, new + tf.cast(mu, new.dtype) * (new - v.value))
            opt.assign(v, new)
