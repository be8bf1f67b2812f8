"""GB/T 28181: the gateway as a lower platform of county/city platforms (国标级联)."""
