"""The documentation holds: every relative link and image of README.md and docs/ leads to a
file (and heading) inside the repository, every ``yolov3 ...`` command line in their code
blocks parses with the current command line, the command-line page names exactly the options
of each command, and the development page's map from modules to tests is complete."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from yolov3.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])
PACKAGE = ROOT / "src" / "yolov3"

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`[^`]*`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines of ``text`` outside fenced code blocks, code spans removed, with numbers."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, CODE_SPAN.sub("", line)))
    return lines


def code_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of shell code blocks (bash, sh, console, shell, or no language) in ``path``,
    with backslash continuations joined; the number is the first line's."""
    lines: list[tuple[int, str]] = []
    fenced, shell, pending = False, False, None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line.lstrip()):
            if not fenced:
                language = line.lstrip()[3:].strip()
                shell = language in ("", "bash", "sh", "shell", "console")
            fenced = not fenced
            continue
        if not (fenced and shell):
            continue
        if pending is not None:
            pending = (pending[0], pending[1] + " " + line.strip())
        else:
            pending = (number, line.strip())
        if pending[1].endswith("\\"):
            pending = (pending[0], pending[1][:-1])
        else:
            lines.append(pending)
            pending = None
    return lines


def slug(heading: str) -> str:
    """A heading's anchor, as mkdocs' toc and GitHub make it for plain headings."""
    text = re.sub(r"[`*_]", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    return {slug(m.group(2)) for _, line in prose_lines_raw(path)
            if (m := HEADING.match(line))}


def prose_lines_raw(path: Path) -> list[tuple[int, str]]:
    """The lines of ``path`` outside fenced code blocks, as written."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


# --- links and images ----------------------------------------------------------------------

def link_problems(page: Path, text: str | None = None) -> list[str]:
    """What is wrong with the links and images of ``page`` (its ``text``, else the file's)."""
    problems = []
    if text is None:
        text = page.read_text(encoding="utf-8")
    for number, line in prose_lines(text):
        for target in LINK.findall(line):
            where = f"{rel(page)}:{number}: {target}"
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            destination = (page.parent / file_part).resolve() if file_part else page
            if not destination.is_relative_to(ROOT):
                problems.append(f"{where}: leads outside the repository")
                continue
            if page.is_relative_to(DOCS) and not destination.is_relative_to(DOCS):
                problems.append(f"{where}: a docs page links outside docs/ (the site lacks it)")
                continue
            if not destination.exists():
                problems.append(f"{where}: no such file")
                continue
            if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                problems.append(f"{where}: {rel(destination)} has no heading #{anchor}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_links_and_images_resolve_inside_the_repository(page: Path) -> None:
    assert not link_problems(page), "\n".join(link_problems(page))


def test_the_link_check_finds_dead_links() -> None:
    # The checker itself, on a page of docs/: a dead link, a missing image, a missing heading
    # and a link out of docs/ are found; a code span and a good anchor are not.
    text = ("[a](nowhere.md) ![b](img/none.png) [c](detect.md#no-such-heading) "
            "[d](../README.md) `[e](ignored.md)` [f](detect.md#sources)\n")
    problems = link_problems(DOCS / "probe.md", text)
    assert len(problems) == 4, problems
    assert all("ignored.md" not in p and "#sources" not in p for p in problems)


def test_the_readme_is_a_front_door() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    for needed in ("make demo", "make test", "pip install yolov3-darknet",
                   "download.pytorch.org/whl/cpu", "docs/img/"):
        assert needed in text, needed


# --- command lines --------------------------------------------------------------------------

def yolov3_words(line: str) -> list[str] | None:
    """The words after ``yolov3`` (or ``-m yolov3``) of a shell line, None for other lines."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    for i, word in enumerate(words):
        if word == "yolov3" and (i == 0 or words[i - 1] == "-m"
                                 or all("=" in w for w in words[:i])):
            return words[i + 1:]
    return None


COMMAND_LINES = [(page, number, line) for page in PAGES for number, line in code_lines(page)
                 if yolov3_words(line) is not None]


def test_the_pages_show_command_lines() -> None:
    assert len(COMMAND_LINES) > 30


@pytest.mark.parametrize(("page", "number", "line"), COMMAND_LINES,
                         ids=[f"{rel(p)}:{n}" for p, n, _ in COMMAND_LINES])
def test_command_lines_parse(page: Path, number: int, line: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    words = yolov3_words(line)
    try:
        build_parser().parse_args(words)
    except SystemExit as exc:
        if exc.code:
            message = capsys.readouterr().err.strip().splitlines()[-1:]
            pytest.fail(f"{rel(page)}:{number}: `{line}` does not parse: {' '.join(message)}")


# --- the command-line page ------------------------------------------------------------------

def commands(parser: argparse.ArgumentParser, prefix: str = "yolov3"
             ) -> dict[str, argparse.ArgumentParser]:
    """Every parser under ``parser`` by its command line (``yolov3 data check``...)."""
    found = {prefix: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= commands(sub, f"{prefix} {name}")
    return found


def is_group(parser: argparse.ArgumentParser) -> bool:
    """True for a parser of sub-commands (``yolov3 data``), which runs nothing itself."""
    return any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


def shown_options(parser: argparse.ArgumentParser) -> set[str]:
    """The long options a parser shows in its help (an old spelling kept quietly is not)."""
    return {o for a in parser._actions if a.help != argparse.SUPPRESS
            and not isinstance(a, argparse._HelpAction)
            for o in a.option_strings if o.startswith("--")}


def documented_options(page: Path) -> dict[str, set[str]]:
    """The options in the first column of the tables under each ``yolov3 ...`` heading."""
    sections: dict[str, set[str]] = {}
    current = None
    for _, line in prose_lines_raw(page):
        if m := HEADING.match(line):
            current = m.group(2) if m.group(2).startswith("yolov3") else None
            if current is not None:
                sections[current] = set()
        elif current is not None and line.startswith("| `--"):
            first = line.split("|")[1]
            sections[current].add(re.match(r"\s*`(--[a-z0-9-]+)", first).group(1))
    return sections


def test_the_command_line_page_names_every_option_of_every_command() -> None:
    documented = documented_options(DOCS / "cli.md")
    parsers = commands(build_parser())
    problems = [f"{name}: no section in docs/cli.md" for name, parser in parsers.items()
                if name not in documented and (shown_options(parser) or not is_group(parser))]
    problems += [f"docs/cli.md: '{name}' is not a command" for name in documented
                 if name not in parsers]
    for name, parser in parsers.items():
        have, shown = shown_options(parser), documented.get(name, set())
        problems += [f"{name}: {o} is not in docs/cli.md" for o in sorted(have - shown)]
        problems += [f"{name}: docs/cli.md names {o}, which it does not take"
                     for o in sorted(shown - have)]
    assert not problems, "\n".join(problems)


# --- the module map -------------------------------------------------------------------------

def module_names() -> set[str]:
    """Each module of the package as the map names it: ``model/cfg.py``; a package by its
    folder (``model/``) for its ``__init__.py``; the top one as ``__init__.py``."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        name = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" and path.parent != PACKAGE:
            name = name.removesuffix("__init__.py")
        names.add(name)
    return names


def module_map() -> dict[str, list[str]]:
    rows, inside = {}, False
    for _, line in prose_lines_raw(DOCS / "development.md"):
        if m := HEADING.match(line):
            inside = m.group(2) == "Which tests cover a module"
        elif inside and line.startswith("| `"):
            first, tests = line.split("|")[1:3]
            rows[first.strip().strip("`")] = re.findall(r"tests/[\w/]+\.py", tests)
    return rows


def test_every_module_is_in_the_map_and_every_test_it_names_exists() -> None:
    rows = module_map()
    missing = sorted(module_names() - set(rows))
    gone = sorted(set(rows) - module_names())
    absent = sorted({t for tests in rows.values() for t in tests if not (ROOT / t).is_file()})
    assert not missing, f"docs/development.md lacks these modules: {missing}"
    assert not gone, f"docs/development.md names modules that do not exist: {gone}"
    assert not absent, f"docs/development.md names test files that do not exist: {absent}"
