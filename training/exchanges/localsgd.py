"""Local SGD (periodic model averaging).

After every tau inner steps ((t + 1) mod tau == 0), every worker is set to the workers' mean,
x_i <- (1/p) sum_j x_j, with one all-reduce; the mean is also kept as the center, which is
evaluated.
"""

from __future__ import annotations

from typing import Any

from training.exchanges.base import Exchange, collectives


class LocalSGD(Exchange):
    name = "localsgd"
    when = "after"
    evaluated = "center"
    arguments = {"tau": "tau"}

    def round(self, opt: Any, variables: list) -> Any:
        mean, nbytes, seconds = collectives.timed_mean(
            [x.value for x in variables], "easgd_localsgd"
        )
        for x, c, m in zip(variables, self.center, mean):
            opt.assign(c, m)
            opt.assign(x, m)
        return opt.record(nbytes, seconds)
