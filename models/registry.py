"""The model registry: one folder per version under ``var/registry/<name>/``, and an index.

A version holds the production model (scores customers), the validation model (fitted on the
older snapshot: the one the metrics describe, kept so a later candidate can be compared with it on
its own validation data), the value model, the calibrators, ``meta.json`` (features, parameters,
data fingerprint, metrics) and the model card. ``index.json`` names the promoted version and keeps
every registration, promotion and rollback. Versions are written to a temporary folder and renamed
into place, so a crash never leaves half a version.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb

from clarion.errors import ClarionError
from models.train import Calibrator, Fitted


class RegistryError(ClarionError):
    exit_code = 2


@dataclass
class Version:
    name: str
    path: Path
    meta: dict[str, Any]

    def load(self, which: str = "production") -> Fitted:
        cal = json.loads((self.path / "calibrators.json").read_text())
        suffix = "" if which == "production" else "_validation"
        return Fitted(
            propensity=lgb.Booster(model_file=str(self.path / f"propensity{suffix}.txt")),
            calibrator=Calibrator.from_json(cal[which]),
            value=lgb.Booster(model_file=str(self.path / f"value{suffix}.txt")),
            calibration=cal.get(f"{which}_choice", {}),
        )


class Registry:
    def __init__(self, root: Path, model: str = "purchase_propensity") -> None:
        self.root = Path(root) / model
        self.model = model

    # -- reading ------------------------------------------------------------------------------
    def index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        if not path.exists():
            return {"model": self.model, "promoted": None, "events": []}
        return json.loads(path.read_text())

    def versions(self) -> list[Version]:
        if not self.root.exists():
            return []
        found = []
        for d in sorted(self.root.glob("v[0-9]*")):
            meta = d / "meta.json"
            if meta.exists():
                found.append(Version(d.name, d, json.loads(meta.read_text())))
        return found

    def get(self, name: str) -> Version:
        path = self.root / name
        if not (path / "meta.json").exists():
            known = ", ".join(v.name for v in self.versions()) or "none yet (run `clarion segment`)"
            raise RegistryError(f"no model version {name!r} in {self.root}; versions: {known}")
        return Version(name, path, json.loads((path / "meta.json").read_text()))

    def promoted(self) -> Version | None:
        name = self.index()["promoted"]
        return self.get(name) if name else None

    def promoted_for_reuse(self) -> Version | None:
        """The promoted version when a run may reuse what it chose (an evaluation, a k): None when
        none is promoted, the registry cannot be read (that only costs choosing again), or an
        erasure flagged it ``retrain_required`` (it chose with a person since erased in the data)."""
        try:
            current = self.promoted()
        except (RegistryError, ValueError, OSError):
            return None
        return None if current is None or current.meta.get("retrain_required") else current

    # -- writing ------------------------------------------------------------------------------
    def register(
        self,
        production: Fitted,
        validation: Fitted,
        meta: dict[str, Any],
        files: dict[str, str],
    ) -> Version:
        def save(tmp: Path) -> None:
            production.propensity.save_model(str(tmp / "propensity.txt"))
            production.value.save_model(str(tmp / "value.txt"))
            validation.propensity.save_model(str(tmp / "propensity_validation.txt"))
            validation.value.save_model(str(tmp / "value_validation.txt"))
            calibrators = {
                "production": production.calibrator.to_json(),
                "validation": validation.calibrator.to_json(),
                "production_choice": production.calibration,
                "validation_choice": validation.calibration,
            }
            (tmp / "calibrators.json").write_text(json.dumps(calibrators, indent=2))

        return self._write_version(meta, files, save)

    def register_files(
        self, meta: dict[str, Any], files: dict[str, str], folder: Path | None = None
    ) -> Version:
        """A version that is its card and metadata (the recommender refits on every run: what it
        keeps is the evaluation and what it chose, not a model file), plus the files of ``folder``
        when given (a content adapter's weights)."""

        def copy(tmp: Path) -> None:
            for path in sorted(Path(folder).iterdir()) if folder else []:
                if path.is_file():
                    shutil.copy2(path, tmp / path.name)

        return self._write_version(meta, files, copy)

    def _write_version(
        self, meta: dict[str, Any], files: dict[str, str], save: Callable[[Path], None]
    ) -> Version:
        """The next version: ``save`` writes its model files, then meta.json and the text files
        (``{version}`` filled in) go beside them, in a temporary folder renamed into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        existing = [int(v.name[1:]) for v in self.versions()]
        name = f"v{(max(existing) if existing else 0) + 1:04d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.root))
        try:
            save(tmp)
            meta = {**meta, "version": name, "model": self.model, "registered_at": _now()}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
            for filename, text in files.items():
                (tmp / filename).write_text(text.replace("{version}", name))
            tmp.rename(self.root / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._event("registered", name)
        return self.get(name)

    def promote(self, name: str, note: str = "") -> Version:
        version = _usable(self.get(name))
        index = self.index()
        index["promoted"] = name
        self._write_index(index)
        self._event("promoted", name, note)
        return version

    def promotion_history(self) -> list[str]:
        """The versions that scored customers, oldest first, as a stack: each promotion pushes, each
        rollback pops. So v1, v2, v3 promoted then rollback, rollback reaches v1 (not v2 again)."""
        stack: list[str] = []
        for event in self.index()["events"]:
            if event["action"] == "promoted":
                if not stack or stack[-1] != event["version"]:
                    stack.append(event["version"])
            elif event["action"] == "rolled_back_to":
                while stack and stack[-1] != event["version"]:
                    stack.pop()
                if not stack:
                    stack.append(event["version"])
        return stack

    def rollback(self) -> Version:
        """Promote again the version promoted before the current one, one step back each time."""
        index = self.index()
        current = index["promoted"]
        stack = self.promotion_history()
        if not current:
            raise RegistryError("nothing to roll back to: no version is promoted")
        if len(stack) < 2:
            raise RegistryError(
                f"nothing to roll back to: {current} is the first version in the promotion history "
                f"({' -> '.join(stack) or current}); `clarion models promote VERSION` picks any version"
            )
        target = stack[-2]
        _usable(self.get(target))
        index["promoted"] = target
        self._write_index(index)
        self._event("rolled_back_to", target, f"from {current}")
        return self.get(target)

    def note(self, action: str, name: str, note: str) -> None:
        self._event(action, name, note)

    def _event(self, action: str, name: str, note: str = "") -> None:
        index = self.index()
        index["events"].append({"at": _now(), "action": action, "version": name, "note": note})
        self._write_index(index)

    def _write_index(self, index: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "index.json.tmp"
        tmp.write_text(json.dumps(index, indent=2))
        tmp.replace(self.root / "index.json")


def _usable(version: Version) -> Version:
    """A version flagged ``retrain_required`` (it learnt from a person since erased) never scores
    again: promoting it, by hand or by rollback, would bring what it learnt from them back."""
    flag = version.meta.get("retrain_required")
    if flag:
        why = flag.get("reason", "flagged") if isinstance(flag, dict) else "flagged"
        ref = f" (reference {flag['reference']})" if isinstance(flag, dict) and flag.get("reference") else ""
        raise RegistryError(
            f"{version.name} may not score customers again: it learnt from data removed since ({why}{ref}); "
            "train a new version with `clarion segment --retrain`"
        )
    return version


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
