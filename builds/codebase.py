"""A bounded, safe picture of the workspace for coding agents (`GET /llm/learning/codebase`).

Confined to the root: symlinks are never followed (a link out of the workspace is skipped, and
so is a link inside it, to keep one rule), version control, dependency, virtual-env and build
folders are skipped, secret files are never read, and every size is bounded.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        ".venv",
        "venv",
        "env",
        ".env",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        "dist",
        "build",
        "target",
        ".next",
        ".nuxt",
        "out",
        "coverage",
        ".gradle",
        ".idea",
        ".vscode",
        "vendor",
        ".terraform",
        "site-packages",
        ".cache",
        "bower_components",
        ".eggs",
    }
)
SECRET_NAMES = frozenset(
    {
        ".env",
        ".envrc",
        ".netrc",
        ".npmrc",
        ".pypirc",
        "id_rsa",
        "id_ed25519",
        "id_ecdsa",
        "credentials",
        "credentials.json",
        "secrets.json",
        "secrets.yaml",
        "secrets.yml",
        ".git-credentials",
        "service-account.json",
        ".htpasswd",
    }
)
SECRET_SUFFIXES = (
    ".pem",
    ".key",
    ".p12",
    ".pfx",
    ".keystore",
    ".jks",
    ".crt",
    ".der",
    ".gpg",
    ".asc",
    ".kdbx",
)
KEY_CONFIG_FILES = (
    "package.json",
    "pyproject.toml",
    "setup.cfg",
    "setup.py",
    "requirements.txt",
    "tsconfig.json",
    "Cargo.toml",
    "go.mod",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "Gemfile",
    "composer.json",
    "Makefile",
    "Dockerfile",
    "docker-compose.yml",
    "compose.yaml",
    "tox.ini",
    "pytest.ini",
    "jest.config.js",
    "vite.config.ts",
    "CMakeLists.txt",
    ".github/workflows",
)
BACKEND_EXT = {
    ".py": "python",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin",
    ".rb": "ruby",
    ".php": "php",
    ".cs": "csharp",
    ".c": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".h": "c",
}
FRONTEND_EXT = {
    ".js": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".vue": "vue",
    ".svelte": "svelte",
    ".css": "css",
    ".scss": "css",
    ".html": "html",
}
TEST_MARKERS = ("test_", "_test.", ".test.", ".spec.", "tests/", "test/", "__tests__/", "spec/")


@dataclass(frozen=True)
class Limits:
    max_files: int = 5000
    max_depth: int = 8
    max_tree_entries: int = 2000
    max_config_bytes: int = 20_000
    max_backend_files: int = 50
    preview_chars: int = 500
    max_count_bytes: int = 2_000_000


def is_secret(name: str) -> bool:
    lower = name.lower()
    return (
        lower in SECRET_NAMES
        or lower.startswith(".env.")
        or lower.endswith(SECRET_SUFFIXES)
        or "secret" in lower
    )


def _read_text(path: Path, limit: int) -> str | None:
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(limit)
    except OSError:
        return None
    if b"\x00" in data[:4096]:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def _count_lines(path: Path, limit: int) -> int:
    text = _read_text(path, limit)
    return 0 if text is None else text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def scan_codebase(root: str | Path, limits: Limits = Limits()) -> dict[str, Any]:
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"workspace root {root} is not a directory")
    tree: dict[str, Any] = {}
    files: list[str] = []
    languages: dict[str, int] = {}
    truncated = False
    entries = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root)
        depth = 0 if str(rel_dir) == "." else len(rel_dir.parts)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_DIRS
            and (not d.startswith(".") or d == ".github")
            and not os.path.islink(os.path.join(dirpath, d))
            and not d.endswith(".egg-info")
            and depth < limits.max_depth
        )
        node = tree
        for part in rel_dir.parts if str(rel_dir) != "." else ():
            node = node.setdefault(part + "/", {})
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if os.path.islink(full) or is_secret(name):
                continue
            if len(files) >= limits.max_files:
                truncated = True
                break
            rel = (rel_dir / name).as_posix() if str(rel_dir) != "." else name
            files.append(rel)
            ext = Path(name).suffix.lower()
            lang = BACKEND_EXT.get(ext) or FRONTEND_EXT.get(ext)
            if lang:
                languages[lang] = languages.get(lang, 0) + 1
            if entries < limits.max_tree_entries:
                node[name] = None
                entries += 1
            else:
                truncated = True
        if len(files) >= limits.max_files:
            truncated = True
            break

    key_configs: dict[str, str] = {}
    for rel in files:
        name = rel.rsplit("/", 1)[-1]
        if (name in KEY_CONFIG_FILES and rel.count("/") <= 1) or rel.startswith(
            ".github/workflows/"
        ):
            if rel in key_configs or len(key_configs) >= 30:
                continue
            text = _read_text(root / rel, limits.max_config_bytes)
            if text is not None:
                key_configs[rel] = text

    backend = []
    for rel in files:
        if Path(rel).suffix.lower() in BACKEND_EXT and not any(m in rel for m in TEST_MARKERS):
            text = _read_text(root / rel, limits.preview_chars)
            if text is None:
                continue
            backend.append(
                {
                    "name": rel.rsplit("/", 1)[-1],
                    "path": rel,
                    "lines": _count_lines(root / rel, limits.max_count_bytes),
                    "preview": text[: limits.preview_chars],
                }
            )
            if len(backend) >= limits.max_backend_files:
                break

    has_frontend = (
        any(FRONTEND_EXT.get(Path(f).suffix.lower()) for f in files)
        or "package.json" in key_configs
    )
    return {
        "workspace_root": str(root),
        "file_tree": tree,
        "file_count": len(files),
        "truncated": truncated,
        "key_config_files": key_configs,
        "backend_files": backend,
        "structure_summary": {
            "has_backend": any(Path(f).suffix.lower() in BACKEND_EXT for f in files),
            "has_frontend": has_frontend,
            "has_tests": any(any(m in f for m in TEST_MARKERS) for f in files),
            "languages": dict(sorted(languages.items(), key=lambda kv: -kv[1])),
        },
    }
