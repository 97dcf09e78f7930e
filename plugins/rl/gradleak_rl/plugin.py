"""Hook implementations of gradleak-rl.

The distribution exists so that `gradleak plugins` lists it and its dependencies install with
`pip install "gradleak[rl]"`; its cases, attacks, metrics and defenses arrive with the rl issue.
"""
