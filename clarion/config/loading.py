"""Reading the settings: clarion.yaml, CLARION_* overrides, messages naming the wrong key, `describe()`."""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from clarion.config.base import CONFIG_ENV, DEFAULT_FILE, ENV_PREFIX, TEST_ENV_PREFIX
from clarion.config.sections import Settings
from clarion.config.sources import SOURCE_KINDS, DatabaseSource, FilesSource, HubSpotSource
from clarion.errors import ConfigError


def find_config_file(explicit: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The file to read: --config, then $CLARION_CONFIG, then ./clarion.yaml if present."""
    env = os.environ if env is None else env
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError([f"config file {path} does not exist: check --config / {CONFIG_ENV}"])
        return path
    if env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
        if not path.is_file():
            raise ConfigError([f"{CONFIG_ENV}={path} names a file that does not exist"])
        return path
    default = Path.cwd() / DEFAULT_FILE
    return default if default.is_file() else None


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the file, apply environment then command-line overrides, validate, fail with every problem.

    ``overrides`` is a nested mapping (``{"generate": {"customers": 500}}``) from command-line flags;
    ``None`` values in it are ignored so unset flags do not mask the file.
    """
    env = os.environ if env is None else env
    file = find_config_file(path, env)
    data: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    source_name = str(file) if file else "default settings"
    if file is not None:
        data = _read_yaml(file)
        for key_path in _leaf_paths(data):
            origin[key_path] = str(file.name)
    problems: list[str] = []
    for name, spec in Settings.model_fields.items():
        # an override of one key inside a defaulted mapping (CLARION_SOURCES__CRM__PATH) edits the
        # default mapping rather than replacing it
        overridden = any(k.startswith(f"{ENV_PREFIX}{name.upper()}__") for k in env)
        if get_origin(spec.annotation) is dict and spec.default_factory and name not in data and overridden:
            data[name] = json.loads(json.dumps(spec.default_factory(), default=str))
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV or name.startswith(TEST_ENV_PREFIX):
            continue
        key_path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        problem = _check_known_path(key_path, name)
        if problem:
            problems.append(problem)
            continue
        _set_path(data, key_path, _parse_scalar(raw))
        origin[key_path] = name
    for key_path, value in _leaf_items(overrides or {}):
        if value is None:
            continue
        _set_path(data, key_path, value)
        origin[key_path] = "command line"
    if problems:
        raise ConfigError(problems, source=source_name)
    root = file.parent.resolve() if file else Path.cwd()
    for name, spec in Settings.model_fields.items():
        # a section left out is validated from {} so its defaults get the same path handling
        if isinstance(spec.annotation, type) and issubclass(spec.annotation, BaseModel):
            data.setdefault(name, {})
    try:
        settings = Settings.model_validate(data, context={"root": root})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origin), source=source_name) from None
    found = _mapping_problems(settings)
    if found:
        raise ConfigError(found, source=source_name)
    return settings


