"""gradleak-medical passes the conformance kit a third party would run."""

from gradleak.testing import check_plugin


def test_conformance_kit():
    check_plugin("medical")
