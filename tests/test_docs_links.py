"""Every document the repository cites ships with it: each page under docs/ named in any file exists,
each section of docs/official-code.md that a docstring cites (§A.4, §B.2, ...) is a heading there,
nothing cites the documents the repository does not ship, and every command a page shows parses
(`python -m nslviz`, `python benchmarks/...`, the notebook parameters papermill sets, `make` targets)."""
import functools
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "out", "runs", "site", "data", "build", "dist", ".pytest_cache", "__pycache__"}
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".toml", ".txt", ".yml", ".yaml", ".cfg", ".sh", ".json", ""}


@functools.cache
def repository_texts() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(errors="replace") for p in repository_files()}


def repository_files() -> list[Path]:
    """The files git would commit (tracked and new, not ignored); every text file when not in a git checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.splitlines()
        paths = [ROOT / p for p in listed]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in ROOT.rglob("*") if not SKIP_DIRS & set(p.relative_to(ROOT).parts[:-1])]
    return [p for p in paths if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name == "Makefile")
            and not SKIP_DIRS & set(p.relative_to(ROOT).parts[:-1])]


def mentions(pattern: str) -> list[tuple[str, str]]:
    return [(where, m) for where, text in repository_texts().items() for m in re.findall(pattern, text)]


def test_every_docs_page_mentioned_exists():
    cited = mentions(r"(?<![\w/.-])docs/[\w./-]*?\.md")
    assert cited, "no docs/ page is cited anywhere: the pattern is wrong"
    missing = sorted({f"{page} (cited in {where})" for where, page in cited if not (ROOT / page).is_file()})
    assert not missing, f"cited but not in the repository: {missing}"


def test_every_cited_section_of_the_official_code_page_exists():
    headings = set(re.findall(r"^#{2,3} ([A-C](?:\.\d+)?)[. ]", (ROOT / "docs" / "official-code.md").read_text(), re.M))
    cited = []
    for where, text in mentions(r"docs/official-code\.md((?:[ ,]*(?:and )?§[A-C](?:\.\d+)?(?:-§[A-C]\.\d+)?)+)"):
        cited += [(where, section) for section in re.findall(r"§([A-C](?:\.\d+)?)", text)]
    assert len(cited) > 10, "the docstrings' citations of docs/official-code.md were not found"
    missing = sorted({f"§{section} (cited in {where})" for where, section in cited if section not in headings})
    assert not missing, f"sections cited but not in docs/official-code.md: {missing}"


@pytest.mark.parametrize("document", ["official-code-" + "notes", "DESIGN" + ".md", "shared/" + "docs"])
def test_nothing_cites_a_document_the_repository_does_not_ship(document):
    assert not mentions(re.escape(document)), f"{document} is cited: {sorted({w for w, _ in mentions(re.escape(document))})}"


def test_every_file_the_readme_links_or_shows_exists():
    targets = re.findall(r"\]\(([^)#:]+)\)", (ROOT / "README.md").read_text())
    assert targets, "the README links nothing: the pattern is wrong"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.md links files that do not exist: {missing}"


def test_the_library_pages_snippet_runs_as_written():
    """docs/library.md's first code block is what a reader copies first: it must run as written."""
    text = (ROOT / "docs" / "library.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/library.md", "exec"), namespace)                  # noqa: S102 - the page's own code
    assert tuple(namespace["logits"].shape) == (namespace["features"].shape[0], 100)


PLACEHOLDER = re.compile(r"^[A-Z]+$")        # M, K, COMMAND, NAME (and <...>, made X): a value for the reader


INLINE_CODE = re.compile(r"(?<!`)`[^`]+`(?!`)")      # one `span`, not a ``` fence


def documented_commands(program: str = r"python -m nslviz ") -> list[tuple[str, str]]:
    """Every command starting with `program` (a pattern) that the pages show (README, RESULTS.md,
    docs/, the notebooks' text and the commands' own docstrings), continuation lines and an inline
    span wrapped over lines joined; quoted messages and elisions left out."""
    found = []
    for where, text in repository_texts().items():
        if not (where.endswith((".md", ".ipynb")) or where.startswith("nslviz/cli/")):
            continue
        if where.endswith(".ipynb"):
            text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
        text = text.replace("\\\n", " ")
        if where.endswith(".py"):
            shown = rf"^\s*({program}[^\n#]*)"                    # in docstrings: the example lines
        else:
            text = INLINE_CODE.sub(lambda span: " ".join(span.group().split()), text)
            shown = rf"(?:`|^)\s*({program}[^`\n#]*)"
        for command in re.findall(shown, text, re.M):
            command = command.strip().rstrip(".;,)")
            if "..." not in command and "…" not in command:
                found.append((where, command))
    return found


