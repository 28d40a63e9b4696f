"""The CLI's commands, one module each (git/Polygraphy style).

A command module declares ``NAME``, a one-line ``HELP`` (listed by ``python -m swin_edge
--help``), optionally ``DESCRIPTION`` (its own ``--help``), ``add_arguments(parser)``: its
arguments with their parse-time validators (:mod:`.common`), optionally ``check(args)``:
checks across arguments, and ``run(args) -> int``, which calls the library. Heavy imports stay
inside ``run`` so that bad input is refused in a fraction of a second. A new command is one
module here plus its place in :data:`swin_edge.cli.COMMANDS`.
"""
