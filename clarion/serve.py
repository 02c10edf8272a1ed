"""Serve the deployments of prefect.yaml from one process: no work pool, no worker.

`prefect deploy` plus a worker is one way to schedule Clarion; `clarion serve` is the other, for one
machine. Both read the same prefect.yaml, so names, descriptions, parameters, schedules and
deployment triggers (automations that start a run when an event arrives) cannot drift between them.
What only a worker needs (``work_pool``, the pull steps) is ignored here.

Importing this module imports Prefect: call `clarion.runtime.prepare_prefect` before.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events import DeploymentTriggerTypes
from prefect.schedules import Cron
from pydantic import TypeAdapter, ValidationError

import clarion
from clarion.config import Settings
from clarion.errors import ClarionError

log = logging.getLogger("clarion.serve")

REPO = Path(clarion.__file__).resolve().parents[1]
PREFECT_YAML = "prefect.yaml"
# keys of a prefect.yaml deployment that serving uses, and the ones that only matter to a worker
USED = {"name", "description", "entrypoint", "parameters", "schedules", "tags", "triggers"}
WORKER_ONLY = {"work_pool", "pull", "build", "push", "job_variables"}
# the keys of a cron schedule in prefect.yaml that prefect.schedules.Cron accepts
CRON_KEYS = {"cron", "timezone", "day_or", "active", "parameters", "slug"}
# a prefect.yaml trigger is Prefect's own deployment trigger (type: event, metric, compound, sequence)
TRIGGERS: TypeAdapter[Any] = TypeAdapter(DeploymentTriggerTypes)


class ServeError(ClarionError):
    """prefect.yaml cannot be served as it is."""


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of prefect.yaml, its flow imported and its parameters resolved."""

    name: str
    entrypoint: str
    flow: Flow[..., Any]
    description: str | None
    parameters: dict[str, Any]
    schedules: list[dict[str, Any]]
    tags: list[str]
    triggers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        """What `prefect deployment run` takes: flow name / deployment name."""
        return f"{self.flow.name}/{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "full_name": self.full_name,
            "flow": self.flow.name,
            "entrypoint": self.entrypoint,
            "description": self.description,
            "parameters": self.parameters,
            "schedules": self.schedules,
            "tags": self.tags,
            "triggers": self.triggers,
        }

    def to_deployment(self, paused: bool = False) -> RunnerDeployment:
        return self.flow.to_deployment(
            name=self.name,
            description=self.description,
            parameters=self.parameters,
            schedules=[_cron(s) for s in self.schedules],
            tags=self.tags,
            # automations owned by the deployment: registering it again replaces them, never duplicates
            triggers=[TRIGGERS.validate_python(t) for t in self.triggers],
            paused=paused,
            # recorded as flows.pipeline.pipeline: importable from any folder, unlike a relative file path
            entrypoint_type=EntrypointType.MODULE_PATH,
        )


def find_prefect_yaml(config_path: Path | None) -> Path:
    """A project folder may carry its own prefect.yaml beside clarion.yaml; else the repository's."""
    if config_path is not None:
        beside = Path(config_path).resolve().parent / PREFECT_YAML
        if beside.is_file():
            return beside
    return REPO / PREFECT_YAML


