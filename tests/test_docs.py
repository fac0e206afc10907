"""The documentation runs as written: every fenced ``python`` block and every ``bash`` / ``sh`` command in
README.md and docs/*.md.

- Python: the blocks of one file run in order in one shared namespace, in a fresh interpreter and a fresh
  temporary directory (one test per file, so a later block may use what an earlier one defined, as a
  reader would).
- Shell: each command line runs with ``bash`` in one temporary directory per file (so ``sgworld report
  runs/d`` finds what ``sgworld run ... --out runs/d`` wrote), with the virtual environment's ``sgworld``
  first on PATH; it must exit with 0, and ``sgworld run`` must leave a report.html.

Commands that are inherently long get their documented fast form, and a few cannot run here at all;
both lists are below, each entry with its reason. Identical ``sgworld run`` commands (the same study and
settings, another ``--out``) run once per session and the finished folder is copied, since a run is
deterministic in its settings. Selected with ``-m docs`` or by this file; part of the default suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

pytestmark = pytest.mark.docs

# (pattern on the command line, reason): commands that cannot run in the test suite.
SKIP = [
    (r"^git clone ", "needs the network and the repository's address; the suite runs inside the clone"),
    (r"^make test\b", "is the test suite itself"),
    (r"--data\s+(~|PATH/)", "reads the user's own data files (MNIST, the authors' regression data), which are not "
                            "shipped and may not be downloaded at test time"),
]

# (pattern, replacement, reason): the documented fast form of inherently long commands.
SUBSTITUTE = [
    (r"^make demo\b.*", "sgworld run posterior --quick --out runs/posterior",
     "make demo is the full posterior study (minutes) after the set-up that `make test` already exercises; "
     "its --quick preset runs the same code"),
    (r"^(sgworld run (?!.*--quick)(?!.*--help)(?!.*--print-config).*)$", r"\1 --quick",
     "a full-size study takes minutes to hours; --quick is its documented small preset"),
]


@dataclass
class Block:
    path: Path
    line: int          # 1-based line of the opening fence
    lang: str
    text: str


FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")


def fenced_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file (indented fences inside list items included)."""
    blocks, lines, i = [], path.read_text(encoding="utf-8").splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m["indent"]), m["fence"], m["info"].lower()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def blocks_of(lang: set[str]):
    return {p: [b for b in fenced_blocks(p) if b.lang in lang] for p in DOCS}


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


PYTHON = {p: bs for p, bs in blocks_of({"python", "py"}).items() if bs}
SHELL = {p: bs for p, bs in blocks_of({"bash", "sh", "shell", "console"}).items() if bs}


def test_the_harness_finds_the_documented_examples():
    assert ROOT / "README.md" in PYTHON and ROOT / "docs" / "quickstart.md" in PYTHON
    assert ROOT / "README.md" in SHELL and ROOT / "docs" / "quickstart.md" in SHELL
    block = fenced_blocks(ROOT / "docs" / "quickstart.md")[0]
    assert block.lang == "bash" and "make demo" in block.text


# The blocks of one file run in a fresh interpreter, as a reader runs them (state such as an initialised
# process group stays out of the test process), and a block that hangs fails the test after the timeout.
BLOCK_RUNNER = """
import json, sys
namespace = {"__name__": "__docs__"}
for where, text in json.load(sys.stdin):
    try:
        exec(compile(text, where, "exec"), namespace)
    except BaseException as error:
        print(f"the python block at {where} fails: {type(error).__name__}: {error}", file=sys.stderr)
        raise
"""
PYTHON_TIMEOUT_S = 600


@pytest.mark.parametrize("path", list(PYTHON), ids=[name(p) for p in PYTHON])
def test_python_blocks_run(path, tmp_path):
    blocks = json.dumps([(f"{name(path)}:{block.line}", block.text) for block in PYTHON[path]])
    env = {**os.environ}
    env.pop("PYTEST_CURRENT_TEST", None)
    try:
        result = subprocess.run([sys.executable, "-c", BLOCK_RUNNER], input=blocks, cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=PYTHON_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the python blocks of {name(path)} did not finish in {PYTHON_TIMEOUT_S} s; "
                             f"last output:\n{(exc.stdout or '')[-2000:]}\n{(exc.stderr or '')[-2000:]}") from None
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


# -- shell --------------------------------------------------------------------------------------------

