import sys

from .accuracy import main

sys.exit(main())