def specs(config_path: Path | None, path: Path | None = None) -> list[DeploymentSpec]:
    """Read and check every deployment of prefect.yaml (``path``, default `find_prefect_yaml`).

    A ``config_path`` parameter becomes the absolute path of the config file in use (None without
    one), so a served run reads the same settings whatever folder the runner started it in.
    """
    path = Path(path) if path is not None else find_prefect_yaml(config_path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ServeError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ServeError(f"{path} is not valid YAML: {exc}") from None
    entries = document.get("deployments") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ServeError(
            f"{path} has no `deployments:` list; add at least one deployment with a name and entrypoint"
        )
    config = str(Path(config_path).resolve()) if config_path is not None else None
    result: list[DeploymentSpec] = []
    for index, entry in enumerate(entries):
        where = f"{path} deployments[{index}]"
        if not isinstance(entry, dict):
            raise ServeError(f"{where} is not a mapping; give it at least `name:` and `entrypoint:`")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ServeError(
                f"{where}: `name` is missing or empty; give the deployment a name, e.g. `name: daily`"
            )
        where = f"{where} ({name})"
        for key in sorted(set(entry) - USED - WORKER_ONLY):
            log.warning("%s: key %r is not used by clarion serve", where, key, extra={"send_to_api": False})
        parameters = entry.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ServeError(f"{where}: `parameters` must be a mapping of flow parameter names to values")
        if "config_path" in parameters:
            parameters = {**parameters, "config_path": config}
        result.append(
            DeploymentSpec(
                name=name,
                entrypoint=entry.get("entrypoint") or "",
                flow=_load_flow(entry.get("entrypoint"), where),
                description=entry.get("description"),
                parameters=parameters,
                schedules=_schedules(entry.get("schedules"), where),
                tags=list(entry.get("tags") or []),
                triggers=_triggers(entry.get("triggers"), where),
            )
        )
    seen: set[str] = set()
    for spec in result:
        if spec.full_name in seen:
            raise ServeError(
                f"{path}: two deployments are called {spec.full_name!r}; give each deployment of a flow "
                "its own name"
            )
        seen.add(spec.full_name)
    return result


def deployments(
    settings: Settings,
    config_path: Path | None,
    path: Path | None = None,
    *,
    paused: bool = False,
) -> list[RunnerDeployment]:
    """One RunnerDeployment per prefect.yaml deployment, ready for `prefect.serve`.

    ``settings`` are the validated settings the runs will use: asking for them makes the caller load
    clarion.yaml first, so a broken config stops `clarion serve` before anything is registered.
    ``paused`` registers the deployments with their schedules off (runs only when started by hand).
    """
    return [spec.to_deployment(paused=paused) for spec in specs(config_path, path)]


def serve(
    settings: Settings,
    config_path: Path | None,
    *,
    limit: int | None = None,
    pause_schedules: bool = False,
    path: Path | None = None,
) -> None:
    """Register the deployments, then start their flow runs from this process until Ctrl-C.

    ``limit`` caps concurrent flow runs; left out, Prefect's runner default applies
    (PREFECT_RUNNER_PROCESS_LIMIT). Passing None to prefect.serve would mean *no* limit instead.
    On shutdown Prefect pauses the deployments' schedules; the next `clarion serve` turns them on
    again (unless ``pause_schedules``).
    """
    from prefect import serve as prefect_serve
    from prefect.settings import get_current_settings

    served = deployments(settings, config_path, path, paused=pause_schedules)
    if not get_current_settings().api.url:
        # about this process, not a flow run: send_to_api=False keeps Prefect's API log handler off it
        log.warning(
            "PREFECT_API_URL is not set: Prefect starts a temporary server for this process alone, and it "
            "disappears when serving stops. For a lasting server (its UI, `prefect deployment run` from "
            "another terminal) run `PREFECT_HOME=var/prefect prefect server start` "
            "in another terminal and set PREFECT_API_URL=http://127.0.0.1:4200/api.",
            extra={"send_to_api": False},
        )
    prefect_serve(*served, **({"limit": limit} if limit is not None else {}))


def _load_flow(entrypoint: Any, where: str) -> Flow[..., Any]:
    """'flows/pipeline.py:pipeline' -> the flow object `pipeline` of the module flows.pipeline."""
    example = "e.g. `entrypoint: flows/pipeline.py:pipeline`"
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        raise ServeError(f"{where}: `entrypoint` is missing; name the flow as FILE.py:FUNCTION, {example}")
    file, _, attribute = entrypoint.partition(":")
    if not file.endswith(".py") or not attribute:
        raise ServeError(f"{where}: entrypoint {entrypoint!r} is not FILE.py:FUNCTION; {example}")
    module_name = file[: -len(".py")].replace("/", ".").replace("\\", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ServeError(
            f"{where}: entrypoint {entrypoint!r} cannot be imported as module {module_name} ({exc}); "
            f"point it at a flow file of this repository relative to its root, {example}"
        ) from None
    flow = getattr(module, attribute, None)
    if not isinstance(flow, Flow):
        found = "nothing" if flow is None else f"a {type(flow).__name__}"
        raise ServeError(
            f"{where}: entrypoint {entrypoint!r} names {found} in {module_name}, not a Prefect flow; "
            f"use the name of a function decorated with @flow, {example}"
        )
    return flow


def _schedules(value: Any, where: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ServeError(f'{where}: `schedules` must be a list, e.g. `- cron: "0 5 * * *"`')
    result = []
    for i, schedule in enumerate(value):
        if not isinstance(schedule, dict) or not isinstance(schedule.get("cron"), str):
            raise ServeError(
                f"{where}: schedules[{i}] has no `cron:`; clarion serve takes cron schedules, "
                'e.g. `- cron: "0 5 * * *"` with `timezone: UTC`'
            )
        unknown = sorted(set(schedule) - CRON_KEYS)
        if unknown:
            raise ServeError(
                f"{where}: schedules[{i}] has keys {unknown} that a cron schedule does not take; "
                f"use only {sorted(CRON_KEYS)}"
            )
        try:
            _cron(schedule)
        except ValueError as exc:
            raise ServeError(f"{where}: schedules[{i}] cron {schedule['cron']!r} is invalid: {exc}") from None
        result.append(dict(schedule))
    return result


def _triggers(value: Any, where: str) -> list[dict[str, Any]]:
    """Prefect's deployment triggers, checked here so a typo fails before anything is registered
    (Prefect itself ignores an unknown key, and a misspelt `expect` would match every event)."""
    if value is None:
        return []
    example = "e.g. `- type: event` with `expect: [clarion.trigger.fired]` and `parameters:`"
    if not isinstance(value, list):
        raise ServeError(f"{where}: `triggers` must be a list of Prefect deployment triggers, {example}")
    result = []
    for i, spec in enumerate(value):
        if not isinstance(spec, dict):
            raise ServeError(f"{where}: triggers[{i}] is not a mapping; {example}")
        try:
            trigger = TRIGGERS.validate_python(dict(spec))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'trigger'}: {e['msg']}" for e in exc.errors()
            )
            raise ServeError(
                f"{where}: triggers[{i}] is not a Prefect deployment trigger ({problems})"
            ) from None
        unknown = sorted(set(spec) - set(type(trigger).model_fields))
        if unknown:
            raise ServeError(
                f"{where}: triggers[{i}] has keys {unknown} that a {spec.get('type', 'event')} trigger "
                f"does not take; use some of {sorted(type(trigger).model_fields)}"
            )
        result.append(dict(spec))
    return result


def _cron(schedule: dict[str, Any]) -> Any:
    return Cron(schedule["cron"], **{k: v for k, v in schedule.items() if k != "cron"})
