"""``python -m attnzoo.train BLOCK [options]`` is ``attnzoo train BLOCK [options]``; for torchrun:

    torchrun --nproc-per-node 2 -m attnzoo.train cbam --epochs 2
"""

import sys

from attnzoo.cli import run

if __name__ == "__main__":
    sys.exit(run(["train", *sys.argv[1:]]))
