"""The model registry verbs: clarion models list, show, promote, rollback."""

from __future__ import annotations

from typing import Any

import click

from clarion.cli.app import AppContext, _emit, cli


@cli.group()
def models() -> None:
    """The model registry (var/registry): versions, model cards, promotion and rollback."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def models_list(app: AppContext, as_json: bool) -> None:
    """Every version with its out-of-time validation; * marks the promoted one."""
    from clarion.segment.views import models_listing, models_text

    listing = models_listing(app.settings())
    _emit(listing, as_json, models_text(listing))


@models.command("show")
@click.argument("version", required=False)
@click.option(
    "--model",
    "model",
    default="purchase_propensity",
    show_default=True,
    metavar="NAME",
    help="Which model's registry: purchase_propensity (the churn model), recommender, ...",
)
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
@click.pass_obj
def models_show(app: AppContext, version: str | None, model: str, as_json: bool) -> None:
    """The model card of VERSION [the promoted one]: use, data, metrics, calibration, drivers, fairness.

    \b
    Examples:
      clarion models show
      clarion models show --model recommender     # the recommender's evaluation and choice
    """
    from models.registry import Registry, RegistryError

    root = app.settings().var_dir / "registry"
    if not (root / model).is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise RegistryError(
            f"no model {model!r} in the registry {root}; models there: {', '.join(known) or 'none yet'} "
            "(`clarion segment` registers purchase_propensity, `clarion recommend` the recommender)"
        )
    reg = Registry(root, model=model)
    chosen = reg.get(version) if version else reg.promoted()
    if chosen is None:
        raise RegistryError(
            f"no {model} version is promoted yet: `clarion run` registers and promotes the first"
        )
    if as_json:
        click.echo((chosen.path / "card.json").read_text())
    else:
        click.echo((chosen.path / "card.md").read_text())
        click.echo(f"(files: {chosen.path})")


def _change_registry(app: AppContext, verb: str, change: Any) -> Any:
    """Change which version is promoted, as a writer: never while a run is scoring with it."""
    from clarion.audit import record_registry_change
    from clarion.warehouse import Warehouse
    from models.registry import Registry

    settings = app.settings()
    with Warehouse.from_settings(settings).writing(f"clarion models {verb}"):
        version = change(Registry(settings.var_dir / "registry"))
        record_registry_change(settings, verb, version.name)
        return version


@models.command("promote")
@click.argument("version")
@click.pass_obj
def models_promote(app: AppContext, version: str) -> None:
    """Make VERSION the one that scores customers (from the next `clarion segment`)."""
    v = _change_registry(app, "promote", lambda reg: reg.promote(version, "by hand (clarion models promote)"))
    click.echo(f"promoted {v.name}; the next `clarion segment` scores with it")


@models.command("rollback")
@click.pass_obj
def models_rollback(app: AppContext) -> None:
    """Promote again the version that was promoted before the current one.

    The promotion history is a stack: after v1, v2 and v3 were promoted, rollback reaches v2, and a
    second rollback v1."""
    v = _change_registry(app, "rollback", lambda reg: reg.rollback())
    click.echo(f"rolled back: {v.name} is promoted again; the next `clarion segment` scores with it")
