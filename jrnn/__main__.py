"""``python -m jrnn``: the ``jrnn`` command (see `jrnn.cli`)."""

from jrnn.cli import run

if __name__ == "__main__":
    run()
