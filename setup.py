"""Package list for setuptools (everything else is in pyproject.toml): derived from the folders,
so a new step is a folder under services/ and nothing to list here."""

from pathlib import Path

from setuptools import setup


def packages(prefix: str, folder: str) -> list[str]:
    root = Path(__file__).resolve().parent / folder
    found = [d for d in [root, *sorted(root.rglob("*"))] if d.is_dir() and (d / "__init__.py").is_file()]
    return [".".join([prefix, *d.relative_to(root).parts]) for d in found]


setup(packages=[*packages("studioline.shared", "shared"), *packages("studioline.services", "services"), "studioline.v1"])
