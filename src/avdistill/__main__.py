from avdistill.cli import main
import sys

sys.exit(main())
