"""Calls made side by side, for tests of what runs at the same time."""

import threading


def at_once(*calls):
    """Run the calls on threads of their own, all at the same time; their results in order."""
    results = [None] * len(calls)

    def run(i, call):
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results
