"""zChat's suites, run by python -m zTestSuite through the chat plugin."""
