"""Results written into Markdown documents, between named markers, atomically.

Example:
    >>> write_block("docs/results.md", "dynamic-sparse", table)   # between <!-- dynamic-sparse:begin/end -->
"""

from __future__ import annotations

from pathlib import Path

from tfprune.base.files import replacing_text

__all__ = ["markers", "publish", "write_block"]


def markers(name):
    """The begin and end markers of the block ``name``: ``<!-- name:begin -->``, ``<!-- name:end -->``."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_block(path, name, text, heading=None):
    """Replaces the text between the markers of block ``name`` in ``path`` with ``text``.

    A file without the block gets it appended (under ``heading``, a Markdown heading line, if given);
    a missing file is created. The file is replaced atomically (see :func:`tfprune.base.files.replacing_text`).
    """
    begin, end = markers(name)
    doc = Path(path)
    content = doc.read_text() if doc.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in content and end in content:
        head, rest = content.split(begin, 1)
        content = head + block + rest.split(end, 1)[1]
    else:
        lead = f"{heading}\n\n" if heading else ""
        content = content.rstrip() + ("\n\n" if content else "") + lead + block + "\n"
    with replacing_text(doc) as f:
        f.write(content)


def publish(text, path, name):
    """Prints ``text`` and, if ``path`` is given, writes it as block ``name`` of that document (:func:`write_block`).

    Example:
        >>> publish(table, args.doc, "autoprune-mnist")   # args.doc "" only prints
    """
    print(text)
    if path:
        write_block(path, name, text)
        print(f"written to {path}")