def _mapping_problems(settings: Settings) -> list[str]:
    """Every `sql:` mapping parses, and (when its folder is there) reads its tables and gives the
    entity's required columns in types the contract can take: checked before anything runs."""
    from clarion.contract import ENTITIES
    from clarion.extract import mapping

    found: list[str] = []
    for name, source in settings.sources.items():
        if not isinstance(source, FilesSource):
            continue
        for entity, spec in (source.entities or {}).items():
            if spec.sql is not None:
                found += mapping.problems(name, entity, source.path, spec, ENTITIES[entity])
    return found


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            [f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"], source=str(file)
        ) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            [f"the top level must be a mapping of sections, found {type(loaded).__name__}"], source=str(file)
        )
    return loaded


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def _leaf_paths(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    return [path for path, _ in _leaf_items(data, prefix)]


def _leaf_items(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    items: list[tuple[tuple[str, ...], Any]] = []
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            items += _leaf_items(value, path)
        else:
            items.append((path, value))
    return items


def _set_path(data: dict[str, Any], key_path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in key_path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[key_path[-1]] = value


def _model_at(key_path: tuple[str, ...]) -> tuple[type[BaseModel] | None, str | None]:
    """Walk the settings classes along a key path; return the last model and the first unknown key.

    A mapping (``sources``) takes any key; below a union of models (a source of some kind) the
    path cannot be checked here, and validation reports what is wrong instead.
    """
    model: type[BaseModel] = Settings
    i = 0
    while i < len(key_path):
        part = key_path[i]
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return model, part
        annotation = field.annotation
        if get_origin(annotation) is dict and i + 1 < len(key_path):
            i += 1  # the mapping's key
            value_type = get_args(annotation)[1]
            annotation = value_type
            if get_origin(annotation) is Annotated:
                annotation = get_args(annotation)[0]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        elif any(isinstance(a, type) and issubclass(a, BaseModel) for a in get_args(annotation)):
            return None, None  # a union of models: validation judges the rest
        elif i < len(key_path) - 1:
            return None, key_path[i + 1]
        i += 1
    return model, None


def _model_for(raw_loc: tuple[str, ...]) -> type[BaseModel] | None:
    """The settings class at an error's location, following the union tag pydantic puts in it."""
    if len(raw_loc) >= 3 and raw_loc[0] == "sources" and raw_loc[2] in SOURCE_KINDS:
        by_kind = {"files": FilesSource, "postgres": DatabaseSource, "mariadb": DatabaseSource}
        model: type[BaseModel] = by_kind.get(raw_loc[2], HubSpotSource)
        for part in raw_loc[3:]:
            field = model.model_fields.get(part)
            annotation = field.annotation if field else None
            if get_origin(annotation) is dict:
                annotation = get_args(annotation)[1]
            if (
                get_origin(annotation) in (None,)
                and isinstance(annotation, type)
                and issubclass(annotation, BaseModel)
            ):
                model = annotation
            else:
                args = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
                if not args:
                    continue
                model = args[0]
        return model
    return _model_at(raw_loc)[0]


def _check_known_path(key_path: tuple[str, ...], env_name: str) -> str | None:
    model, unknown = _model_at(key_path)
    if unknown is None:
        return None
    dotted = ".".join(key_path)
    if model is None:
        return f"{env_name} ({dotted}): '{unknown}' is below a plain value, not a section"
    return f"{env_name} ({dotted}): unknown key '{unknown}'{_suggest(unknown, model)}"


def _suggest(key: str, model: type[BaseModel]) -> str:
    valid = list(model.model_fields)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{hint} Valid keys here: {', '.join(valid)}"


def _explain(exc: ValidationError, origin: Mapping[tuple[str, ...], str]) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(str(p) for p in err["loc"])
        if len(loc) > 2 and loc[0] == "sources" and loc[2] in SOURCE_KINDS:
            loc = loc[:2] + loc[3:]  # pydantic puts the union's tag in the path; people do not write it
        dotted = ".".join(loc) or "(top level)"
        where = origin.get(loc)
        where_txt = f" (from {where})" if where else ""
        if err["type"] == "extra_forbidden":
            model = _model_for(tuple(str(p) for p in err["loc"][:-1])) or Settings
            problems.append(f"{dotted}{where_txt}: unknown key '{loc[-1]}'{_suggest(loc[-1], model)}")
            continue
        given = err.get("input")
        if loc and loc[-1] == "[key]":
            parent = ".".join(loc[:-2])  # the mapping that holds the key, not the key itself
            problems.append(f"{parent}{where_txt}: {given!r} is not allowed here; {_expected(err)}")
            continue
        if err["type"] == "missing" or isinstance(given, dict):
            problems.append(f"{dotted}{where_txt}: {_expected(err)}")
            continue
        problems.append(f"{dotted}{where_txt}: {_expected(err)}, got {_masked(given)}")
    return problems


def _masked(given: Any) -> str:
    """A rejected value as the message shows it: a URL's user:password@ masked (never echo a secret)."""
    return re.sub(r"(://)[^/@\s]*@", r"\1***@", repr(given))


def _expected(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "union_tag_invalid":
        return f"expected kind one of {', '.join(SOURCE_KINDS)}"
    if kind == "union_tag_not_found":
        return f"needs a 'kind': one of {', '.join(SOURCE_KINDS)}"
    if kind == "missing":
        return "is required"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}"
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return "expected a whole number"
    if kind in {"float_parsing", "float_type"}:
        return "expected a number"
    if kind in {"bool_parsing", "bool_type"}:
        return "expected true or false"
    if kind.startswith("date"):
        return "expected a date as YYYY-MM-DD"
    if kind == "model_type" or kind == "dict_type":
        return "expected a section (a mapping of keys)"
    if kind == "string_pattern_mismatch":
        return "expected a size such as 4GB or 512MB"
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        return err["msg"].replace("Input should be", "expected a value")
    return err["msg"].replace("Input should be", "expected")


def describe() -> list[dict[str, Any]]:
    """Every key with its type, default and meaning, for `clarion config --keys` and the README."""
    rows: list[dict[str, Any]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            dotted = f"{prefix}{name}"
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, dotted + ".")
                continue
            rows.append(
                {
                    "key": dotted,
                    "env": ENV_PREFIX + dotted.upper().replace(".", "__"),
                    "default": field.default if not isinstance(field.default, Path) else str(field.default),
                    "description": field.description or "",
                }
            )

    walk(Settings, "")
    return rows
