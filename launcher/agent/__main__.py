"""``python -m launcher.agent``: run the node agent (``launcher.agent.node``)."""

import os
import sys

from launcher.agent.node import main

status = main()
sys.stderr.flush()
# os._exit, not sys.exit: the stdin reader thread is blocked in read(), and a normal
# interpreter shutdown with it there can abort ("could not acquire lock for stdin").
os._exit(status)