def test_every_documented_command_parses():
    """A command a page shows is one the command line accepts: its options, choices and values, and for
    `train` and `compare` the runs they would build (a preset with no length, a clash of options; nothing
    is run). A method or seed left to the reader (M, K) is filled in."""
    import contextlib
    import io
    import shlex

    from nslviz.__main__ import build_parser
    from nslviz.cli.compare import run_configs
    from nslviz.cli.train import config_from_args

    parser = build_parser()
    filled = {"--method": "mn", "--seed": "0"}
    checked, refused = 0, []
    for where, command in documented_commands():
        command = re.sub(r"<[^>]*>", "X", command)       # <cnn run>: a placeholder
        if command.split()[3].endswith(":"):
            continue                                     # an error message quoted
        try:
            words = shlex.split(command)[3:]
        except ValueError as error:                      # an unclosed quote
            refused.append(f"{where}: {command}: {error}")
            continue
        words = [filled.get(before, word) if PLACEHOLDER.match(word) else word
                 for before, word in zip(["", *words], words)]
        if any(PLACEHOLDER.match(w) for w in words):
            continue                                     # a value left to the reader
        checked += 1
        error = io.StringIO()
        try:
            with contextlib.redirect_stderr(error), contextlib.redirect_stdout(io.StringIO()):
                args, unknown = parser.parse_known_args(words)
            if unknown:
                refused.append(f"{where}: {command}: unrecognised {unknown}")
            elif words[0] == "train" and not args.resume:
                config_from_args(args)
            elif words[0] == "compare":
                run_configs(args)
        except SystemExit as stop:
            if stop.code:
                refused.append(f"{where}: {command}: {error.getvalue().strip().splitlines()[-1]}")
        except ValueError as stop:
            refused.append(f"{where}: {command}: {stop}")
    assert checked > 80 and not refused, "\n".join(refused)


def test_every_documented_benchmark_command_parses(monkeypatch):
    """`python benchmarks/NAME.py ...` as a page shows it names a script whose own parser takes its
    options and values (the script stops once its arguments are parsed: nothing is run)."""
    import argparse
    import contextlib
    import importlib
    import io
    import shlex

    class Parsed(Exception):
        pass

    parse_args = argparse.ArgumentParser.parse_args

    def parse_only(parser, args=None, namespace=None):
        parse_args(parser, args, namespace)
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    checked, refused = 0, []
    for where, command in documented_commands(r"python benchmarks/\w+\.py\b"):
        command = re.sub(r"\$\(seq (\d+) (\d+)\)?",                 # the shell's $(seq 0 19)
                         lambda m: " ".join(map(str, range(int(m[1]), int(m[2]) + 1))), command)
        script, *words = shlex.split(command)[1:]
        if not (ROOT / script).is_file():
            refused.append(f"{where}: {command}: no {script}")
            continue
        error = io.StringIO()
        try:
            with contextlib.redirect_stderr(error), contextlib.redirect_stdout(io.StringIO()):
                importlib.import_module(Path(script).stem).main(words)
        except Parsed:
            checked += 1
        except SystemExit:
            refused.append(f"{where}: {command}: {error.getvalue().strip().splitlines()[-1]}")
    assert checked > 100 and not refused, "\n".join(refused)


def test_every_notebook_parameter_and_make_target_a_page_names_exists():
    """`papermill NB ... -p NAME VALUE` and `export-notebook NB -p NAME VALUE` set parameters that NB's
    parameters cell has (a misspelt one stops the notebook in its set-up cell), and `make TARGET`
    names a target of the Makefile."""
    import papermill

    named = 0
    missing = []
    shown = documented_commands(r"papermill ") + documented_commands(r"python -m nslviz export-notebook ")
    for where, command in shown:
        notebook = next((word for word in command.split() if word.endswith(".ipynb")), None)
        if notebook is None:
            continue                                     # prose that starts a line with "papermill"
        if not (ROOT / notebook).is_file():
            missing.append(f"{where}: {command}: no {notebook}")
            continue
        names = set(papermill.inspect_notebook(str(ROOT / notebook)))
        for name in re.findall(r"-p (\w+)", command):
            named += 1
            if name not in names:
                missing.append(f"{where}: {command}: {notebook} has no parameter {name!r}")
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    asked = {(where, target) for where, command in documented_commands(r"make ")
             for target in re.findall(r"(?:^| )([a-z][\w-]*)", re.split(r"&&|;|\|", command)[0][5:])}
    missing += [f"{where}: make {target}: no such target" for where, target in sorted(asked) if target not in targets]
    assert named > 5 and len(asked) > 10 and not missing, "\n".join(missing)


def test_the_library_pages_training_snippet_runs_as_written():
    """docs/library.md's second code block trains its first block's layers in a model of the reader's own:
    it must run as written, and every parameter is in one optimiser group."""
    text = (ROOT / "docs" / "library.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2, "docs/library.md shows no training step"
    namespace: dict = {}
    exec(compile(blocks[0] + blocks[1], "docs/library.md", "exec"), namespace)    # noqa: S102 - the page's own code
    model, optimizer = namespace["model"], namespace["optimizer"]
    grouped = [p for group in optimizer.param_groups for p in group["params"]]
    assert sorted(map(id, grouped)) == sorted(id(p) for p in model.parameters())
    assert optimizer.param_groups[1]["weight_decay"] == 0.0
    assert {id(p) for p in namespace["head"].parameters()} <= {id(p) for p in optimizer.param_groups[1]["params"]}
    assert bool(namespace["loss"].isfinite())


def test_the_library_pages_conv_replacement_runs_as_written_and_starts_as_the_conv():
    """docs/library.md's third code block builds a static NSL layer from a user's nn.Conv2d (whose stride and
    padding are pairs) and copies its weights: it runs as written, gives the conv's output and folds back."""
    import torch
    text = (ROOT / "docs" / "library.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    namespace: dict = {}
    exec(compile(blocks[2], "docs/library.md", "exec"), namespace)              # noqa: S102 - the page's own code
    conv, nsl = namespace["conv"], namespace["nsl"]
    x = torch.randn(2, 64, 9, 9)
    torch.testing.assert_close(nsl(x), conv(x))
    torch.testing.assert_close(nsl.to_conv2d()(x), conv(x))
