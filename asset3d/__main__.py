import sys

from asset3d.cli import main

sys.exit(main())
