"""Hook implementations of gradleak-graph.

The distribution exists so that `gradleak plugins` lists it and its dependencies install with
`pip install "gradleak[graph]"`; its cases, attacks, metrics and defenses arrive with the graph issue.
"""
