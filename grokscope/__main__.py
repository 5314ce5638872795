import sys

from grokscope.cli import main

sys.exit(main())
