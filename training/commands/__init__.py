"""One module per `python -m training <command>`.

Each module defines ``HELP`` (one line), ``DESCRIPTION`` (paragraphs for ``--help``),
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their command runs
(or for ``--help``), so heavy imports (torch) belong inside ``run``/module level of the command only.
"""
