"""Paths written in rule text (``导入 "…"``, ``表 … 来自 "…"``) resolve inside the rulebase only.

A rulebase is uploaded by an administrator and checked on the server, so a path in its text
must never reach a file outside the rulebase being checked: not an absolute path, not ``..``
climbing out, not a symlink inside the folder that leads out, not ``/proc``. Such a path is an
error at the path's ``file:line:col``; the target is never opened, so its content can never
appear in a diagnostic.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath


def confined(written: str, base_dir: Path, root: Path) -> tuple[Path | None, str | None]:
    """``written`` (relative to ``base_dir``) resolved inside ``root``: (path, None), or
    (None, why) when it is absolute or leads outside ``root`` (symlinks followed)."""
    if not written.strip():
        return None, "路径为空"
    if (PurePosixPath(written).is_absolute() or PureWindowsPath(written).is_absolute()
            or PureWindowsPath(written).drive or written.startswith("~")):
        return None, f"路径必须是规则库内的相对路径，不能是绝对路径：{written}"
    root_real = root.resolve()
    target = (base_dir / written).resolve()
    if not target.is_relative_to(root_real):
        return None, f"路径指向规则库目录之外（规则只能读取规则库内的文件）：{written}"
    return target, None


def rulebase_root(path: Path) -> Path:
    """The folder that confines a rulebase given as ``path``.

    A folder confines itself. A single ``.rules`` file belongs to the rulebase around it: its
    own folder, widened upward while the parent folder also holds ``.rules`` files (so
    ``audit-engine test rulebase/institutions/x.rules`` may import ``../tables.rules``)."""
    path = path.resolve()
    if path.is_dir():
        return path
    root = path.parent
    while root.parent != root and any(root.parent.glob("*.rules")):
        root = root.parent
    return root
