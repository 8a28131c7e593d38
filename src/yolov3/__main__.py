"""``python -m yolov3`` runs the command line (also under ``torchrun``)."""

import sys

from yolov3.cli.main import main

sys.exit(main())
