"""Every error a user can act on belongs to one family that says how to exit and answer."""

from __future__ import annotations

import importlib

import pytest

from db.errors import EasgdError

MODULES = [
    "db.engine",
    "db.query",
    "db.store",
    "training.schema",
    "training.zoo.data",
    "training.run.checkpoint",
    "service.settings",
    "service.client",
    "service.cli",
]


def _family() -> list[type[EasgdError]]:
    for name in MODULES:
        importlib.import_module(name)
    out, todo = [], [EasgdError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def test_each_module_declares_its_errors_in_the_family():
    names = {cls.__name__ for cls in _family()}
    for expected in (
        "StoreError",
        "NotFound",
        "StoreNotInitialized",
        "InvalidTransition",
        "StoreConfigError",
        "FilterError",
        "ConfigError",
        "DataError",
        "CheckpointError",
        "SettingsError",
        "ApiError",
        "CliError",
    ):
        assert expected in names


@pytest.mark.parametrize("cls", _family(), ids=lambda c: c.__name__)
def test_each_error_says_how_to_exit_and_answer(cls):
    assert cls.exit_code in (1, 2)
    assert 400 <= cls.http_status < 600


def test_the_statuses_that_clients_rely_on():
    from db.errors import InvalidTransition, NotFound, StoreError, StoreNotInitialized
    from service.client import ApiError
    from training.schema import ConfigError

    assert (NotFound.http_status, InvalidTransition.http_status) == (404, 409)
    assert StoreError.http_status == ConfigError.http_status == 422
    assert StoreNotInitialized.exit_code == 1
    assert ApiError("refused", status=422).exit_code == 2
    assert ApiError("down", status=None).exit_code == 1
    assert ConfigError(["seed: too big"]).cli_message() == "invalid configuration: seed: too big"
