"""gradleak's built-in plugin: generic attacks, priors, defenses and metrics, registered through the same
hooks as any third-party plugin."""
