"""Launch: a form generated from the training schema, or the same configuration as YAML."""

from __future__ import annotations

import re
from functools import partial

import streamlit as st
import yaml

from service.client import ApiError
from training.schema import (
    ConfigError,
    ExperimentConfig,
    load_yaml_text,
    parse_config,
    visible_fields,
    warnings_for,
)
from training.schema.algorithms import REGISTRY
from ui import address, form, state, your_code
from ui.navigation import PATHS
from ui.sweep_form import sweep_these_fields

SPECS = form.field_specs()
SECTIONS = [
    ("Experiment", ("name", "seed")),
    ("Data", ("data.",)),
    ("Model", ("model.",)),
    ("Algorithm", ("optimizer.",)),
    ("Training", ("training.", "checkpoint.")),
    ("Resources", ("resources.",)),
]


def _key(path: str) -> str:
    return f"form.{path}"


SAVED = "form.saved"  # survives runs in which a widget is not drawn (Streamlit drops those)
MODES = ("Form", "YAML", "Your code")
# A YAML text longer than this in the address is not one typed here.
YAML_ADDRESS_MAX = 16384


def _load(config: dict) -> None:
    saved = form.widget_values(config)
    for path, value in saved.items():
        st.session_state[_key(path)] = value
    st.session_state[SAVED] = saved
    st.session_state.pop("form.yaml", None)  # rebuilt from the form when next shown


def _text_up_to(limit: int):
    def read(text: str) -> str:
        if len(text) > limit:
            raise ValueError("too long")
        return text

    return read


def _yaml_address(text: str | None) -> str | None:
    """The YAML editor's text, while it is shown and says more than the form does."""
    if st.session_state.get("form.mode") != "YAML" or not text:
        return None
    return None if text == yaml.safe_dump(_form_config()[1], sort_keys=False) else text


# The page's state in its address: each field that differs from its default
# (`?optimizer.tau=4&resources.workers=3`), the mode, the working directory, the YAML edited.
ADDRESS = [
    *(
        address.Param(
            path, _key(path), partial(form.address_value, spec), partial(form.address_text, spec)
        )
        for path, spec in SPECS.items()
    ),
    address.Param(
        "mode", "form.mode", address.one_of(MODES), lambda m: None if m in (None, "Form") else m
    ),
    address.Param(
        "workdir", "form.workdir", _text_up_to(form.ADDRESS_TEXT_MAX), lambda t: t or None
    ),
    *your_code.address_params(),
    address.Param("yaml", "form.yaml", _text_up_to(YAML_ADDRESS_MAX), _yaml_address),
]


def _restore() -> None:
    for path, value in st.session_state[SAVED].items():
        if _key(path) not in st.session_state:
            st.session_state[_key(path)] = value


def _restore_address() -> None:
    """The address's values (a reload, a link), into the widgets and what the form remembers."""
    address.restore(ADDRESS)
    for path in SPECS:
        st.session_state[SAVED][path] = st.session_state[_key(path)]


def _remember(paths) -> None:
    for path in paths:
        if _key(path) in st.session_state:
            st.session_state[SAVED][path] = st.session_state[_key(path)]


def _value(path: str):
    spec = SPECS[path]
    raw = st.session_state.get(_key(path))
    if spec.kind == "int_list":
        text = (raw or "").strip()
        if not text:
            return None
        try:
            return [int(v) for v in text.replace(",", " ").split()]
        except ValueError:
            return text  # the schema explains what is wrong
    if spec.kind == "yaml":
        text = (raw or "").strip()
        try:
            return load_yaml_text(text, spec.path) if text else None
        except ConfigError:
            return text  # the schema explains what is wrong
    if spec.kind == "text":
        return raw or None
    return raw


def _form_config() -> tuple[set[str], dict]:
    """The paths the form shows for its current choices, and the configuration they make."""
    shown = visible_fields(form.nested({p: _value(p) for p in SPECS}))
    return shown, form.nested({p: _value(p) for p in SPECS if p in shown})


