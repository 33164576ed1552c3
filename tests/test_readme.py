"""The README's promises: its runnable snippets run as written, its test command is what CI runs, its links
resolve, and it stays a first screen plus pointers (details live in docs/)."""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.tools import require_module

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RUNNABLE = re.findall(r"^```python runnable\n(.*?)^```$", README, flags=re.M | re.S)


def test_the_readme_marks_its_runnable_snippets() -> None:
    assert len(RUNNABLE) >= 2, "the five-line sample example and the streaming loop are marked runnable"


@pytest.mark.parametrize("snippet", RUNNABLE, ids=[f"snippet{i}" for i in range(len(RUNNABLE))])
def test_runnable_snippet_runs_as_written(snippet: str, tmp_path: Path) -> None:
    if re.search(r"^import torch", snippet, flags=re.M):
        require_module("torch", "the README's streaming example feeds a torch DataLoader")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"snippet failed:\n{snippet}\n{done.stderr}"
    assert done.stdout.strip(), "a runnable snippet prints what it shows"


def _dist(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(text: str) -> set[str]:
    """The distributions a setup.cfg requirement list names."""
    return {_dist(Requirement(r).name) for r in text.split("\n") if r.strip() and not r.startswith("#")}


def _installed_by(commands: str) -> set[str]:
    """Distributions that the ``pip install`` lines of a bash block ask for directly (``.[x]``: the project's
    own requirements and extra x; a quoted requirement: itself)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    names: set[str] = set()
    for command in re.split(r"\n|&&|;", commands):
        words = shlex.split(command.split(" # ")[0]) if "pip install" in command else []
        for word in words[words.index("install") + 1:] if words else []:
            if word.startswith("."):
                names |= _requirements(cfg["options"]["install_requires"]) | {_dist(cfg["metadata"]["name"])}
                for extra in re.findall(r"\[(.*)\]", word)[0].split(",") if "[" in word else []:
                    names |= _requirements(cfg["options.extras_require"][extra.strip()])
            elif not word.startswith("-"):
                names.add(_dist(Requirement(word).name))
    return names


@pytest.mark.parametrize("snippet", RUNNABLE, ids=[f"snippet{i}" for i in range(len(RUNNABLE))])
def test_the_install_command_above_a_snippet_installs_what_it_imports(snippet: str) -> None:
    """A reader runs the nearest install command above an example, then the example: nothing may be missing."""
    before = README[:README.index(snippet)]
    commands = re.findall(r"^```bash\n(.*?)^```$", before, flags=re.M | re.S)[-1]
    imported = {name.split(".")[0] for name in re.findall(r"^(?:import|from) ([\w.]+)", snippet, flags=re.M)}
    from_dists = importlib.metadata.packages_distributions()
    for module in sorted(imported - set(sys.stdlib_module_names)):
        dists = {_dist(d) for d in from_dists.get(module, [module])}
        assert dists & _installed_by(commands), f"the example imports {module}; the command above it:\n{commands}"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert f"```bash\n{ci}\n```" in README


def test_the_readme_table_states_the_paper_s_split_sizes() -> None:
    from audio_dialogues.sources.annotations import PAPER_SIZES

    rows = dict(re.findall(r"^\| `(\w+)`(?: \(default\))? \|.*\| ([\d,]+ / [\d,]+) \|$", README, flags=re.M))
    assert rows == {config: f"{sizes['train']:,} / {sizes['test']:,}" for config, sizes in PAPER_SIZES.items()}


def test_the_readme_describes_the_sample_as_it_is() -> None:
    """The README's sentence on the sample states what describe_sample() counts from the sample's files."""
    from audio_dialogues.sample import describe_sample

    counted = re.search(r"(\d+) dialogues \((\d+) train, (\d+) test, over the three configs\), (\d+) ten-second "
                        r"audio clips, (\d+) KB", describe_sample())
    said = re.search(r"embeds a small sample release: (\d+) dialogues \((\d+) train and (\d+) test per config\), "
                     r"(\d+) ten-second\s+audio clips and the metadata rows they need, about (\d+) KB", README)
    assert counted and said
    total, train, test, clips, kb = map(int, counted.groups())
    assert said.groups()[:4] == (str(total), str(train // 3), str(test // 3), str(clips))
    assert abs(int(said.group(5)) - kb) <= 0.05 * kb


def test_relative_links_resolve() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)} links to missing {target}"


def test_the_readme_is_a_first_screen_plus_pointers() -> None:
    assert len(README.splitlines()) < 200
    # one name for the annotation folder
    assert "release/" not in README and README.count("annotations/") >= 3
