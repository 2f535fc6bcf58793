"""The stack `tailor local up` runs keeps stream consumers apart from the API: processes of their own, at a lower
priority, and no more of them at once than leaves a CPU to the API and the embedded AWS."""

import uuid

from tailor_local.stack import STREAM_ENVIRONMENTS, STREAM_NICENESS, LocalStack

from tests.helpers import ROOT


def test_stream_consumers_run_in_processes_leaving_a_cpu_to_the_rest():
    stack = LocalStack(ROOT / "template.yaml", port=0, stack_name=f"tailor-env-{uuid.uuid4().hex[:8]}",
                       stream_processes=True)
    stack.start(pollers=False)
    try:
        consumers = {mapping.function.logical_id: mapping.function for mapping in stack.mappings.values()}
        assert consumers
        for function in consumers.values():
            assert function.isolation == "process" and function.niceness == STREAM_NICENESS
            assert 1 <= function.max_environments <= STREAM_ENVIRONMENTS
        api = stack.runtime.functions[next(iter(stack.api.gateway.api.routes)).function_id]
        assert api.isolation == "thread" and api.max_environments > STREAM_ENVIRONMENTS
    finally:
        stack.stop()
