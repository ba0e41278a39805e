"""Models generated from contracts/lakehouse-executor.openapi.yaml (``python -m executor_agent.generated.build``).

``contract.py`` is written by datamodel-code-generator and never edited by hand: the wire replies the agent
reads and every engine's task spec (``TaskSpec``, discriminated by ``engine``). tests/agent/test_generated.py
fails when it and the YAML disagree.
"""
