"""``python -m clearhouse_client``: the clearhouse-pay command."""

import sys

from clearhouse_client.cli import main

sys.exit(main())
