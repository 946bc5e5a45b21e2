"""The one exception type that means "the user asked for something wrong".

The CLI turns a :class:`UserError` into one line on stderr and exit code 2; any other
exception is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """A mistake in what the user asked for (unknown name, bad value, missing file)."""


def writable_dir(path):
    """Create folder ``path`` if needed and check it can be written, else a :class:`UserError`."""
    import os
    import secrets
    from pathlib import Path

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A name of this call's own: two processes probing one folder must not remove each other's.
        probe = path / f".write-test-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to {path}: {exc.strerror or exc}") from None
    return path


def check_writable(path):
    """Check that folder ``path`` can be created and written without leaving anything behind.

    Commands call this before their compute, so a bad ``--out`` costs a second, not a
    generation; the folder levels it had to create are removed again (when still empty).
    Raises :class:`UserError` as :func:`writable_dir` does.
    """
    from pathlib import Path

    path = Path(path)
    missing = []
    level = path
    while not level.exists() and level != level.parent:
        missing.append(level)
        level = level.parent
    try:
        writable_dir(path)
    finally:
        for level in missing:  # deepest first
            try:
                level.rmdir()
            except OSError:
                pass  # never created, or someone put a file in it meanwhile
    return path
