"""docs/errors.md, linked from the README, names error types that exist, with their true bases."""

import builtins
import re
from pathlib import Path

import tfprune

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def resolve(name):
    """The class a documented name such as ``tfprune.export.ExportMismatchError`` or ``ValueError`` is."""
    if not name.startswith("tfprune."):
        return getattr(builtins, name)
    value = tfprune
    for part in name.split(".")[1:]:
        value = getattr(value, part)
    return value


def test_every_documented_error_exists_with_the_bases_the_table_gives():
    rows = [line.split("|")[1:4] for line in DOC.read_text().splitlines() if line.startswith("| `")]
    assert len(rows) >= 10
    for names, bases, _ in rows:
        classes = [resolve(n) for n in re.findall(r"`([\w.]+)`", names) if n != "MissingExtraError"]
        for cls in classes:
            assert issubclass(cls, BaseException), cls
            for base in re.findall(r"`(\w+)`", bases):
                assert issubclass(cls, getattr(builtins, base)), (cls, base)


def test_the_readme_links_the_errors_page():
    assert "[docs/errors.md](docs/errors.md)" in (DOC.parents[1] / "README.md").read_text()
