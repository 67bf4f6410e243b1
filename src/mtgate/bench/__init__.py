"""The benchmark harness behind `mtgate bench`."""
