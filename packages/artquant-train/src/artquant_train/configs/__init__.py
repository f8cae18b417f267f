"""Launch configurations shipped with artquant-train.

* ``zero1.json``, ``zero2.json``, ``zero3.json``: DeepSpeed configs (the original's missing
  ``scripts/zero1.json``), ``"auto"`` fields filled by the trainer.
* ``accelerate_ddp.yaml``, ``accelerate_zero{1,2,3}.yaml``, ``accelerate_fsdp.yaml``,
  ``accelerate_cpu_gloo.yaml``: ``accelerate launch --config_file`` files.

``python -m artquant_train.configs NAME`` prints the absolute path of one, for shell use::

    accelerate launch --config_file "$(python -m artquant_train.configs accelerate_zero2.yaml)" \\
        -m artquant_train.cli --config train.yaml
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent


def available_configs() -> list[str]:
    """Names of the shipped launch configurations."""
    return sorted(p.name for p in CONFIG_DIR.iterdir() if p.suffix in (".json", ".yaml"))


def config_path(name: str) -> Path:
    """Absolute path of a shipped configuration (``.json``/``.yaml`` may be left out).

    Raises:
        FileNotFoundError: no such configuration (the message lists them).
    """
    for candidate in (name, f"{name}.yaml", f"{name}.json"):
        path = CONFIG_DIR / candidate
        if path.is_file() and path.suffix in (".json", ".yaml"):
            return path
    raise FileNotFoundError(f"no launch config {name!r}; available: {available_configs()}")


__all__ = ["CONFIG_DIR", "available_configs", "config_path"]
