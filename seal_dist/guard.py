"""Bounds on a self-update (ARCHITECTURE.md "Bounded self-updates"): trust anchors (modules that no LoRA update
targets, their weights fingerprinted so that a change is caught bit for bit), a Frobenius-norm bound on the
update of each module and on the whole update (enforced by rescaling B), and the forgetting guard's rule.
Plain torch and PEFT: no Hydra, Ray or task."""

import fnmatch
import hashlib
import math
import re
from dataclasses import dataclass

import peft
import torch

from seal_dist.config import AnchorConfig, ForgettingConfig, UserError

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def anchored(name: str, anchors: AnchorConfig) -> bool:
    """Whether the module of this name is a trust anchor: it matches a pattern or sits in an anchored layer."""
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in anchors.modules):
        return True
    layer = _LAYER.search(name)
    return layer is not None and any(first <= int(layer.group(1)) <= last for first, last in anchors.layers)


def targets(model: torch.nn.Module, suffixes: list[str], anchors: AnchorConfig,
            keys: tuple[str, str] = ("guard.anchors", "inner.lora.target_modules")) -> tuple[list[str], list[str]]:
    """The full names of the linear modules that LoRA's target_modules (`suffixes`) name, split into those an
    update may adapt and the anchored ones; `keys` name the two settings in an error."""
    named = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.rpartition(".")[2] in suffixes]
    free = [n for n in named if not anchored(n, anchors)]
    if not free:
        raise UserError(f"{keys[0]}: all {len(named)} modules that {keys[1]} names are anchored: "
                        "no update could change anything")
    return free, [n for n in named if n not in free]


def fingerprint(model: torch.nn.Module, names: list[str] | None) -> str:
    """sha256 over the exact bytes of the parameters of the named modules (every parameter, where None)."""
    digest = hashlib.sha256()
    modules = dict(model.named_modules())
    params = model.named_parameters() if names is None else (
        (f"{n}.{p}", t) for n in names for p, t in modules[n].named_parameters())
    for name, tensor in params:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _lora_layers(model: torch.nn.Module, adapter: str):
    for name, module in model.named_modules():
        if isinstance(module, peft.tuners.lora.LoraLayer) and adapter in module.lora_A:
            yield name.removeprefix("base_model.model."), module


def update_norms(model: torch.nn.Module, adapter: str) -> dict[str, float]:
    """Each adapted module's ||scale * B @ A||_F = scale * sqrt(trace((B^T B)(A A^T))), in float64."""
    norms = {}
    for name, module in _lora_layers(model, adapter):
        a, b = module.lora_A[adapter].weight.double(), module.lora_B[adapter].weight.double()
        norms[name] = module.scaling[adapter] * math.sqrt(max(torch.trace((b.T @ b) @ (a @ a.T)).item(), 0.0))
    return norms


def total_norm(norms: dict[str, float]) -> float:
    """The whole update's Frobenius norm (the modules' updates are disjoint blocks of it)."""
    return math.sqrt(sum(n * n for n in norms.values()))


_MARGIN = 1 - 1e-6  # a clipped norm lands this much under its bound, whatever float32's rounding does


@torch.no_grad()
def clip(model: torch.nn.Module, adapter: str, max_module: float | None, max_total: float | None) -> bool:
    """Rescales B of every module whose update's norm exceeds max_module to just under it, then all of them
    together where the total still exceeds max_total; returns whether anything was rescaled."""
    norms = update_norms(model, adapter)
    factors = {name: _MARGIN * max_module / n if max_module is not None and n > max_module else 1.0
               for name, n in norms.items()}
    total = total_norm({name: n * factors[name] for name, n in norms.items()})
    if max_total is not None and total > max_total:
        factors = {name: f * _MARGIN * max_total / total for name, f in factors.items()}
    for name, module in _lora_layers(model, adapter):
        if factors[name] != 1.0:
            module.lora_B[adapter].weight.mul_(factors[name])
    return any(f != 1.0 for f in factors.values())


@torch.no_grad()
def scale(model: torch.nn.Module, adapter: str, factor: float) -> None:
    """Multiplies the whole update by factor (its norm with it)."""
    for _, module in _lora_layers(model, adapter):
        module.lora_B[adapter].weight.mul_(factor)


@dataclass(frozen=True)
class Probes:
    retention: float | None  # accuracy on the earlier documents' retention probes; None: there are none
    locality: tuple[str, ...]  # the answers to the locality questions


def forgetting(retention_before: float | None, after: Probes, reference: tuple[str, ...],
               cfg: ForgettingConfig) -> tuple[float, str | None]:
    """The fraction of locality answers after the update that differ from the reference (the unadapted
    model's), and why the update must be rolled back under the guard's rule (None: it may be kept, or the guard
    is off)."""
    changed = sum(a != r for a, r in zip(after.locality, reference, strict=True)) / max(len(reference), 1)
    reasons = []
    if retention_before is not None and retention_before - after.retention > cfg.tolerance:
        reasons.append(f"retention fell from {retention_before:.3f} to {after.retention:.3f} "
                       f"(tolerance {cfg.tolerance})")
    if changed > cfg.max_changed:
        reasons.append(f"{changed:.0%} of locality answers changed (at most {cfg.max_changed:.0%})")
    return changed, ("; ".join(reasons) or None) if cfg.enabled else None