def _asked_service(config: ExperimentConfig | None) -> tuple[ConfigError | None, str | None]:
    """What the service says of the job before it is queued: its refusal (the schema's, and the
    scheduler's own rule for whether it can ever place the job), or why it could not be asked."""
    if config is None:
        return None, None
    try:
        state.client().check(config.to_dict())
    except ApiError as exc:
        if exc.status == 422 and isinstance(exc.detail, list):
            return ConfigError([str(d.get("msg", d)) for d in exc.detail]), None
        return None, str(exc)
    return None, None


def _widget(spec: form.FieldSpec, blank: str | None) -> None:
    """The field's widget; `blank` is what the field stands for when left empty, shown in it."""
    key = _key(spec.path)
    if spec.kind == "choice":
        default = blank or "the algorithm's default"
        st.selectbox(
            spec.label,
            spec.choices,
            key=key,
            help=spec.full_help,
            placeholder=default,  # what Streamlit shows while the value is None
            format_func=lambda v: default if v is None else str(v),
        )
    elif spec.kind in ("int", "float"):
        # value=None lets an optional field stay empty (its default); the value itself
        # always comes from session state.
        extra = {"value": None} if spec.optional else {}
        st.number_input(
            spec.label,
            key=key,
            step=spec.step,
            format="%d" if spec.kind == "int" else "%g",
            help=spec.full_help,
            placeholder=blank,
            **extra,
        )
    elif spec.kind == "bool":
        st.checkbox(spec.label, key=key, help=spec.full_help)
    elif spec.kind == "int_list":
        shown = ", ".join(str(v) for v in spec.default or [])
        st.text_input(
            spec.label,
            key=key,
            help=spec.full_help + "; comma-separated",
            placeholder=f"{shown} (the default)" if shown else None,
        )
    else:
        st.text_input(spec.label, key=key, help=spec.full_help, placeholder=blank)


def _why_not(problems: list[str]) -> str:
    """Why Launch is disabled, in one line beside it: the first problems, and how many more,
    as Markdown that shows them as they are (values received may hold `*` or `_`)."""
    shown = "; ".join(problems[:3])
    more = len(problems) - 3
    text = shown + (f"; and {more} more, shown above" if more > 0 else "")
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>$~:])", r"\\\1", text)


if state.CLONE in st.session_state:
    st.session_state["form.pending"] = st.session_state.pop(state.CLONE)
    st.toast("Loaded the run's configuration")
if SAVED not in st.session_state:
    _load(ExperimentConfig().to_dict())
_restore()
_restore_address()
st.session_state.setdefault("form.mode", "Form")

st.title("Launch a training job")
if "form.pending" in st.session_state:
    _load(st.session_state.pop("form.pending"))
    st.session_state["form.mode"] = "Form"
mode = st.segmented_control("Edit with", MODES, key="form.mode")
your_code.defaults()
workdir_text = ""

if mode == "Your code":
    st.caption(
        "Your own training script, run under horovodrun by the job service; with "
        "training.tracking.KerasCallback in it, its run is recorded and a lost worker relaunches "
        "it from its checkpoint."
    )
    data, config, problems = your_code.script_config()
    workdir_text = st.session_state["code.dir"]
    for p in problems:
        st.error(p)
    refused_here, unasked = _asked_service(config)
    for p in refused_here.problems if refused_here else []:
        st.error(p)
elif mode == "YAML":
    if "form.yaml" not in st.session_state:
        st.session_state["form.yaml"] = yaml.safe_dump(_form_config()[1], sort_keys=False)
    text = st.text_area(
        "Configuration (YAML)",
        key="form.yaml",
        height=420,
        help="The same schema as the form and `python -m training --config`.",
    )
    try:
        data = load_yaml_text(text, "YAML") or {}
        config = parse_config(data)
        problems: list[str] = []
    except ConfigError as exc:
        config, problems = None, exc.problems
    refused_here, unasked = _asked_service(config)
    for p in problems + (refused_here.problems if refused_here else []):
        st.error(p)
    if config is not None and st.button("Edit this in the form"):
        # Widgets of this run cannot change now: load on the next run, before they exist.
        st.session_state["form.pending"] = config.to_dict()
        st.rerun()
