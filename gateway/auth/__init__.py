"""Users, roles, sessions and API tokens (the part ``auth``)."""
