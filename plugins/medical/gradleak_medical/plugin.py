"""Hook implementations of gradleak-medical.

The distribution exists so that `gradleak plugins` lists it and its dependencies install with
`pip install "gradleak[medical]"`; its cases, attacks, metrics and defenses arrive with the medical issue.
"""
