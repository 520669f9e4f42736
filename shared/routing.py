"""The router: turns an image type (or a named chain) and a recipe into a routing slip.

The table is data (shared/routing.yaml, or the file settings.routing.table names) and is
validated against the steps' own parameter models when it is loaded, so a typo in a step or
parameter name stops the service at start-up instead of failing images later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from studioline.shared import steps
from studioline.shared.errors import ConfigError, InvalidEvent, InvalidParams
from studioline.shared.jobpath import struct_params
from studioline.v1 import job_pb2


class _PlannedStepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: str
    params: dict[str, Any] = Field(default_factory=dict)


class _TableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    types: dict[str, str]
    chains: dict[str, list[_PlannedStepSpec]]


@dataclass(frozen=True)
class Decision:
    chain: str
    needs_review: bool


class Router:
    def __init__(self, table: _TableSpec, confidence_threshold: float, fallback_chain: str):
        self.table = table
        self.confidence_threshold = confidence_threshold
        self.fallback_chain = fallback_chain
        # Each chain step's table parameters, validated once at start-up, as the model's JSON.
        self._planned_json: dict[tuple[str, int], str] = {}
        self._validate()

    @classmethod
    def from_settings(cls, settings) -> "Router":
        return cls.from_file(
            settings.routing.table, settings.routing.confidence_threshold, settings.routing.fallback_chain
        )

    @classmethod
    def from_file(cls, path: Path, confidence_threshold: float, fallback_chain: str) -> "Router":
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"routing table {path}: {exc.strerror}") from exc
        try:
            table = _TableSpec.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"routing table {path} is malformed:\n{exc}") from exc
        try:
            return cls(table, confidence_threshold, fallback_chain)
        except ConfigError as exc:
            raise ConfigError(f"routing table {path}: {exc}") from exc

    def _validate(self) -> None:
        chains = self.table.chains
        for image_type, chain in self.table.types.items():
            if chain not in chains:
                raise ConfigError(f"type {image_type!r} maps to unknown chain {chain!r}")
        if self.fallback_chain not in chains:
            raise ConfigError(f"fallback chain {self.fallback_chain!r} is not defined")
        chain_steps = {s.name: s for s in steps.specs().values() if not s.routes}
        for name, planned_steps in chains.items():
            for i, planned in enumerate(planned_steps):
                if planned.step not in chain_steps:
                    raise ConfigError(
                        f"chain {name!r} step {i + 1}: unknown step {planned.step!r}; "
                        f"steps are {', '.join(chain_steps)}"
                    )
                try:
                    params = chain_steps[planned.step].parse_params(planned.params)
                except InvalidParams as exc:
                    raise ConfigError(f"chain {name!r} step {i + 1}: {exc}") from exc
                self._planned_json[name, i] = params.model_dump_json()

    @property
    def known_outputs(self) -> set[str]:
        return {kind for s in steps.specs().values() for kind in s.produced_kinds}

    def decide(self, image_type: str, confidence: float, requested_chain: str = "") -> Decision:
        if requested_chain:
            if requested_chain not in self.table.chains:
                raise InvalidEvent(
                    f"recipe asks for unknown chain {requested_chain!r}; chains are {', '.join(self.table.chains)}"
                )
            return Decision(requested_chain, needs_review=False)
        if confidence < self.confidence_threshold or image_type not in self.table.types:
            return Decision(self.fallback_chain, needs_review=True)
        return Decision(self.table.types[image_type], needs_review=False)

    def plan(self, chain: str, recipe: job_pb2.Recipe) -> job_pb2.RoutingSlip:
        """The slip for `chain`, pruned to the steps the recipe's outputs need, params merged."""
        wanted = set(recipe.outputs)
        unknown = wanted - self.known_outputs
        if unknown:
            raise InvalidEvent(
                f"recipe asks for unknown output(s) {', '.join(sorted(unknown))}; "
                f"outputs are {', '.join(sorted(self.known_outputs))}"
            )
        kept: list[int] = []
        needed: set[str] = set()
        chain_steps = self.table.chains[chain]
        for i in reversed(range(len(chain_steps))):
            spec = steps.spec(chain_steps[i].step)
            produces = set(spec.produced_kinds)
            if not wanted or produces & wanted or produces & needed:
                kept.append(i)
                # Every later step reads the working image (a cleaned photo) when there is one.
                needed |= set(spec.inputs) | steps.working_kinds()
        slip = job_pb2.RoutingSlip(chain=chain, position=0)
        for i in reversed(kept):
            planned = chain_steps[i]
            params_json = self._planned_json[chain, i]
            if planned.step in recipe.step_params:
                # The recipe's values over the table's, validated once, here: a bad recipe fails
                # at ingest, and the step receives the model's own JSON.
                raw = {**planned.params, **struct_params(recipe.step_params[planned.step])}
                params_json = steps.spec(planned.step).parse_params(raw).model_dump_json()
            slip.steps.add(step=planned.step, params_json=params_json)
        return slip
