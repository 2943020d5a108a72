import sys

from converter.vhdutil.cli import main

sys.exit(main())
