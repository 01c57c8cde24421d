"""What every end-to-end script of tests/e2e shares: one line per check, a closing count."""
import sys

_counts = {"passed": 0, "failed": 0}


def check(name, cond, detail=""):
    if cond:
        _counts["passed"] += 1
        print(f"ok   {name}")
    else:
        _counts["failed"] += 1
        print(f"FAIL {name}: {detail}")


def text_of(result):
    """A tool result's text content."""
    return "".join(getattr(c, "text", "") for c in result.content)


def finish():
    """Prints 'N passed, N failed' and exits non-zero when a check failed."""
    print(f"{_counts['passed']} passed, {_counts['failed']} failed")
    sys.exit(1 if _counts["failed"] else 0)
