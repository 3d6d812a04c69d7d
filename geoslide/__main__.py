import sys

from geoslide.cli import main

sys.exit(main())
