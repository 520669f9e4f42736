"""The models by name: one table, imported lazily (like rembg's sessions list).

A model's name is also the name of its pack in shared/models/packs.py, which lists the store
files the model reads; nothing registers itself on import, so every name resolves whatever was
imported before.
"""

from __future__ import annotations

from studioline.shared.models.base import Model
from studioline.shared.models.store import ModelStore
from studioline.shared.spec import load_attr

# name -> "module:Class"; the class's `name` is the same string (tests/unit/test_model_packs.py).
MODELS: dict[str, str] = {
    "u2netp": "studioline.shared.models.u2net:U2Netp",
    "u2net": "studioline.shared.models.u2net:U2Net",
    "isnet": "studioline.shared.models.isnet:ISNet",
    "vit_s_focus": "studioline.shared.models.saliency:VitSFocus",
    "mobilenet_v2": "studioline.shared.models.mobilenet:MobileNetV2Features",
    "mediapipe_pose": "studioline.shared.models.pose:BlazePose",
}


def registered_models() -> list[str]:
    return sorted(MODELS)


def model_class(name: str) -> type[Model]:
    try:
        target = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(registered_models())}") from None
    return load_attr(target)


def open_model(name: str, store: ModelStore, *, device: str = "auto", threads: int = 2) -> Model:
    """The model `name`, created on `device` with `threads` and loaded (its files read now, so a
    missing one fails here rather than at the first request)."""
    model = model_class(name)(store, device=device, threads=threads)
    model.load()
    return model
