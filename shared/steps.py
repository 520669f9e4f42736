"""The step table: every step of the line, by the dotted path of its spec (thumbor's way).

This is the one place shared/ names steps. The services list, topics, gRPC bindings, the
client's calls, the config's service names and the bench tables derive from it; the Helm
values, compose and prometheus.yml cannot import Python, so tests/deploy checks them against it.
Order: the routing step first, then the order chains usually run in.
"""

from __future__ import annotations

from functools import lru_cache

from studioline.shared.spec import ArtifactKind, StepSpec, load_attr

STEP_TABLE = (
    "studioline.services.classifier.spec:SPEC",
    "studioline.services.segmenter.spec:SPEC",
    "studioline.services.matting.spec:SPEC",
    "studioline.services.inpainter.spec:SPEC",
    "studioline.services.cropper.spec:SPEC",
    "studioline.services.catalog_generator.spec:SPEC",
)


@lru_cache(maxsize=1)
def specs() -> dict[str, StepSpec]:
    """Every step's spec by name, checked for consistency once."""
    table: dict[str, StepSpec] = {}
    for path in STEP_TABLE:
        spec = load_attr(path)
        if spec.name in table:
            raise ValueError(f"step {spec.name!r} is declared twice in the step table")
        table[spec.name] = spec
    routing = [s.name for s in table.values() if s.routes]
    if len(routing) != 1:
        raise ValueError(f"exactly one step must route, found {routing or 'none'}")
    _check_kinds(table.values())
    return table


def names() -> tuple[str, ...]:
    return tuple(specs())


def spec(name: str) -> StepSpec:
    try:
        return specs()[name]
    except KeyError:
        raise KeyError(f"unknown step {name!r}; steps are {', '.join(specs())}") from None


def routing_spec() -> StepSpec:
    return next(s for s in specs().values() if s.routes)


@lru_cache(maxsize=1)
def artifact_kinds() -> dict[str, ArtifactKind]:
    """The table of artifact kinds, as the steps declare them."""
    return {k.name: k for s in specs().values() for k in (*s.produces, *s.accepts)}


def working_kinds() -> frozenset[str]:
    return frozenset(k.name for k in artifact_kinds().values() if k.working)


def _check_kinds(table) -> None:
    declared: dict[str, ArtifactKind] = {}
    for s in table:
        for kind in (*s.produces, *s.accepts):
            if declared.setdefault(kind.name, kind) != kind:
                raise ValueError(f"artifact kind {kind.name!r} is declared two ways ({s.name})")
    for s in table:
        unknown = set(s.inputs) - declared.keys()
        if unknown:
            raise ValueError(f"step {s.name} reads undeclared artifact kind(s) {', '.join(sorted(unknown))}")
