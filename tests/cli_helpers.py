"""Helpers shared by the tests of the `nst` command."""

from __future__ import annotations

from nstlib import cli


def run(argv, capsys):
    """Run ``nst`` in this process; returns (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str, command: str) -> None:
    """``err`` is one "nst: error: ..." or "nst COMMAND: error: ..." line holding every
    fragment, with no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(("nst: error: ", f"nst {command}: error: ")), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in err
