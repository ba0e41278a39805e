"""Example run specs offered by the UI's "Submit run" dialog: a starting point operators edit."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from control_room.services.demo import DEMO_PIPELINE_SPEC


@dataclass(frozen=True)
class ExampleSpec:
    """A named spec with default params; ``spec()`` returns a fresh copy to edit."""

    key: str
    label: str
    description: str
    body: dict[str, Any]
    params: dict[str, Any]

    def spec(self) -> dict[str, Any]:
        return copy.deepcopy(self.body)


EXAMPLES: tuple[ExampleSpec, ...] = (
    ExampleSpec(
        key="demo",
        label="Demo pipeline (shell → python → shell)",
        description="Extracts orders to CSV, summarises them in Python, publishes a report; three artifacts.",
        body={**copy.deepcopy(DEMO_PIPELINE_SPEC), "name": "demo pipeline"},
        params={"requested_from": "control room"},
    ),
    ExampleSpec(
        key="long",
        label="Long-running job (10 minutes)",
        description="Logs a heartbeat line every second for ten minutes: for trying cancel.",
        body={
            "name": "long-running job",
            "tasks": [
                {
                    "key": "wait",
                    "engine": "shell",
                    "timeout_s": 900,
                    "command": (
                        'i=0; while [ $i -lt 600 ]; do i=$((i + 1)); echo "still working ($i/600)"; sleep 1; done'
                    ),
                }
            ],
        },
        params={},
    ),
    ExampleSpec(
        key="chatty",
        label="Chatty job (logs, warnings, errors)",
        description="Writes 300 log lines over about 30 seconds, with warnings and an error: for the live tail.",
        body={
            "name": "chatty job",
            "tasks": [
                {
                    "key": "talk",
                    "engine": "shell",
                    "timeout_s": 300,
                    "command": (
                        "i=0; while [ $i -lt 300 ]; do i=$((i + 1)); "
                        'if [ $((i % 150)) -eq 0 ]; then echo "::lakehouse::{\\"type\\": \\"log\\", '
                        '\\"level\\": \\"error\\", \\"message\\": \\"batch $i: schema drift in column amount\\"}"; '
                        'elif [ $((i % 50)) -eq 0 ]; then echo "::lakehouse::{\\"type\\": \\"log\\", '
                        '\\"level\\": \\"warning\\", \\"message\\": \\"batch $i: 2 rows rejected\\"}"; '
                        'else echo "processed batch $i of 300"; fi; sleep 0.1; done'
                    ),
                }
            ],
        },
        params={"batches": 300},
    ),
    ExampleSpec(
        key="fail",
        label="Failing task",
        description="Exits with code 3 after a message on stderr; no retries, so the run fails.",
        body={
            "name": "failing job",
            "tasks": [
                {
                    "key": "break",
                    "engine": "shell",
                    "max_attempts": 1,
                    "command": "echo 'checking inputs'; echo 'input table is empty' >&2; exit 3",
                }
            ],
        },
        params={},
    ),
)


def example(key: str) -> ExampleSpec:
    """The example with this key (the first one when unknown)."""
    return next((item for item in EXAMPLES if item.key == key), EXAMPLES[0])
