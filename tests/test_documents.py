"""write_block replaces a named block of a Markdown file, or appends it, and keeps the rest."""

from tfprune.experiments.documents import markers, write_block


def test_block_is_appended_then_replaced_in_place(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nintro\n")
    write_block(doc, "run", "first table", heading="## Run")
    write_block(doc, "other", "other table")
    write_block(doc, "run", "second table")
    begin, end = markers("run")
    assert doc.read_text() == (f"# Results\n\nintro\n\n## Run\n\n{begin}\nsecond table\n{end}\n\n"
                               "<!-- other:begin -->\nother table\n<!-- other:end -->\n")


def test_a_missing_file_is_created(tmp_path):
    write_block(tmp_path / "new.md", "run", "table")
    assert (tmp_path / "new.md").read_text() == "<!-- run:begin -->\ntable\n<!-- run:end -->\n"
