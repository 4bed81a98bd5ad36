"""MkDocs hook: the configuration reference page, generated from ``conf/`` on every build.

It walks ``conf/`` and writes one page, ``configuration-reference.md`` (the file of that name in
``docs/`` is only a stub for readers on GitHub): every entry config (``conf/train.yaml``, ...), every
config group (a folder of ``conf/``) with each option's leading comment lines as prose and its YAML
(keys and defaults) verbatim, which option each entry config selects by default, and which files are
internal (a name starting with ``_``: shared keys
that options include through ``defaults:``, not an option of their own). Generated, so it cannot
go stale; mkdocs-gen-files would do the same but is not a dependency we carry.
"""

from __future__ import annotations

import html
import re
import textwrap
from pathlib import Path

import yaml
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF = REPO_ROOT / "conf"
PAGE = "configuration-reference.md"
# entry config -> the script that composes it
ENTRY_CONFIGS = {
    "train": "train.py",
    "eval": "eval.py",
    "predict": "predict.py",
    "audit": "audit.py",
    "prepare_shards": "prepare_shards.py",
}


def split_header(text: str) -> tuple[list[str], str | None, str]:
    """A YAML file's leading comment lines (without ``# ``), its ``# @package`` directive, and the rest."""
    lines = text.splitlines()
    header, package = [], None
    while lines and lines[0].startswith("#"):
        line = lines.pop(0)
        if line.startswith("# @package"):
            package = line.split(None, 2)[2].strip()
            continue
        header.append(line[2:] if line.startswith("# ") else line[1:])
    return header, package, "\n".join(lines).strip("\n")


def _escape_outside_code(line: str) -> str:
    """Markdown-safe prose: ``<`` ``>`` ``&`` escaped except inside backtick spans."""
    parts = re.split(r"(`[^`]*`)", line)
    return "".join(
        part if part.startswith("`") and part.endswith("`") and len(part) > 1 else html.escape(part, quote=False)
        for part in parts
    )


def prose(header: list[str]) -> str:
    """Comment lines as Markdown: paragraphs as written, indented lines (examples) as a code block."""
    out: list[str] = []
    code: list[str] = []
    for line in [*header, ""]:
        if line.startswith(" ") and line.strip():
            code.append(line)
            continue
        if code:
            out += ["", "```text", textwrap.dedent("\n".join(code)), "```", ""]
            code = []
        out.append(_escape_outside_code(line) if line.strip() else "")
    return "\n".join(out).strip()


def entry_defaults() -> dict[str, dict[str, str]]:
    """entry config -> {group: the option it selects by default}."""
    chosen: dict[str, dict[str, str]] = {}
    for name in ENTRY_CONFIGS:
        path = CONF / f"{name}.yaml"
        if not path.is_file():
            continue
        for item in (yaml.safe_load(path.read_text()) or {}).get("defaults", []):
            if isinstance(item, dict):
                for group, option in item.items():
                    group = group.split()[-1].lstrip("/")  # "override /dataset" -> "dataset"
                    chosen.setdefault(group, {})[name] = "null" if option is None else str(option)
    return chosen


def groups() -> dict[str, list[Path]]:
    """group name (folder under conf/, e.g. ``hydra/launcher``) -> its option files."""
    found: dict[str, list[Path]] = {}
    for path in sorted(CONF.rglob("*.yaml")):
        if path.parent != CONF:
            found.setdefault(path.parent.relative_to(CONF).as_posix(), []).append(path)
    return found


def anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def yaml_section(path: Path, title: str, ident: str, note: str = "") -> list[str]:
    header, package, body = split_header(path.read_text())
    lines = [
        f"### {title} {{#{ident}}}",
        "",
        f"`conf/{path.relative_to(CONF).as_posix()}`"
        + (f" · package `{package}`" if package else "")
        + (f" · {note}" if note else ""),
        "",
    ]
    if header:
        lines += [prose(header), ""]
    if body:
        lines += ["```yaml", body, "```", ""]
    return lines


def option_label(option: str) -> str:
    return f"`{option}`"


def render() -> str:
    chosen = entry_defaults()
    all_groups = groups()
    lines = [
        "# Configuration reference",
        "",
        "Generated from `conf/` each time this site is built (`docs/hooks/config_reference.py`), so it",
        "always matches the code. Pick an option with `group=option` on the command line",
        "(`python train.py dataset=imagenet`), set a key with `group.key=value`",
        "(`dataset.batch_size=256`), print a run's whole composed config with `python train.py --cfg job`.",
        "Files whose name starts with `_` are **internal**: shared keys that options include through",
        "their `defaults:` list, not options of their own. The guide to the groups is",
        "[Configuration](configuration.md).",
        "",
        "## Groups at a glance",
        "",
        "| group | options | default per entry config |",
        "|---|---|---|",
    ]
    for group, files in all_groups.items():
        options = [f"[`{p.stem}`](#{anchor(group + '-' + p.stem)})" for p in files if not p.stem.startswith("_")]
        internal = [
            f"[`{p.stem}`](#{anchor(group + '-' + p.stem)}) (internal)" for p in files if p.stem.startswith("_")
        ]
        defaults = ", ".join(f"{entry}: `{option}`" for entry, option in chosen.get(group, {}).items())
        lines.append(f"| [`{group}`](#{anchor('group-' + group)}) | {', '.join(options + internal)} | {defaults} |")
    lines += ["", "## Entry configs", ""]
    for name, script in ENTRY_CONFIGS.items():
        path = CONF / f"{name}.yaml"
        if path.is_file():
            lines += yaml_section(path, f"{name}.yaml", anchor("entry-" + name), f"composed by `{script}`")
    for path in sorted(CONF.glob("*.yaml")):
        if path.stem not in ENTRY_CONFIGS:
            lines += yaml_section(path, path.name, anchor("entry-" + path.stem))
    for group, files in all_groups.items():
        lines += [f"## `{group}` {{#{anchor('group-' + group)}}}", ""]
        defaults = chosen.get(group, {})
        if defaults:
            lines += [
                "Default: " + ", ".join(f"`{option}` in `{entry}.yaml`" for entry, option in defaults.items()) + ".",
                "",
            ]
        for path in files:
            internal = path.stem.startswith("_")
            title = f"`{group}/{path.stem}` (internal)" if internal else f"`{group}={path.stem}`"
            note = "internal: included by other options, not selectable" if internal else ""
            lines += yaml_section(path, title, anchor(group + "-" + path.stem), note)
    return "\n".join(lines) + "\n"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    # docs/configuration-reference.md on disk is a stub for readers on GitHub; the site gets the real page
    stub = files.get_file_from_path(PAGE)
    if stub is not None:
        files.remove(stub)
    files.append(File.generated(config, PAGE, content=render()))
    return files
