"""Hook implementations of gradleak-text.

The distribution exists so that `gradleak plugins` lists it and its dependencies install with
`pip install "gradleak[text]"`; its cases, attacks, metrics and defenses arrive with the text issue.
"""
