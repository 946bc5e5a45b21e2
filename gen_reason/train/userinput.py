"""Command-line parsing of the trainers whose mistakes are one line, before any compute.

The trainers' configs are checked by the one config system (:mod:`gen_reason.config`)
and their output folders by :func:`gen_reason.errors.check_writable`; what is left here
is the argument parser of ``genreason train embedded`` / ``genreason train lora``.
"""

from __future__ import annotations

import argparse
import typing

from gen_reason.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` that raises :class:`UserError` on a bad command line
    (the command prints it as one line and exits 2) instead of a usage block."""

    def error(self, message: str) -> typing.NoReturn:
        """Raise instead of printing the usage and exiting."""
        raise UserError(f"{message} (see {self.prog} --help)")
