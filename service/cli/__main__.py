"""`python -m service.cli`: what `easgd up` starts its service with."""

import sys

from service.cli import main

sys.exit(main())
