"""``python -m agecurriculum`` is the ``agecurriculum`` command (handy under ``torchrun -m agecurriculum``)."""

import sys

from agecurriculum.cli.main import main

sys.exit(main())
