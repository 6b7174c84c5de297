"""Job commands of `easgd` (serve, submit, jobs, up)."""


def add_commands(sub, add) -> None:
    return None