else:
    shown, data = _form_config()
    refused: ConfigError | None = None
    try:
        config = parse_config(data)
    except ConfigError as exc:
        config, refused = None, exc
    refused_here, unasked = _asked_service(config)
    errors = form.errors_by_field(refused)
    for path, reasons in form.errors_by_field(refused_here).items():
        errors.setdefault(path, []).extend(reasons)
    placed: set[str] = set()
    blank = form.blank_defaults(data)
    columns = st.columns(3)
    for i, (title, prefixes) in enumerate(SECTIONS):
        with columns[i % 3].container(border=True):
            st.markdown(f"**{title}**")
            for path, spec in SPECS.items():
                if path in shown and any(path == p or path.startswith(p) for p in prefixes):
                    _widget(spec, blank.get(path))
                    if path == "optimizer.algorithm" and _value(path) in REGISTRY:
                        st.caption(REGISTRY[_value(path)].description)
                    for reason in errors.get(path, []):
                        st.error(f"{spec.label}: {reason}")
                    placed.add(path)
    _remember(placed)
    for path, reasons in errors.items():
        if path not in placed:
            for reason in reasons:
                st.error(f"{path}: {reason}" if path else reason)
    workdir_text = st.text_input(
        "Working directory (optional: for model.builder and data.loader of your own)",
        key="form.workdir",
        help=your_code.DIR_HELP,
    )
    if problem := your_code.working_dir_problem(workdir_text):
        st.error(problem)
    with st.expander("The same configuration as YAML"):
        st.code(
            yaml.safe_dump(config.to_dict() if config else data, sort_keys=False), language="yaml"
        )

if config is not None:
    for w in warnings_for(config):
        st.warning(w)

if unasked:
    st.warning(f"The job service could not check this job: {unasked}")
address.publish(ADDRESS)
if mode == "Your code":
    blockers = list(problems)
elif config is None:
    blockers = problems if mode == "YAML" else list(refused.problems if refused else [])
else:
    blockers = []
blockers += refused_here.problems if refused_here else []
if problem := your_code.working_dir_problem(workdir_text):
    blockers.append(problem)
blockers = list(dict.fromkeys(blockers)) or (
    ["the configuration is incomplete"] if config is None else []
)
button, why = st.columns([1, 7], vertical_alignment="center")
pressed = button.button("Launch", type="primary", disabled=bool(blockers))
if blockers:
    why.markdown(f":material/block: **Launch is disabled:** {_why_not(blockers)}")
if pressed:
    try:
        submitted = config.to_dict()
        if workdir_text.strip():
            with st.spinner("Uploading the working directory"):
                submitted["code"] = your_code.upload(workdir_text)
        job = state.client().submit(submitted, source="ui")
    except (ApiError, your_code.WorkdirError) as exc:
        st.error(f"The service refused the job: {exc}")
    else:
        st.session_state[state.LAUNCHED] = job

job = st.session_state.get(state.LAUNCHED)
if job:
    st.success(
        f"Job {job['id']} queued ({job['workers']} workers): it becomes run job-{job['id']}."
    )
    st.page_link(
        PATHS["jobs"],
        label=f"Follow job {job['id']} on the Jobs page",
        icon=":material/arrow_forward:",
    )

if config is not None and mode != "Your code":
    sweep_these_fields(config, SPECS, visible_fields(config.to_dict()))

with st.expander("Start from an existing run (clone)"):
    try:
        runs = state.store().list_runs(limit=200)
    except Exception as exc:  # noqa: BLE001 - the form works without the store
        runs = []
        st.caption(f"run store unavailable: {exc}")
    if runs:
        picked = st.selectbox("Run", [r.id for r in runs], key="form.clone_from")
        if st.button("Load its configuration"):
            from ui.pages_common import run_config

            st.session_state["form.pending"] = run_config(state.store().get_run(picked))
            st.rerun()
    else:
        st.caption("No runs yet.")
