"""What each command does, once its arguments are parsed: one module per command of :mod:`agecurriculum.cli`.

They load torch, ONNX Runtime or dlib; the command modules that parse their arguments do not, so a command's
``--help`` answers at once. :class:`agecurriculum.cli.Runner` imports them when a command runs.
"""
