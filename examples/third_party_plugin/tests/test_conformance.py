"""Run gradleak's conformance kit on this plugin (needs the distribution installed: pip install -e .)."""

import gradleak.testing


def test_conformance():
    gradleak.testing.check_plugin("example")
