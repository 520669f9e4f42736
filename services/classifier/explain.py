"""Why a photo was classified as it was and where it would go: `studioline explain IMAGE`.

The photo goes through the classifier step as in the service, the router decides its chain as
the classifier service does (confidence threshold, fallback chain flagged for review) and plans
the steps. The head is linear, so the chosen class's logit is a sum of terms, one per input
(weight x standardised value) plus a bias: the cues' terms, largest first, say which
properties of the frame pushed the photo into its type; the 1280 backbone features' terms are
summed into one figure beside them.
"""

from __future__ import annotations

import json

import numpy as np

from studioline.services.classifier import ops
from studioline.services.classifier.params import ClassifierParams
from studioline.services.classifier.step import ClassifierStep, describe
from studioline.shared.models.mobilenet import FEATURE_DIM, to_rgb
from studioline.v1 import job_pb2


def explain_image(step: ClassifierStep, router, image: np.ndarray, recipe: job_pb2.Recipe | None = None) -> dict:
    """The classification, the routing decision and plan, and the cue terms of the chosen class's logit."""
    params = ClassifierParams()
    head = step.heads[params.head_version]
    x, cues = describe(step.backbone, [to_rgb(image)])
    info = step.output(params, x, cues[0]).info
    recipe = recipe or job_pb2.Recipe()
    decision = router.decide(info["image_type"], info["confidence"], recipe.chain)
    slip = router.plan(decision.chain, recipe)
    chosen = head.classes.index(info["image_type"])
    terms = head.logit_terms(x[0])[chosen]
    z = (x[0] - head.mean) / head.std
    cue_rows = [
        {
            "name": name,
            "value": float(cues[0][name]),
            "normalised": float(z[FEATURE_DIM + i]),
            "weight": float(head.weight[chosen, FEATURE_DIM + i]),
            "contribution": float(terms[FEATURE_DIM + i]),
        }
        for i, name in enumerate(ops.CUE_NAMES)
    ]
    cue_rows.sort(key=lambda r: -abs(r["contribution"]))
    return {
        "image_type": info["image_type"],
        "confidence": info["confidence"],
        "scores": info["scores"],
        "head_version": info["head_version"],
        "needs_review": decision.needs_review,
        "confidence_threshold": router.confidence_threshold,
        "chain": decision.chain,
        "steps": [{"step": s.step, "params": json.loads(s.params_json)} for s in slip.steps],
        "logit": {
            "total": float(terms.sum() + head.bias[chosen]),
            "bias": float(head.bias[chosen]),
            "backbone": float(terms[:FEATURE_DIM].sum()),
            "cues": float(terms[FEATURE_DIM:].sum()),
            "temperature": head.temperature,
        },
        "cues": cue_rows,
    }


def format_explanation(e: dict) -> str:
    """The explanation as lines an operator reads top to bottom."""
    review = "yes (below the confidence threshold or an unrouted type)" if e["needs_review"] else "no"
    lines = [
        f"type        {e['image_type']}  (confidence {e['confidence']:.3f}, head {e['head_version']})",
        "scores      " + "  ".join(f"{k} {v:.3f}" for k, v in sorted(e["scores"].items(), key=lambda kv: -kv[1])),
        f"review      {review}; threshold {e['confidence_threshold']:.2f}",
        f"chain       {e['chain']}",
    ]
    for i, s in enumerate(e["steps"], 1):
        params = ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in s["params"].items())
        lines.append(f"  {i}. {s['step']}" + (f" ({params})" if params else ""))
    logit = e["logit"]
    lines.append(
        f"why         logit of {e['image_type']} = {logit['total']:.2f}: backbone features {logit['backbone']:+.2f}, "
        f"cues {logit['cues']:+.2f}, bias {logit['bias']:+.2f} (divided by temperature {logit['temperature']:.2f})"
    )
    width = max(len(c["name"]) for c in e["cues"])
    lines.append(f"  {'cue':<{width}}    value  normalised  contribution")
    for c in e["cues"]:
        lines.append(f"  {c['name']:<{width}}  {c['value']:7.3f}  {c['normalised']:+10.2f}  {c['contribution']:+12.3f}")
    return "\n".join(lines)
