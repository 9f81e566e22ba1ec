"""The README and docs/*.md: links and anchors resolve, the README stays a short manual."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
# The two commands of the README's first section, exactly as a new user copies them.
DEMO_COMMAND = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && python train.py"
    " --config=configs/cwgan128.py:demo && python sample.py --workdir=runs/demo --label=all"
)
TEST_COMMAND = (
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && python -m pytest'
    " -q tests/"
)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def outside_code(text: str) -> list[str]:
  """The lines of a Markdown text that are not inside fenced code blocks."""
  lines, fenced = [], False
  for line in text.splitlines():
    if line.startswith("```"):
      fenced = not fenced
    elif not fenced:
      lines.append(line)
  return lines


def anchors(path: pathlib.Path) -> set[str]:
  """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, '-' for ' '."""
  slugs = set()
  for line in outside_code(path.read_text(encoding="utf-8")):
    if match := re.match(r"#{1,6} (.+)", line):
      slugs.add(re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-"))
  return slugs


def local_links(path: pathlib.Path) -> list[str]:
  """Targets of the links and images of a Markdown file that point into the repository."""
  text = "\n".join(outside_code(path.read_text(encoding="utf-8")))
  return [t for t in _LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.name)
def test_links_and_anchors_resolve(path):
  for target in local_links(path):
    file_part, _, anchor = target.partition("#")
    linked = (path.parent / file_part).resolve() if file_part else path
    assert linked.exists(), f"{path.name}: {target} does not exist"
    if anchor:
      assert anchor in anchors(linked), f"{path.name}: no heading for #{anchor} in {linked.name}"


def test_anchors_follow_github_rules():
  assert "what-survives-what" in anchors(ROOT / "docs" / "reliability.md")
  assert "inception-fid-comparable-with-pytorch-fid" in anchors(ROOT / "docs" / "evaluation.md")


def test_every_docs_page_is_linked_from_the_readme():
  linked = {(README.parent / t.partition("#")[0]).resolve() for t in local_links(README)}
  assert PAGES and not [p.name for p in PAGES if p.resolve() not in linked]


def test_readme_keeps_the_two_commands():
  lines = README.read_text(encoding="utf-8").splitlines()
  assert DEMO_COMMAND in lines and TEST_COMMAND in lines


def test_readme_is_a_short_manual_without_dates():
  text = README.read_text(encoding="utf-8")
  assert len(text.splitlines()) <= 350, "move reference text and measurements to docs/"
  prose = re.sub(r"`[^`]*`", "", "\n".join(outside_code(text)))  # file names may hold dates
  assert not re.findall(r"\b20\d\d-\d\d-\d\d\b", prose), "a measurement's date lives in docs/"


def test_where_things_are_names_every_module_and_only_existing_ones():
  layout = README.read_text(encoding="utf-8").partition("## Where things are")[2]
  package, _, benchmarks = layout.partition("**Benchmarks**")
  for folder, text in (("flowergan", package), ("benchmarks", benchmarks)):
    named = set(re.findall(r"`([\w/.]+\.py)`", text.partition("**Outside the package**")[0]))
    modules = {p.name for p in (ROOT / folder).glob("*.py")} - {"__init__.py"}
    assert not sorted(modules - named), f"{folder}/ modules missing from the layout"
    places = [ROOT / folder, ROOT / folder / "ops", ROOT]  # configs/cwgan128.py names its folder
    assert not [n for n in named if not any((d / n).exists() for d in places)], "gone from the tree"
