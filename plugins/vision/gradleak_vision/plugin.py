"""Hook implementations of gradleak-vision."""
