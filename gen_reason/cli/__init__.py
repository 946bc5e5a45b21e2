"""The ``genreason`` command line: one command, one subcommand per job.

Every subcommand turns a user mistake (a :class:`~gen_reason.errors.UserError`) into one
line on stderr and exit code 2; anything else is a bug and keeps its traceback. One dotted
flag grammar (:func:`gen_reason.config.parse_flags`) overrides config fields everywhere:
``--task.skin dark``, ``--solver.n 8``, ``--model.offload model``, ``--probe.every 2``,
``eval``'s ``--solvers.0.params.n 8``, the trainers' ``--lora.rank 16``.

- :mod:`gen_reason.cli.parser`: the flags of every subcommand;
- :mod:`gen_reason.cli.commands`: what each subcommand does;
- :func:`main`: parse, run, and turn mistakes into one line and exit code 2.
"""

from __future__ import annotations

import sys

from gen_reason.cli.parser import build_parser
from gen_reason.errors import UserError

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genreason`` console script."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if not getattr(args, "func", None):
            if extra:  # `genreason --bogus`: a mistake, said in one line
                parser.error(f"unrecognised argument {extra[0]!r}; give a command first")
            parser.print_help()
            return 2
        if extra and not getattr(args, "dotted", False):
            raise UserError(f"unrecognised argument {extra[0]!r} (see genreason {args.command} --help)")
        code = int(args.func(args, extra) or 0)
        sys.stdout.flush()  # inside the handlers: a reader that left is met here, not at exit
        return code
    except UserError as exc:
        print(f"genreason: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genreason: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `genreason solve | head -1`: the reader left; stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
