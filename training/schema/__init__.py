"""The one configuration schema, and the registries it reads.

The training program, the command line, the REST API and the UI all validate with it, so a bad
value is refused the same way everywhere. It imports neither TensorFlow nor Horovod: the job
service and the UI import it and must start in a blink (a test holds it to that).
"""

from training.schema.advice import stability_bound, topology_problem, warnings_for
from training.schema.experiment import (
    DATASETS,
    MODELS,
    CheckpointConfig,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    ResourcesConfig,
    TrainingConfig,
)
from training.schema.fields import EPOCHS_MAX, SEED_MAX, STEPS_MAX
from training.schema.loading import (
    apply_overrides,
    load_config_file,
    load_yaml_text,
    parse_config,
    parse_override,
    read_config_text,
    resolve,
)
from training.schema.optimizer import Algorithm, InnerOptimizer, OptimizerConfig
from training.schema.params import (
    fields_for,
    flatten,
    recorded_params,
    resolved_params,
    schema_default,
    used_params,
    visible_fields,
)
from training.schema.problems import ConfigError, check_shape
from training.schema.zoo import (
    DatasetEntry,
    ModelEntry,
    RegistryChoice,
    register_dataset,
    register_model,
)

__all__ = [
    "DATASETS",
    "EPOCHS_MAX",
    "MODELS",
    "SEED_MAX",
    "STEPS_MAX",
    "Algorithm",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "DatasetEntry",
    "ExperimentConfig",
    "InnerOptimizer",
    "ModelConfig",
    "ModelEntry",
    "OptimizerConfig",
    "RegistryChoice",
    "ResourcesConfig",
    "TrainingConfig",
    "apply_overrides",
    "check_shape",
    "fields_for",
    "flatten",
    "load_config_file",
    "load_yaml_text",
    "parse_config",
    "parse_override",
    "read_config_text",
    "recorded_params",
    "resolved_params",
    "schema_default",
    "register_dataset",
    "register_model",
    "resolve",
    "stability_bound",
    "topology_problem",
    "used_params",
    "visible_fields",
    "warnings_for",
]
