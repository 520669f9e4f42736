"""The step table is the one list of steps: the proto, the folders and shared/ agree with it,
and a process that plans jobs reads only the steps' specs."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from studioline.shared import steps
from studioline.shared.models.registry import registered_models
from studioline.v1 import steps_pb2

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", steps.names())
def test_each_spec_names_its_code_and_its_rpc(name):
    spec = steps.spec(name)
    assert spec.step_class().spec is spec
    assert spec.reply_class().DESCRIPTOR.name in ("StepReply", "ClassifyReply")
    for kind in spec.inputs:
        assert kind in steps.artifact_kinds()
    assert set(spec.models) <= set(registered_models())


def test_the_table_the_proto_and_the_folders_agree():
    assert {s.rpc for s in steps.specs().values()} == set(steps_pb2.DESCRIPTOR.services_by_name)
    folders = {p.parent.name for p in (ROOT / "services").glob("*/step.py")}
    assert folders == {s.implementation.split(".")[2] for s in steps.specs().values()}
    assert [s.name for s in steps.specs().values() if s.routes] == [steps.routing_spec().name]


def _step_words() -> set[str]:
    return set(steps.names()) | {n.replace("-", "_") for n in steps.names()}


def test_shared_names_no_step_outside_the_step_table():
    """No string literal naming a step, and no import of a step's code, in shared/ (the step
    table excepted): the plumbing reaches steps only through their specs."""
    words = _step_words()
    found = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        if path.name == "steps.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text in words or any(f"services.{w}" in text for w in words):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {text!r}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("studioline.services"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}")
            if isinstance(node, ast.Import) and any(a.name.startswith("studioline.services") for a in node.names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports a step")
    assert not found, found


def test_the_routing_process_imports_the_specs_not_the_other_steps_code():
    code = """
import sys
from studioline.shared import steps
from studioline.shared.models.registry import registered_models
from studioline.shared.config import Settings
from studioline.shared.routing import Router
from studioline.shared.service import serve
from studioline.shared.worker import KafkaWorker
routing = steps.routing_spec()
routing.step_class()
Router.from_settings(Settings())
print(routing.implementation.split(':')[0].rsplit('.', 1)[0])
print(' '.join(sorted(sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    own, modules = out.splitlines()[0], set(out.splitlines()[1].split())
    others = {m for m in modules if m.startswith("studioline.services.") and not m.startswith(own)}
    assert others and all(m.rsplit(".", 1)[1] in ("spec", "params") or m.count(".") == 2 for m in others), others
    assert not {"pymatting", "scipy", "patchmatch", "torch", "ai_edge_litert"} & modules
