"""The test rig: fixtures that start real components on loopback."""
