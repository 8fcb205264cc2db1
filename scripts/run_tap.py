"""The tap's CLI as a script, for tools that run a file (``python -m cProfile scripts/run_tap.py ...``)."""

from tap_klaviyo.tap import cli

if __name__ == "__main__":
    cli()