def commands(block: Block) -> list[tuple[int, str]]:
    """``(line, command)`` for each command of a shell block (comments and blank lines dropped,
    backslash continuations joined)."""
    out, pending, start = [], "", 0
    for k, raw in enumerate(block.text.splitlines()):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = block.line + 1 + k
        if line.startswith("$ "):
            line = line[2:]
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


def strip_comment(command: str) -> str:
    """The command without a trailing ``# ...`` comment (a ``#`` after whitespace, outside quotes)."""
    quote = None
    for k, ch in enumerate(command):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or command[k - 1].isspace()):
            return command[:k].rstrip()
    return command.rstrip()


def resolve(command: str) -> tuple[str | None, str]:
    """``(command to run, note)``; ``None`` and the reason when it is skipped."""
    for pattern, reason in SKIP:
        if re.search(pattern, command):
            return None, reason
    for pattern, replacement, reason in SUBSTITUTE:
        if re.search(pattern, command):
            return re.sub(pattern, replacement, command), reason
    return command, ""


_RUNS: dict[str, Path] = {}   # identical `sgworld run` commands, finished once per session


def run_key(argv: list[str], cwd: Path) -> tuple[str, Path] | None:
    """A key for an ``sgworld run`` command without ``--out``, and its output folder; the contents of a
    ``--config`` file are part of the key."""
    if len(argv) < 3 or argv[:2] != ["sgworld", "run"] or any(a in ("--help", "-h", "--print-config") for a in argv):
        return None
    rest, out, k = [], None, 2
    while k < len(argv):
        if argv[k] == "--out" and k + 1 < len(argv):
            out, k = argv[k + 1], k + 2
            continue
        if argv[k].startswith("--out="):
            out, k = argv[k][6:], k + 1
            continue
        if argv[k] == "--config" and k + 1 < len(argv) and (cwd / argv[k + 1]).is_file():
            rest.append(hashlib.sha256((cwd / argv[k + 1]).read_bytes()).hexdigest())
        rest.append(argv[k])
        k += 1
    rest.sort(key=lambda a: a != "--quick")  # a flag without a value: its place does not matter
    return " ".join(rest), cwd / (out or f"runs/{argv[2]}")


def run_shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("path", list(SHELL), ids=[name(p) for p in SHELL])
def test_shell_commands_run(path, tmp_path):
    skipped = []
    for block in SHELL[path]:
        for line, written in commands(block):
            command, reason = resolve(strip_comment(written))
            where = f"{name(path)}:{line}"
            if command is None:
                skipped.append(f"{where}: {written!r} ({reason})")
                continue
            try:
                argv = shlex.split(command)
            except ValueError:
                argv = []
            cached = run_key(argv, tmp_path) if "&&" not in command and ";" not in command else None
            if cached and cached[0] in _RUNS and not cached[1].exists():
                shutil.copytree(_RUNS[cached[0]], cached[1])
                continue
            result = run_shell(command, tmp_path)
            assert result.returncode == 0, (f"{where}: {command!r} exited with {result.returncode}:\n"
                                            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
            if cached:
                assert (cached[1] / "report.html").is_file(), f"{where}: {command!r} wrote no report.html"
                _RUNS.setdefault(cached[0], cached[1])
    if skipped:
        print("skipped:", *skipped, sep="\n  ")


def test_the_harness_parses_fences_comments_and_substitutions(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n- item\n\n  ```bash\n  sgworld run digits --out runs/d  # long\n  echo 'a # b' \\\n"
                    "    > f.txt\n  ```\n```python\nx = 1\n```\n```\nnot code\n```\n")
    bash, python, plain = fenced_blocks(page)
    assert (bash.lang, python.lang, plain.lang) == ("bash", "python", "")
    assert commands(bash) == [(6, "sgworld run digits --out runs/d  # long"), (7, "echo 'a # b' > f.txt")]
    assert strip_comment(commands(bash)[1][1]) == "echo 'a # b' > f.txt"
    assert resolve(strip_comment(commands(bash)[0][1]))[0] == "sgworld run digits --out runs/d --quick"
    assert resolve("sgworld run digits --help")[0] == "sgworld run digits --help"
    assert resolve("make test")[0] is None
    key, out = run_key(shlex.split("sgworld run digits --out runs/d --quick"), tmp_path)
    assert (key, out) == ("--quick digits", tmp_path / "runs/d")
    assert run_key(shlex.split("sgworld run digits --quick --seed 3"), tmp_path)[0] != key


def test_skip_and_substitution_lists_stay_short():
    assert len(SKIP) <= 5 and len(SUBSTITUTE) <= 3
