"""The check harness the Python client scripts share: named checks whose failures are recorded
and reported together, so one failing check does not hide the others."""

import time
import traceback

FAILURES = []


def check(name):
    """Runs the decorated function as one named check, recording its failure."""

    def run(function):
        started = time.monotonic()
        try:
            function()
        except Exception as error:  # noqa: BLE001 - every failure is reported, none hidden
            FAILURES.append(name)
            print(f"FAIL: {name}: {error!r}", flush=True)
            traceback.print_exc()
        else:
            print(f"ok: {name} ({time.monotonic() - started:.2f}s)", flush=True)
        return function

    return run


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def fail(name, message):
    """Records a failed check that could not run at all."""
    FAILURES.append(name)
    print(f"FAIL: {name}: {message}", flush=True)


def report():
    """Prints the outcome; the process's exit status."""
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed: {', '.join(FAILURES)}", flush=True)
        return 1
    print("all checks passed", flush=True)
    return 0
