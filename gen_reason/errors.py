"""The one exception type that means "the user asked for something wrong".

The CLI turns a :class:`UserError` into one line on stderr and exit code 2; any other
exception is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """A mistake in what the user asked for (unknown name, bad value, missing file)."""


def writable_dir(path):
    """Create folder ``path`` if needed and check it can be written, else a :class:`UserError`."""
    from pathlib import Path

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to {path}: {exc.strerror or exc}") from None
    return path
