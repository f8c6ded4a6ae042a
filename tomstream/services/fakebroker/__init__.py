"""fakebroker: a stand-in alert broker, so the alert cycle runs without the outside world."""
