"""Hook implementations of gradleak-snn.

The distribution exists so that `gradleak plugins` lists it and its dependencies install with
`pip install "gradleak[snn]"`; its cases, attacks, metrics and defenses arrive with the snn issue.
"""
